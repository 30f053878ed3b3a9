#include "daemon/proc_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/log.h"
#include "daemon/proto_convert.h"
#include "hostd/v1/host.pb.h"
#include "manager/cgroup.h"
#include "manager/proc_identity.h"

namespace hostd::daemon {
namespace {

constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS procs ("
    " name TEXT PRIMARY KEY,"
    " program TEXT NOT NULL, args BLOB NOT NULL, env BLOB NOT NULL, inherit_env BLOB NOT NULL,"
    " cwd TEXT NOT NULL, readiness INTEGER NOT NULL, labels BLOB NOT NULL,"
    " incarnation INTEGER NOT NULL, state TEXT NOT NULL, status TEXT NOT NULL, terminal INTEGER NOT NULL,"
    " pid INTEGER NOT NULL, start_time INTEGER NOT NULL, cgroup TEXT NOT NULL, addr TEXT NOT NULL,"
    " stdout_log TEXT NOT NULL, stderr_log TEXT NOT NULL, updated_at INTEGER NOT NULL)";

// Columns added after the first schema: a table without them gains them, empty.
constexpr std::pair<const char*, const char*> kLaterColumns[] = {
    {"restart", "BLOB NOT NULL DEFAULT x''"},  // v1::RestartPolicy, serialized; empty: never restarted
    {"grp", "TEXT NOT NULL DEFAULT ''"},
    {"memory_max", "INTEGER NOT NULL DEFAULT 0"},
    {"cpus", "REAL NOT NULL DEFAULT 0"},
    {"pids_max", "INTEGER NOT NULL DEFAULT 0"},
    {"cpuset", "TEXT NOT NULL DEFAULT ''"},
    {"mark_serial", "INTEGER NOT NULL DEFAULT 0"},
    {"lease_owner", "TEXT NOT NULL DEFAULT ''"},  // empty: no lease
    {"lease_ttl_ms", "INTEGER NOT NULL DEFAULT 0"},
    {"user", "TEXT NOT NULL DEFAULT ''"},
    {"liveness", "BLOB NOT NULL DEFAULT x''"},  // manager::EncodeLiveness; empty: no check
    // who asked for it (exec policy): '' no certificate; NULL unknown (a row from before the column)
    {"client_identity", "TEXT DEFAULT NULL"},
};

constexpr char kGroupSchema[] =
    "CREATE TABLE IF NOT EXISTS proc_groups ("
    " name TEXT PRIMARY KEY, parent TEXT NOT NULL, strategy INTEGER NOT NULL, max_restarts INTEGER NOT NULL,"
    " within_ms INTEGER NOT NULL, backoff_initial_ms INTEGER NOT NULL, backoff_max_ms INTEGER NOT NULL,"
    " backoff_multiplier REAL NOT NULL, backoff_jitter REAL NOT NULL)";

constexpr char kUpsert[] =
    "INSERT OR REPLACE INTO procs (name, program, args, env, inherit_env, cwd, readiness, labels, incarnation,"
    " state, status, terminal, pid, start_time, cgroup, addr, stdout_log, stderr_log, updated_at,"
    " restart, grp, memory_max, cpus, pids_max, cpuset, mark_serial, lease_owner, lease_ttl_ms, user, liveness,"
    " client_identity)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,"
    " ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31)";

constexpr char kSelect[] =
    "SELECT name, program, args, env, inherit_env, cwd, readiness, labels, incarnation, state, status, terminal,"
    " pid, start_time, cgroup, addr, stdout_log, stderr_log, updated_at,"
    " restart, grp, memory_max, cpus, pids_max, cpuset, mark_serial, lease_owner, lease_ttl_ms, user, liveness,"
    " client_identity FROM procs ORDER BY name";

constexpr char kGroupUpsert[] =
    "INSERT OR REPLACE INTO proc_groups (name, parent, strategy, max_restarts, within_ms, backoff_initial_ms,"
    " backoff_max_ms, backoff_multiplier, backoff_jitter) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

// Creation order (rowid): a parent before its children.
constexpr char kGroupSelect[] =
    "SELECT name, parent, strategy, max_restarts, within_ms, backoff_initial_ms, backoff_max_ms,"
    " backoff_multiplier, backoff_jitter FROM proc_groups ORDER BY rowid";

// Lists are stored NUL-separated (no element of them can hold a NUL).
std::string JoinList(const std::vector<std::string>& items) { return absl::StrJoin(items, absl::string_view("\0", 1)); }
std::vector<std::string> SplitList(absl::string_view blob) {
  if (blob.empty()) return {};
  return absl::StrSplit(blob, absl::string_view("\0", 1));
}

absl::Status SqlError(sqlite3* db, absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(path, ": ", what, ": ", sqlite3_errmsg(db)));
}

absl::string_view ColumnText(sqlite3_stmt* st, int i) {
  const void* p = sqlite3_column_blob(st, i);
  return p == nullptr ? absl::string_view()
                      : absl::string_view(static_cast<const char*>(p), sqlite3_column_bytes(st, i));
}

void BindText(sqlite3_stmt* st, int i, const std::string& s) {
  sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
}
void BindBlob(sqlite3_stmt* st, int i, const std::string& s) {
  sqlite3_bind_blob(st, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
}

// The cgroup directory of `pid` if it is one hostd made for a proc
// (<own>/hostd-<pid>-<n>/<name>-<serial>, manager/cgroup.h); empty otherwise.
std::string HostdCgroupOf(pid_t pid) {
  if (manager::CgroupTree::MountPoint().empty()) return "";
  absl::StatusOr<std::string> cg = manager::ProcCgroupPath(pid);
  if (!cg.ok() || cg->empty()) return "";
  std::vector<absl::string_view> parts = absl::StrSplit(*cg, '/', absl::SkipEmpty());
  if (parts.size() < 2 || !absl::StartsWith(parts[parts.size() - 2], "hostd-")) return "";
  return absl::StrCat(manager::CgroupTree::MountPoint(), *cg);
}

// Whether `table` has `column` (PRAGMA table_info).
bool HasColumn(sqlite3* db, const char* table, const char* column) {
  sqlite3_stmt* st = nullptr;
  bool found = false;
  if (sqlite3_prepare_v2(db, absl::StrCat("PRAGMA table_info(", table, ")").c_str(), -1, &st, nullptr) != SQLITE_OK) {
    return false;
  }
  while (!found && sqlite3_step(st) == SQLITE_ROW) found = ColumnText(st, 1) == column;
  sqlite3_finalize(st);
  return found;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ProcStore>> ProcStore::Open(const std::string& state_dir) {
  std::string path = absl::StrCat(state_dir, "/", kFileName);
  // Created 0600 before SQLite sees it (it would follow the umask); O_NOFOLLOW: a
  // symlink planted there is refused.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, path);
  ::fchmod(fd, 0600);
  ::close(fd);
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr) != SQLITE_OK) {
    absl::Status s = SqlError(db, "open", path);
    sqlite3_close(db);
    return s;
  }
  sqlite3_busy_timeout(db, 5000);
  std::vector<std::string> setup = {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", kSchema, kGroupSchema};
  for (const auto& [column, decl] : kLaterColumns) {
    if (!HasColumn(db, "procs", column)) setup.push_back(absl::StrCat("ALTER TABLE procs ADD COLUMN ", column, " ", decl));
  }
  for (const std::string& sql : setup) {
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      absl::Status s = SqlError(db, sql, path);
      sqlite3_close(db);
      return s;
    }
  }
  // The WAL and shared-memory files SQLite made take the umask: tighten them too.
  for (const char* suffix : {"-wal", "-shm"}) ::chmod(absl::StrCat(path, suffix).c_str(), 0600);
  std::unique_ptr<ProcStore> store(new ProcStore(path, db));
  if (absl::Status s = store->Load(); !s.ok()) return s;
  store->writer_ = std::thread([raw = store.get()] { raw->Run(); });
  return store;
}

ProcStore::ProcStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}

ProcStore::~ProcStore() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (writer_.joinable()) writer_.join();
  sqlite3_close(db_);
}

