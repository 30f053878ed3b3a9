// hostd --keep-procs at scale: 100 procs (with grandchildren, supervised in a
// group, caught mid-restart, receiving a client's messages and other procs'
// streams) through five hostd restarts of each kind (SIGTERM, SIGKILL, `hostctl
// upgrade`), with a stranger planted in the durable table before each; then no
// hostd comes back. Prints the table the README quotes.
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/small_file.h"
#include "manager/proc_identity.h"
#include "manager/proc_mark.h"
#include "tests/integration/hostd_process.h"

namespace hostd {
namespace {

constexpr int kProcs = 100;  // 20 of each kind below
constexpr char kWorkers[] = "workers";

// kReceiver procs get the client's messages (all of them print what they get), and
// the stream of the kStreamer proc after them: numbered messages from proc to proc
// through the host, one every kStreamGapMs.
enum class Kind { kGrandchildren, kSupervised, kMidRestart, kReceiver, kStreamer };
Kind KindOf(int i) { return static_cast<Kind>(i % 5); }
std::string Name(int i) { return absl::StrCat("p", i); }
constexpr int kStreamGapMs = 20;
constexpr int kStreamCount = 1000000;  // more than the test lasts

std::vector<std::string> Lines(const std::string& path) {
  return absl::StrSplit(base::ReadSmallFile(path, 64 << 20).value_or(""), '\n', absl::SkipEmpty());
}

// Ticks in a proc's log: each run of "tick 1, tick 2, ..." (one per incarnation)
// must be whole and in order; returns the lines that break that, and the runs.
std::pair<int, int> TickGaps(const std::string& log) {
  int gaps = 0, runs = 0, last = 0;
  for (const std::string& line : Lines(log)) {
    int n = 0;
    if (!absl::StartsWith(line, "tick ") || !absl::SimpleAtoi(line.substr(5), &n)) continue;
    if (n == 1) {
      ++runs;
    } else if (n != last + 1) {
      ++gaps;
    }
    last = n;
  }
  return {gaps, runs};
}

// Processes carrying the state directory's ProcMark: the procs and everything
// they started, whatever group or session it is in now.
int MarkedProcesses(const Hostd& h) {
  absl::StatusOr<std::string> token = base::ReadSmallFile(h.Path("state/proc-mark"));
  if (!token.ok()) return -1;
  std::string t(absl::StripAsciiWhitespace(*token));
  return manager::ScanMarked(t.c_str(), [](pid_t, uint64_t, void*) {}, nullptr);
}

// A process of the test's own (`sleep`), and a live row for it in the durable
// table whose start time is not its own: a proc whose pid was reused since.
pid_t PlantStranger(const Hostd& h, const std::string& name) {
  pid_t pid = fork();
  if (pid == 0) {
    execlp("sleep", "sleep", "600", static_cast<char*>(nullptr));
    _exit(127);
  }
  absl::StatusOr<uint64_t> start = manager::ProcStartTime(pid);
  for (int i = 0; i < 100 && !start.ok(); ++i) start = manager::ProcStartTime(pid);
  EXPECT_TRUE(start.ok());
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(h.Path("state/procs.db").c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  std::string sql = absl::StrCat(
      "INSERT OR REPLACE INTO procs (name, program, args, env, inherit_env, cwd, readiness, labels, incarnation,"
      " state, status, terminal, pid, start_time, cgroup, addr, stdout_log, stderr_log, updated_at) VALUES ('",
      name, "', '/bin/sleep', x'', x'', x'', '', 1, x'', 1, 'live', 'Running', 0, ", pid, ", ",
      start.value_or(1) + 7, ", '', '', '', '', 0)");
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_close(db);
  return pid;
}

// The state each proc's row in the durable table has now.
std::map<std::string, std::string> RowStates(const Hostd& h) {
  std::map<std::string, std::string> out;
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(h.Path("state/procs.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  sqlite3_exec(
      db, "SELECT name, state FROM procs",
      [](void* o, int, char** v, char**) {
        (*static_cast<std::map<std::string, std::string>*>(o))[v[0]] = v[1];
        return 0;
      },
      &out, nullptr);
  sqlite3_close(db);
  return out;
}

struct Row {
  std::string kind;
  int procs = 0, readopted = 0, same_pid = 0, restarted = 0, supervision_kept = 0, orphans = 0, strangers = 0;
  int sent = 0, delivered = 0, returned = 0, lost = 0;  // the client's
  int p2p_sent = 0, p2p_delivered = 0, p2p_returned = 0, p2p_lost = 0, p2p_duplicated = 0;
};

// Sends `payload` to `name`'s port "data" (the test proc's --log-data prints it).
grpc::Status SendData(v1::HostService::Stub& api, const std::string& name, const std::string& payload) {
  v1::SendMessageRequest req;
  req.set_name(name);
  req.set_port("data");
  req.set_payload(payload);
  v1::SendMessageResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(10)));
  return api.SendMessage(&ctx, req, &resp);
}

v1::SpawnProcRequest SpawnOf(Hostd& h, int i) {
  std::vector<std::string> args = {"--tick-ms=200"};
  v1::SpawnProcRequest req;
  switch (KindOf(i)) {
    case Kind::kGrandchildren: args.insert(args.end(), {"--grandchild", "--grandchild-setsid"}); break;
    case Kind::kSupervised:
      req.mutable_restart()->set_mode(v1::RESTART_MODE_ON_FAILURE);
      req.set_group(kWorkers);
      break;
    case Kind::kMidRestart: {
      // Killed by the test before each restart: restarting then (the backoff is
      // long), for the next hostd to restart.
      v1::RestartPolicy* r = req.mutable_restart();
      r->set_mode(v1::RESTART_MODE_ALWAYS);
      r->set_max_restarts(100);
      *r->mutable_within() = Secs(3600);
      *r->mutable_backoff()->mutable_initial() = Secs(600);
      *r->mutable_backoff()->mutable_max() = Secs(600);
      break;
    }
    case Kind::kReceiver: args.push_back("--sink"); break;
    case Kind::kStreamer:
      args.insert(args.end(), {"--sink", absl::StrCat("--stream-to=unix:", h.Path("fe.sock"), ",", Name(i - 1)),
                               absl::StrCat("--stream-tag=", Name(i)), absl::StrCat("--stream-count=", kStreamCount),
                               absl::StrCat("--stream-gap-ms=", kStreamGapMs)});
      break;
  }
  args.push_back("--log-data");
  v1::SpawnProcRequest echo = h.EchoRequest(Name(i), args);
  *req.mutable_name() = echo.name();
  *req.mutable_spec() = echo.spec();
  return req;
}

TEST(RestartTest, HundredProcsThroughFiveRestartsOfEachKindThenNoHostdComesBack) {
  testing::TempDir root;
  const std::vector<std::string> flags = {"--keep-procs", "--reattach-timeout", "5"};
  auto h = std::make_unique<Hostd>(flags, root);
  // The durable table is private to hostd's user.
  struct stat st {};
  ASSERT_EQ(stat(h->Path("state/procs.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  v1::CreateGroupRequest group;
  group.set_name(kWorkers);
  group.set_strategy(v1::STRATEGY_ONE_FOR_ONE);
  v1::Group created;
  grpc::ClientContext gctx;
  ASSERT_TRUE(h->api().CreateGroup(&gctx, group, &created).ok());
  for (int i = 0; i < kProcs; ++i) {
    v1::SpawnProcResponse resp;
    grpc::Status s = h->Spawn(SpawnOf(*h, i), &resp);
    ASSERT_TRUE(s.ok()) << Name(i) << ": " << s.error_message();
  }

  // A client on its own connection to hostd's control socket (the same path
  // across restarts) sends to the receivers, one after another; each message
  // hostd acknowledged must reach its proc's log, each refused one went back to
  // the client (counted per round: the round under way when it was sent).
  std::vector<Row> rows(15);
  auto client_api = v1::HostService::NewStub(grpc::CreateChannel(h->grpc_addr(), grpc::InsecureChannelCredentials()));
  std::map<std::string, std::vector<std::pair<int, std::string>>> acked;  // proc -> round, payload
  std::atomic<int> current{0};
  std::atomic<bool> stop{false};
  std::thread client([&] {
    for (int n = 0; !stop.load(); ++n) {
      const int r = std::min(current.load(), 14);
      std::string name = Name(5 * (n % (kProcs / 5)) + 3);
      std::string payload = absl::StrCat("m", n);
      ++rows[r].sent;
      if (SendData(*client_api, name, payload).ok()) {
        acked[name].emplace_back(r, payload);
      } else {
        ++rows[r].returned;
      }
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  // Each stream's messages are counted in the round under way when the streamer
  // printed "sent": its log's size at each round's start marks the rounds apart
  // (messages sent before the first round count in it; marks[15] is the end).
  std::vector<std::map<std::string, size_t>> marks(16);
  auto mark = [&](int at) {
    for (int i = 0; i < kProcs; ++i) {
      struct stat log {};
      if (KindOf(i) == Kind::kStreamer &&
          stat(h->Path(absl::StrCat("state/logs/", Name(i), ".stdout")).c_str(), &log) == 0) {
        marks[at][Name(i)] = static_cast<size_t>(log.st_size);
      }
    }
  };
  const std::vector<std::string> kinds = {"SIGTERM with --keep-procs", "SIGKILL of hostd", "hostctl upgrade"};
  const std::vector<RestartKind> restarts = {RestartKind::kSigterm, RestartKind::kSigkill, RestartKind::kUpgrade};
  for (int round = 0; round < 15; ++round) {
    current.store(round);
    mark(round);
    Row& row = rows[round];
    row.kind = kinds[round % 3];
    const std::string& kind = row.kind;
    absl::SleepFor(absl::Milliseconds(300));  // messages flow between restarts

    // The mid-restart procs: killed now, restarting for 600 s under this hostd.
    std::map<std::string, v1::Proc> now = ListByName(*h);
    std::map<std::string, int> mid_incarnation;
    for (int i = 0; i < kProcs; ++i) {
      if (KindOf(i) != Kind::kMidRestart) continue;
      const v1::Proc& p = now[Name(i)];
      mid_incarnation[Name(i)] = p.incarnation();
      kill(p.status().pid(), SIGKILL);
    }
    ASSERT_TRUE(testing::Eventually([&] {
      std::map<std::string, v1::Proc> l = ListByName(*h);
      return std::all_of(mid_incarnation.begin(), mid_incarnation.end(),
                         [&](const auto& m) { return l[m.first].restarting(); });
    })) << "round " << round << ": the killed procs did not go restarting";
    // ... and the durable table says so (a SIGKILLed hostd commits nothing more).
    ASSERT_TRUE(testing::Eventually([&] {
      std::map<std::string, std::string> states = RowStates(*h);
      return std::all_of(mid_incarnation.begin(), mid_incarnation.end(),
                         [&](const auto& m) { return states[m.first] == "restarting"; });
    })) << "round " << round;
    now = ListByName(*h);
    const pid_t stranger = PlantStranger(*h, absl::StrCat("stranger", round));

    RestartHostd(h, restarts[round % 3], flags, root);

    // Every proc back: the running ones adopted with their pids, the restarting
    // ones started again by the new hostd.
    ASSERT_TRUE(testing::Eventually([&] {
      std::map<std::string, v1::Proc> l = ListByName(*h);
      return std::all_of(mid_incarnation.begin(), mid_incarnation.end(), [&](const auto& m) {
        return l[m.first].status().state() == v1::PROC_STATE_READY && l[m.first].incarnation() == m.second + 1;
      });
    })) << "round " << round << ": the procs restarting when hostd went down were not restarted";
    std::map<std::string, v1::Proc> after = ListByName(*h);
    for (int i = 0; i < kProcs; ++i) {
      ++row.procs;
      const v1::Proc& was = now[Name(i)];
      const v1::Proc& is = after[Name(i)];
      const bool ready = is.status().state() == v1::PROC_STATE_READY;
      if (KindOf(i) == Kind::kMidRestart) {
        row.restarted += ready && is.incarnation() == mid_incarnation[Name(i)] + 1;
      } else {
        row.readopted += ready;
        row.same_pid += ready && is.status().pid() == was.status().pid();
        row.orphans += !ready && kill(was.status().pid(), 0) == 0;
      }
      if (KindOf(i) == Kind::kSupervised || KindOf(i) == Kind::kMidRestart) {
        row.supervision_kept += is.restart().mode() == was.restart().mode() &&
                                std::vector<std::string>(is.groups().begin(), is.groups().end()) ==
                                    std::vector<std::string>(was.groups().begin(), was.groups().end());
      }
    }
    const v1::Proc& s = after[absl::StrCat("stranger", round)];
    row.strangers = s.status().state() == v1::PROC_STATE_READY;
    EXPECT_THAT(s.status().reason(), ::testing::HasSubstr("another process")) << "round " << round;
    EXPECT_EQ(kill(stranger, 0), 0) << "round " << round << ": the stranger was signalled";
    kill(stranger, SIGKILL);
    waitpid(stranger, nullptr, 0);

    EXPECT_EQ(row.readopted, kProcs * 4 / 5) << kind;
    EXPECT_EQ(row.same_pid, kProcs * 4 / 5) << kind;
    EXPECT_EQ(row.restarted, kProcs / 5) << kind;
    EXPECT_EQ(row.supervision_kept, kProcs * 2 / 5) << kind;
    EXPECT_EQ(row.orphans, 0) << kind;
    EXPECT_EQ(row.strangers, 0) << kind;
  }
  absl::SleepFor(absl::Milliseconds(300));
  stop.store(true);
  client.join();
  mark(15);

  // The streams: each message a streamer sent reached its receiver ("got"), came
  // back to it ("ret"), or is lost. Settled once the last message each streamer
  // sent before the end mark arrived or came back: links keep a stream's order.
  auto lines_of = [&](int i, absl::string_view prefix) {
    return LinesWith(h->Path(absl::StrCat("state/logs/", Name(i), ".stdout")), prefix);
  };
  auto sent_in = [&](int i, int r) {
    std::string log = base::ReadSmallFile(h->Path(absl::StrCat("state/logs/", Name(i), ".stdout")), 64 << 20)
                          .value_or("");
    size_t from = r == 0 ? 0 : std::min(marks[r][Name(i)], log.size());
    size_t to = std::max(from, std::min(marks[r + 1][Name(i)], log.size()));
    return LinesWithIn(absl::string_view(log).substr(from, to - from), "sent");
  };
  auto fate = [&](int i) {  // payload -> times got (-1: returned, never got)
    std::map<std::string, int> f;
    for (const std::string& p : lines_of(i, "ret")) f.try_emplace(p.substr(0, p.find(' ')), -1);
    for (const std::string& p : lines_of(i - 1, "got")) f[p] = std::max(f[p], 0) + 1;
    return f;
  };
  EXPECT_TRUE(testing::Eventually([&] {
    for (int i = 0; i < kProcs; ++i) {
      if (KindOf(i) != Kind::kStreamer) continue;
      std::vector<std::string> last = sent_in(i, 14);
      if (last.empty() || !fate(i).contains(last.back())) return false;
    }
    return true;
  })) << "a stream's last message neither arrived nor came back";
  for (int i = 0; i < kProcs; ++i) {
    if (KindOf(i) != Kind::kStreamer) continue;
    std::map<std::string, int> f = fate(i);
    for (int r = 0; r < 15; ++r) {
      std::vector<int> lost;
      for (const std::string& p : sent_in(i, r)) {
        ++rows[r].p2p_sent;
        auto it = f.find(p);
        if (it == f.end()) {
          lost.push_back(SeqOf(p, kStreamCount));
        } else if (it->second < 0) {
          ++rows[r].p2p_returned;
        } else {
          ++rows[r].p2p_delivered;
          rows[r].p2p_duplicated += it->second - 1;
        }
      }
      rows[r].p2p_lost += static_cast<int>(lost.size());
      // A SIGKILLed hostd loses what it had acknowledged and not yet handed on: at
      // most one run of consecutive messages of each stream. Other restarts, nothing.
      if (restarts[r % 3] == RestartKind::kSigkill) {
        EXPECT_TRUE(lost.empty() || lost.back() - lost.front() + 1 == static_cast<int>(lost.size()))
            << Name(i) << " round " << r << ": " << lost.size() << " lost, from " << lost.front() << " to "
            << lost.back();
      } else {
        EXPECT_THAT(lost, ::testing::IsEmpty()) << Name(i) << " round " << r;
      }
    }
  }
  // A stop or an upgrade acknowledges what it delivered before it closes: nothing
  // is sent twice.
  for (int r = 0; r < 15; ++r) {
    if (restarts[r % 3] != RestartKind::kSigkill) {
      EXPECT_EQ(rows[r].p2p_duplicated, 0) << "round " << r;
    }
  }

  // Every acknowledged message reached its proc: its log has it.
  int lost = 0;
  for (const auto& [name, msgs] : acked) {
    std::vector<std::string> log = Lines(h->Path(absl::StrCat("state/logs/", name, ".stdout")));
    std::set<std::string> got(log.begin(), log.end());
    for (const auto& [r, payload] : msgs) {
      if (got.contains(absl::StrCat("data ", payload))) {
        ++rows[r].delivered;
      } else {
        ++rows[r].lost;
        ++lost;
      }
    }
  }
  EXPECT_EQ(lost, 0);

  // Logs are continuous: each proc's ticks, every incarnation's run whole, in order.
  int log_gaps = 0;
  for (int i = 0; i < kProcs; ++i) {
    auto [gaps, runs] = TickGaps(h->Path(absl::StrCat("state/logs/", Name(i), ".stdout")));
    log_gaps += gaps;
    EXPECT_GE(runs, 1) << Name(i);
    if (KindOf(i) != Kind::kMidRestart) {
      EXPECT_EQ(runs, 1) << Name(i) << ": its log was started afresh";
    }
  }
  EXPECT_EQ(log_gaps, 0);

  // No hostd comes back: after --reattach-timeout every proc, grandchild and
  // escaped (setsid) grandchild is gone.
  std::vector<pid_t> pids;
  for (const auto& [name, p] : ListByName(*h)) {
    if (p.status().state() == v1::PROC_STATE_READY) pids.push_back(p.status().pid());
  }
  EXPECT_EQ(pids.size(), static_cast<size_t>(kProcs));
  EXPECT_GT(MarkedProcesses(*h), kProcs) << "the escaped grandchildren carry the mark too";
  h->Signal(SIGKILL);
  int still_running = 0;
  for (pid_t pid : pids) still_running += !AwaitGone(pid);
  int orphans = 0;
  EXPECT_TRUE(testing::Eventually([&] { return (orphans = LiveMembersOf(pids) + MarkedProcesses(*h)) == 0; }));
  EXPECT_EQ(still_running, 0);

  std::printf(
      "| restart (in turn) | procs | re-adopted | pids unchanged | restarted mid-restart | policy and group kept | "
      "orphans | strangers adopted | messages sent | delivered | returned | lost | proc to proc: sent | delivered "
      "(duplicated) | returned | lost |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    std::printf("| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d | %d (%d) | %d | %d |\n",
                r.kind.c_str(), r.procs, r.readopted, r.same_pid, r.restarted, r.supervision_kept, r.orphans,
                r.strangers, r.sent, r.delivered, r.returned, r.lost, r.p2p_sent, r.p2p_delivered, r.p2p_duplicated,
                r.p2p_returned, r.p2p_lost);
  }
  std::printf("log gaps over all %d procs: %d; no hostd back after 5 s: %d procs left running, %d orphans\n", kProcs,
              log_gaps, still_running, orphans);
}

}  // namespace
}  // namespace hostd
