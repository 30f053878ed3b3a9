#include "hostctl/commands_observe.h"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "hostctl/output.h"

namespace hostd::hostctl {
namespace {

struct WatchOptions {
  std::vector<std::string> names;
  bool snapshot = false;
  std::string group;
};

struct LogsOptions {
  std::string name;
  bool err_log = false, follow = false;
  int64_t tail_lines = 0, tail_bytes = 0;
};

struct InfoOptions {};

struct UpgradeOptions {
  std::string path;
};

int Watch(Client& c, const WatchOptions& o) {
  v1::WatchProcsRequest req;
  for (const auto& n : o.names) req.add_names(n);
  req.set_snapshot(o.snapshot);
  req.set_group(o.group);
  grpc::ClientContext ctx;
  auto reader = c.stub().WatchProcs(&ctx, req);
  v1::ProcEvent e;
  while (reader->Read(&e)) {
    if (c.options().json) {
      PrintJson(e);
    } else {
      PrintEvent(e);
    }
    fflush(stdout);
  }
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : c.Fail(s);
}

int Logs(Client& c, const LogsOptions& o) {
  v1::StreamLogsRequest req;
  req.set_name(o.name);
  req.set_stderr(o.err_log);
  req.set_follow(o.follow);
  req.set_tail_lines(o.tail_lines);
  req.set_tail_bytes(o.tail_bytes);
  grpc::ClientContext ctx;
  auto reader = c.stub().StreamLogs(&ctx, req);
  v1::LogChunk chunk;
  // --json: one object per line (a line cut by a chunk's end waits for its rest).
  std::string partial;
  auto print_line = [&](absl::string_view line) {
    PrintJsonObject({{"name", o.name}, {"stream", o.err_log ? "stderr" : "stdout"}, {"line", std::string(line)}});
  };
  while (reader->Read(&chunk)) {
    if (!c.options().json) {
      fwrite(chunk.data().data(), 1, chunk.data().size(), stdout);
    } else {
      partial += chunk.data();
      size_t start = 0;
      for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
        print_line(absl::string_view(partial).substr(start, nl - start));
      }
      partial.erase(0, start);
    }
    fflush(stdout);
  }
  if (c.options().json && !partial.empty()) print_line(partial);
  grpc::Status s = reader->Finish();
  return s.ok() ? 0 : c.Fail(s);
}

int Info(Client& c, const InfoOptions&) {
  v1::HostInfo resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    printf(
        "frontend:    %s\nbackend:     %s\nversion:     %s\nincarnation: %016llx\nuptime:      %llds\n"
        "procs:       %d live, %d ended, %lld spawned\nmanager:     %s\npid:         %d\n",
        resp.frontend_addr().c_str(), resp.backend_addr().c_str(), resp.version().c_str(),
        static_cast<unsigned long long>(resp.incarnation()), static_cast<long long>(resp.uptime().seconds()),
        resp.live_procs(), resp.ended_procs(), static_cast<long long>(resp.spawned_total()), resp.manager().c_str(),
        resp.pid());
    if (!resp.cgroup_fallback().empty()) printf("cgroups:     off (%s)\n", resp.cgroup_fallback().c_str());
    if (resp.draining()) printf("draining:    yes (new spawns refused; `hostctl drain --off` ends it)\n");
  }
  return 0;
}

// Asks hostd to re-execute as `path`, then waits until the new image serves (its
// incarnation differs) and prints what it serves.
int Upgrade(Client& c, const UpgradeOptions& o) {
  std::error_code ec;
  std::string path = std::filesystem::absolute(o.path, ec).string();
  v1::HostInfo before;
  {
    grpc::ClientContext ctx;
    c.Prepare(ctx);
    grpc::Status s = c.stub().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &before);
    if (!s.ok()) return c.Fail(s);
  }
  v1::UpgradeRequest req;
  req.set_path(path);
  v1::UpgradeResponse resp;
  {
    grpc::ClientContext ctx;
    c.Prepare(ctx);
    grpc::Status s = c.stub().Upgrade(&ctx, req, &resp);
    if (!s.ok()) return c.Fail(s);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  grpc::Status last;
  while (absl::Now() < deadline) {
    v1::HostInfo after;
    grpc::ClientContext ctx;
    c.Prepare(ctx, absl::Seconds(2));
    last = c.stub().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &after);
    if (last.ok() && after.incarnation() != before.incarnation()) {
      if (c.options().json) {
        PrintJson(after);
      } else {
        printf("upgraded: pid %d, %s, %d live procs\n", after.pid(), after.version().c_str(), after.live_procs());
      }
      return 0;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  fprintf(stderr, "hostctl: hostd did not come back from the upgrade within 60 s\n");
  return last.ok() ? 5 : c.Fail(last);
}

}  // namespace

Subcommand AddUpgrade(CLI::App& app) {
  auto o = std::make_unique<UpgradeOptions>();
  CLI::App* cli = app.add_subcommand(
      "upgrade", "re-execute hostd in place as another binary, keeping its procs (needs hostd --keep-procs)");
  cli->add_option("path", o->path, "the new hostd binary")->required();
  return MakeSubcommand(cli, std::move(o), Upgrade);
}

Subcommand AddWatch(CLI::App& app) {
  auto o = std::make_unique<WatchOptions>();
  CLI::App* cli = app.add_subcommand("watch", "print lifecycle events as they happen (Ctrl-C stops)");
  cli->add_option("names", o->names, "only these procs");
  cli->add_flag("--snapshot", o->snapshot, "start with every proc's current state");
  cli->add_option("--group", o->group, "only procs of this group (and its subgroups), and its own events");
  return MakeSubcommand(cli, std::move(o), Watch);
}

Subcommand AddLogs(CLI::App& app) {
  auto o = std::make_unique<LogsOptions>();
  CLI::App* cli = app.add_subcommand("logs", "print a proc's stdout (or stderr)");
  cli->add_option("name", o->name)->required();
  cli->add_flag("--stderr", o->err_log, "stderr instead of stdout");
  cli->add_flag("-f,--follow", o->follow, "keep printing until the proc ends for good (across restarts)");
  cli->add_option("-n,--tail", o->tail_lines, "only the last N lines (counted across the newest rotated file too)");
  cli->add_option("--tail-bytes", o->tail_bytes, "only the last N bytes of the current file");
  return MakeSubcommand(cli, std::move(o), Logs);
}

Subcommand AddInfo(CLI::App& app) {
  CLI::App* cli = app.add_subcommand("info", "show hostd's addresses, version and counts");
  return MakeSubcommand(cli, std::make_unique<InfoOptions>(), Info);
}

}  // namespace hostd::hostctl