absl::Status ProcStore::Load() {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, kSelect, -1, &st, nullptr) != SQLITE_OK) return SqlError(db_, "read", path_);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    StoredProc p;
    p.name = std::string(ColumnText(st, 0));
    p.spec.program = std::string(ColumnText(st, 1));
    p.spec.args = SplitList(ColumnText(st, 2));
    for (const std::string& kv : SplitList(ColumnText(st, 3))) {
      size_t eq = kv.find('=');
      if (eq != std::string::npos) p.spec.env.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
    p.spec.inherit_env = SplitList(ColumnText(st, 4));
    p.spec.cwd = std::string(ColumnText(st, 5));
    p.spec.readiness = static_cast<manager::ReadinessMode>(sqlite3_column_int(st, 6));
    for (const std::string& kv : SplitList(ColumnText(st, 7))) {
      size_t eq = kv.find('=');
      if (eq != std::string::npos) p.labels[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    p.incarnation = sqlite3_column_int(st, 8);
    p.state = std::string(ColumnText(st, 9));
    p.status = std::string(ColumnText(st, 10));
    p.terminal = sqlite3_column_int(st, 11) != 0;
    p.pid = static_cast<pid_t>(sqlite3_column_int64(st, 12));
    p.start_time = static_cast<uint64_t>(sqlite3_column_int64(st, 13));
    p.cgroup = std::string(ColumnText(st, 14));
    p.addr = std::string(ColumnText(st, 15));
    p.stdout_log = std::string(ColumnText(st, 16));
    p.stderr_log = std::string(ColumnText(st, 17));
    p.updated_at = absl::FromUnixMillis(sqlite3_column_int64(st, 18));
    absl::string_view restart = ColumnText(st, 19);
    v1::RestartPolicy policy;
    if (!restart.empty()) {
      absl::StatusOr<manager::RestartPolicy> parsed =
          policy.ParseFromArray(restart.data(), static_cast<int>(restart.size()))
              ? FromProto(policy, true)
              : absl::StatusOr<manager::RestartPolicy>(absl::DataLossError("unparsable"));
      if (!parsed.ok()) {
        base::Log().warn("durable proc table {}: proc {}: restart policy not read ({}); not restarted", path_, p.name,
                         parsed.status().message());
      } else {
        p.supervision.restart = *parsed;
      }
    }
    p.supervision.group = std::string(ColumnText(st, 20));
    p.spec.limits.memory_max = sqlite3_column_int64(st, 21);
    p.spec.limits.cpus = sqlite3_column_double(st, 22);
    p.spec.limits.pids_max = sqlite3_column_int64(st, 23);
    p.spec.limits.cpuset_cpus = std::string(ColumnText(st, 24));
    p.mark_serial = static_cast<uint64_t>(sqlite3_column_int64(st, 25));
    p.lease_owner = std::string(ColumnText(st, 26));
    p.lease_ttl = absl::Milliseconds(sqlite3_column_int64(st, 27));
    p.spec.user = std::string(ColumnText(st, 28));
    if (absl::StatusOr<manager::LivenessSpec> live = manager::DecodeLiveness(ColumnText(st, 29)); live.ok()) {
      p.spec.liveness = *std::move(live);
    } else {
      base::Log().warn("durable proc table {}: proc {}: {}; it has no liveness check", path_, p.name,
                       live.status().message());
    }
    if (sqlite3_column_type(st, 30) != SQLITE_NULL) p.spec.client_identity = std::string(ColumnText(st, 30));
    identities_[p.name] = Identity{p.pid, p.start_time, p.cgroup};
    loaded_.push_back(std::move(p));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return SqlError(db_, "read", path_);
  if (sqlite3_prepare_v2(db_, kGroupSelect, -1, &st, nullptr) != SQLITE_OK) return SqlError(db_, "read", path_);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    StoredGroup g;
    g.name = std::string(ColumnText(st, 0));
    g.spec.parent = std::string(ColumnText(st, 1));
    g.spec.strategy = static_cast<manager::Strategy>(sqlite3_column_int(st, 2));
    g.spec.max_restarts = sqlite3_column_int(st, 3);
    g.spec.within = absl::Milliseconds(sqlite3_column_int64(st, 4));
    g.spec.backoff.initial = absl::Milliseconds(sqlite3_column_int64(st, 5));
    g.spec.backoff.max = absl::Milliseconds(sqlite3_column_int64(st, 6));
    g.spec.backoff.multiplier = sqlite3_column_double(st, 7);
    g.spec.backoff.jitter = sqlite3_column_double(st, 8);
    loaded_groups_.push_back(std::move(g));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return SqlError(db_, "read", path_);
  return absl::OkStatus();
}

void ProcStore::Record(StoredProc row) {
  absl::MutexLock lock(&mu_);
  std::string name = row.name;
  auto [it, fresh] = pending_.insert_or_assign(name, std::move(row));
  if (fresh) order_.push_back(std::move(name));
  ++queued_;
}

void ProcStore::Forget(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto [it, fresh] = pending_.insert_or_assign(name, std::nullopt);
  if (fresh) order_.push_back(name);
  ++queued_;
}

void ProcStore::RecordGroup(const std::string& name, std::optional<GroupSpec> spec) {
  absl::MutexLock lock(&mu_);
  pending_groups_.emplace_back(name, std::move(spec));
  ++queued_;
}

void ProcStore::Flush() {
  absl::MutexLock lock(&mu_);
  const uint64_t target = queued_;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return committed_ >= target || stop_; };
  mu_.Await(absl::Condition(&done));
}

void ProcStore::Run() {
  while (true) {
    std::vector<std::pair<std::string, std::optional<StoredProc>>> batch;
    std::vector<std::pair<std::string, std::optional<GroupSpec>>> groups;
    uint64_t upto;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !order_.empty() || !pending_groups_.empty() || stop_;
      };
      mu_.Await(absl::Condition(&ready));
      if (order_.empty() && pending_groups_.empty() && stop_) return;
      groups.swap(pending_groups_);
      for (std::string& name : order_) {
        auto it = pending_.find(name);
        batch.emplace_back(std::move(name), std::move(it->second));
      }
      order_.clear();
      pending_.clear();
      upto = queued_;
    }
    Commit(batch, groups);
    absl::MutexLock lock(&mu_);
    committed_ = upto;
  }
}

