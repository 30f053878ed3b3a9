// Shared by the --keep-procs tests: the flags, and looking at or editing what a
// hostd leaves behind (its processes, its durable table).
#ifndef HOSTD_TESTS_INTEGRATION_KEEP_PROCS_UTIL_H_
#define HOSTD_TESTS_INTEGRATION_KEEP_PROCS_UTIL_H_

#include <sqlite3.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/small_file.h"
#include "tests/integration/hostd_process.h"

namespace hostd {

inline const std::vector<std::string> kKeep = {"--keep-procs", "--reattach-timeout", "5"};

// Spawns an echo proc named `name` on `h` and returns its pid (0 after a test failure).
inline pid_t EchoPid(Hostd& h, const std::string& name) {
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(h.EchoRequest(name), &resp);
  EXPECT_TRUE(s.ok()) << name << ": " << s.error_message();
  return s.ok() ? resp.proc().status().pid() : 0;
}

// Running, not a zombie: a killed process whose parent has not reaped it yet
// still answers kill(pid, 0).
inline bool Alive(pid_t pid) {
  absl::StatusOr<std::string> stat = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return false;
  size_t paren = stat->rfind(')');  // the command name may hold anything
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] != 'Z' &&
         (*stat)[paren + 2] != 'X';
}

// Waits until the durable table has `n` rows that name a live proc with its pid
// and mark (commits follow a spawn's reply by a moment; a SIGKILLed hostd loses
// what it had not committed yet, and a row left "starting" is killed, not adopted).
inline bool AwaitLiveRows(const Hostd& h, int n) {
  return testing::Eventually([&] {
    sqlite3* db = nullptr;
    int rows = -1;
    if (sqlite3_open_v2(h.Path("state/procs.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
      sqlite3_exec(
          db, "SELECT count(*) FROM procs WHERE state = 'live' AND pid > 0 AND start_time > 0 AND mark_serial > 0",
          [](void* out, int, char** v, char**) {
            *static_cast<int*>(out) = v[0] != nullptr ? std::atoi(v[0]) : -1;
            return 0;
          },
          &rows, nullptr);
    }
    sqlite3_close(db);
    return rows == n;
  });
}

// Runs `sql` on the durable table of a hostd that has stopped; it must change
// exactly one row.
inline void ChangeOneRow(const Hostd& h, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(h.Path("state/procs.db").c_str(), &db), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  EXPECT_EQ(sqlite3_changes(db), 1) << sql;
  sqlite3_close(db);
}

// A `sleep 120` of the test's own; `env` is its whole environment.
inline pid_t SpawnSleep(const std::string& env = "") {
  const pid_t pid = fork();
  if (pid == 0) {
    char* const argv[] = {const_cast<char*>("sleep"), const_cast<char*>("120"), nullptr};
    char* const envp[] = {env.empty() ? nullptr : const_cast<char*>(env.c_str()), nullptr};
    execve("/bin/sleep", argv, envp);
    _exit(127);
  }
  return pid;
}

}  // namespace hostd

#endif  // HOSTD_TESTS_INTEGRATION_KEEP_PROCS_UTIL_H_