void ProcStore::Commit(std::vector<std::pair<std::string, std::optional<StoredProc>>>& batch,
                       std::vector<std::pair<std::string, std::optional<GroupSpec>>>& groups) {
  sqlite3_stmt* upsert = nullptr;
  sqlite3_stmt* remove = nullptr;
  sqlite3_stmt* group_upsert = nullptr;
  sqlite3_stmt* group_remove = nullptr;
  bool ok = sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK &&
            sqlite3_prepare_v2(db_, kUpsert, -1, &upsert, nullptr) == SQLITE_OK &&
            sqlite3_prepare_v2(db_, "DELETE FROM procs WHERE name = ?1", -1, &remove, nullptr) == SQLITE_OK &&
            sqlite3_prepare_v2(db_, kGroupUpsert, -1, &group_upsert, nullptr) == SQLITE_OK &&
            sqlite3_prepare_v2(db_, "DELETE FROM proc_groups WHERE name = ?1", -1, &group_remove, nullptr) == SQLITE_OK;
  // Groups first: a proc's row names a group created in the same batch.
  for (auto& [name, spec] : groups) {
    if (!ok) break;
    sqlite3_stmt* st = spec.has_value() ? group_upsert : group_remove;
    BindText(st, 1, name);
    if (spec.has_value()) {
      BindText(st, 2, spec->parent);
      sqlite3_bind_int(st, 3, static_cast<int>(spec->strategy));
      sqlite3_bind_int(st, 4, spec->max_restarts);
      sqlite3_bind_int64(st, 5, absl::ToInt64Milliseconds(spec->within));
      sqlite3_bind_int64(st, 6, absl::ToInt64Milliseconds(spec->backoff.initial));
      sqlite3_bind_int64(st, 7, absl::ToInt64Milliseconds(spec->backoff.max));
      sqlite3_bind_double(st, 8, spec->backoff.multiplier);
      sqlite3_bind_double(st, 9, spec->backoff.jitter);
    }
    ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_reset(st);
  }
  for (auto& [name, row] : batch) {
    if (!ok) break;
    if (!row.has_value()) {
      identities_.erase(name);
      BindText(remove, 1, name);
      ok = sqlite3_step(remove) == SQLITE_DONE;
      sqlite3_reset(remove);
      continue;
    }
    StoredProc& p = *row;
    Identity& id = identities_[name];
    if (p.pid > 0 && p.pid != id.pid) {
      absl::StatusOr<uint64_t> start = manager::ProcStartTime(p.pid);
      id = Identity{p.pid, start.ok() ? *start : 0, HostdCgroupOf(p.pid)};
    }
    // A row without a pid (starting, restarting) keeps the last one known: adoption
    // only takes live rows, and for an ended one it says which process it was.
    p.pid = id.pid;
    p.start_time = id.start_time;
    p.cgroup = id.cgroup;
    std::vector<std::string> env, labels;
    for (const auto& [k, v] : p.spec.env) env.push_back(absl::StrCat(k, "=", v));
    for (const auto& [k, v] : p.labels) labels.push_back(absl::StrCat(k, "=", v));
    BindText(upsert, 1, p.name);
    BindText(upsert, 2, p.spec.program);
    BindBlob(upsert, 3, JoinList(p.spec.args));
    BindBlob(upsert, 4, JoinList(env));
    BindBlob(upsert, 5, JoinList(p.spec.inherit_env));
    BindText(upsert, 6, p.spec.cwd);
    sqlite3_bind_int(upsert, 7, static_cast<int>(p.spec.readiness));
    BindBlob(upsert, 8, JoinList(labels));
    sqlite3_bind_int(upsert, 9, p.incarnation);
    BindText(upsert, 10, p.state);
    BindText(upsert, 11, p.status);
    sqlite3_bind_int(upsert, 12, p.terminal ? 1 : 0);
    sqlite3_bind_int64(upsert, 13, p.pid);
    sqlite3_bind_int64(upsert, 14, static_cast<int64_t>(p.start_time));
    BindText(upsert, 15, p.cgroup);
    BindText(upsert, 16, p.addr);
    BindText(upsert, 17, p.stdout_log);
    BindText(upsert, 18, p.stderr_log);
    sqlite3_bind_int64(upsert, 19, absl::ToUnixMillis(p.updated_at));
    std::string restart;
    if (p.supervision.restart.mode != manager::RestartMode::kNever) {
      v1::RestartPolicy policy;
      ToProto(p.supervision.restart, &policy);
      restart = policy.SerializeAsString();
    }
    BindBlob(upsert, 20, restart);
    BindText(upsert, 21, p.supervision.group);
    sqlite3_bind_int64(upsert, 22, p.spec.limits.memory_max);
    sqlite3_bind_double(upsert, 23, p.spec.limits.cpus);
    sqlite3_bind_int64(upsert, 24, p.spec.limits.pids_max);
    BindText(upsert, 25, p.spec.limits.cpuset_cpus);
    sqlite3_bind_int64(upsert, 26, static_cast<int64_t>(p.mark_serial));
    BindText(upsert, 27, p.lease_owner);
    sqlite3_bind_int64(upsert, 28, absl::ToInt64Milliseconds(p.lease_ttl));
    BindText(upsert, 29, p.spec.user);
    BindBlob(upsert, 30, manager::EncodeLiveness(p.spec.liveness));
    if (p.spec.client_identity.has_value()) {
      BindText(upsert, 31, *p.spec.client_identity);
    } else {
      sqlite3_bind_null(upsert, 31);
    }
    ok = sqlite3_step(upsert) == SQLITE_DONE;
    sqlite3_reset(upsert);
  }
  if (!ok) base::Log().error("durable proc table {}: {}; this batch is not recorded", path_, sqlite3_errmsg(db_));
  sqlite3_finalize(upsert);
  sqlite3_finalize(remove);
  sqlite3_finalize(group_upsert);
  sqlite3_finalize(group_remove);
  sqlite3_exec(db_, ok ? "COMMIT" : "ROLLBACK", nullptr, nullptr, nullptr);
}

}  // namespace hostd::daemon
