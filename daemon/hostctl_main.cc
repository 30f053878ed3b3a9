// hostctl: the command-line client of hostd's gRPC API, one subcommand per RPC.
// `hostctl --help` and `hostctl <command> --help` describe them; exit codes are
// listed in kExitCodes (daemon/hostctl_client.h) and in the README.
#include "base/default_paths.h"
#include "daemon/hostctl_client.h"
#include "daemon/hostctl_supervision.h"


int main(int argc, char** argv) {
  using namespace hostd::daemon;  // NOLINT: a main file
  namespace v1 = hostd::v1;
  Globals g;
  const char* env_addr = getenv("HOSTD_GRPC");
  g.grpc = env_addr != nullptr && env_addr[0] != '\0' ? env_addr : hostd::base::DefaultGrpcAddr();

  CLI::App app{"hostctl: control hostd (spawn, inspect, stop procs; send them messages)"};
  app.footer(kExitCodes);
  app.require_subcommand(1);
  app.fallthrough();  // --json, --grpc, --timeout also after the subcommand
  app.add_option("--grpc", g.grpc, "hostd's control address (also $HOSTD_GRPC)")->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable output (one JSON object per result or event)");
  app.add_option("--timeout", g.timeout_s, "seconds to wait for hostd on quick calls")->capture_default_str();

  // spawn
  std::string name, program, readiness = "handshake", cwd;
  std::vector<std::string> args, env, labels, inherit;
  double ready_timeout = 30;
  int count = 0;
  auto* spawn = app.add_subcommand("spawn", "spawn a proc (or --count N of them: NAME-0 .. NAME-N-1) and wait until ready");
  spawn->add_option("name", name, "proc name ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})")->required();
  spawn->add_option("program", program, "program to run (path or name in PATH)")->required();
  spawn->add_option("args", args, "its arguments (put -- before arguments that start with -)");
  spawn->add_option("--env", env, "NAME=VALUE for the proc's environment (repeatable)");
  spawn->add_option("--inherit-env", inherit, "a variable copied from hostd's environment (repeatable)");
  spawn->add_option("--label", labels, "KEY=VALUE label (repeatable)");
  spawn->add_option("--cwd", cwd, "working directory");
  spawn->add_option("--readiness", readiness, "handshake, exec or notify")
      ->check(CLI::IsMember({"handshake", "exec", "notify"}))
      ->capture_default_str();
  spawn->add_option("--ready-timeout", ready_timeout, "seconds for launch + readiness (0: none)")->capture_default_str();
  spawn->add_option("--count", count, "spawn this many concurrently, named NAME-<i>");

  auto* list = app.add_subcommand("list", "list procs");
  std::vector<std::string> states;
  bool live_only = false;
  list->add_option("--state", states, "only procs in this state (repeatable): starting, running, ready, ...");
  list->add_option("--label", labels, "only procs with KEY=VALUE (repeatable)");
  list->add_flag("--live", live_only, "only procs that have not ended");

  auto* get = app.add_subcommand("get", "show one proc");
  get->add_option("name", name)->required();

  double wait_timeout = 0;
  auto* wait = app.add_subcommand("wait", "wait until a proc ends; exits 0 if it stopped with exit code 0");
  wait->add_option("name", name)->required();
  wait->add_option("--wait-timeout", wait_timeout, "seconds (0: no limit)");
  bool for_good = false;
  wait->add_flag("--for-good", for_good, "until it will not be restarted (not just its current incarnation's end)");

  double grace = 10;
  std::string reason;
  auto* terminate = app.add_subcommand("terminate", "stop a proc: agent stop, SIGTERM, then SIGKILL after the grace");
  terminate->add_option("name", name)->required();
  terminate->add_option("--grace", grace, "seconds before SIGKILL")->capture_default_str();
  terminate->add_option("--reason", reason, "told to the proc");

  auto* kill = app.add_subcommand("kill", "SIGKILL a proc now");
  kill->add_option("name", name)->required();

  int max_in_flight = 64;
  auto* terminate_all = app.add_subcommand("terminate-all", "terminate every proc");
  terminate_all->add_option("--grace", grace, "seconds each proc gets before SIGKILL")->capture_default_str();
  terminate_all->add_option("--max-in-flight", max_in_flight, "terminations at once")->capture_default_str();
  terminate_all->add_option("--reason", reason, "told to the procs");

  std::vector<std::string> names;
  bool snapshot = false;
  auto* watch = app.add_subcommand("watch", "print lifecycle events as they happen (Ctrl-C stops)");
  watch->add_option("names", names, "only these procs");
  watch->add_flag("--snapshot", snapshot, "start with every proc's current state");

  bool err_log = false, follow = false;
  int64_t tail = 0;
  auto* logs = app.add_subcommand("logs", "print a proc's stdout (or stderr)");
  logs->add_option("name", name)->required();
  logs->add_flag("--stderr", err_log, "stderr instead of stdout");
  logs->add_flag("-f,--follow", follow, "keep printing until the proc ends for good (across restarts)");
  logs->add_option("--tail", tail, "start this many bytes before the end");

  std::string port, payload;
  double reply_timeout = 0;
  auto* send = app.add_subcommand("send", "deliver a message to a proc's port (and print its reply)");
  send->add_option("name", name)->required();
  send->add_option("port", port)->required();
  send->add_option("payload", payload, "bytes to send");
  send->add_option("--reply-timeout", reply_timeout, "also wait this many seconds for a reply");

  auto* info = app.add_subcommand("info", "show hostd's addresses, version and counts");

  SupervisionCommands supervision;
  supervision.Add(app, spawn, watch);

  CLI11_PARSE(app, argc, argv);
  Client c(g);
  if (std::optional<int> code = supervision.Run(c, g)) return *code;
  grpc::ClientContext ctx;

  auto kv = [](const std::vector<std::string>& items, const char* what,
               std::map<std::string, std::string>& out) -> bool {
    for (const std::string& item : items) {
      size_t eq = item.find('=');
      if (eq == std::string::npos || eq == 0) {
        fprintf(stderr, "hostctl: %s \"%s\" is not KEY=VALUE\n", what, item.c_str());
        return false;
      }
      out[item.substr(0, eq)] = item.substr(eq + 1);
    }
    return true;
  };

  if (spawn->parsed()) {
    v1::SpawnProcRequest one;
    v1::ProcSpec* spec = one.mutable_spec();
    spec->set_program(program);
    for (const auto& a : args) spec->add_args(a);
    std::map<std::string, std::string> env_map, label_map;
    if (!kv(env, "--env", env_map) || !kv(labels, "--label", label_map)) return 2;
    for (const auto& [k, v] : env_map) {
      auto* e = spec->add_env();
      e->set_name(k);
      e->set_value(v);
    }
    for (const auto& i : inherit) spec->add_inherit_env(i);
    spec->set_cwd(cwd);
    spec->set_readiness(readiness == "exec"     ? v1::READINESS_MODE_EXEC
                        : readiness == "notify" ? v1::READINESS_MODE_NOTIFY
                                                : v1::READINESS_MODE_HANDSHAKE);
    *spec->mutable_ready_timeout() = Secs(ready_timeout);
    one.mutable_labels()->insert(label_map.begin(), label_map.end());
    supervision.FillSpawn(one);
    absl::Duration limit = ready_timeout > 0 ? absl::Seconds(ready_timeout) + absl::Seconds(g.timeout_s)
                                             : absl::InfiniteDuration();
    if (count <= 0) {
      one.set_name(name);
      v1::SpawnProcResponse resp;
      c.Prepare(ctx, limit);
      grpc::Status s = c.stub().SpawnProc(&ctx, one, &resp);
      if (!s.ok()) return c.Fail(s);
      if (g.json) {
        c.PrintJson(resp.proc());
      } else {
        printf("%s %s pid %d\n", resp.proc().proc_id().c_str(), resp.proc().status().display().c_str(),
               resp.proc().status().pid());
      }
      return 0;
    }
    v1::SpawnProcsRequest bulk;
    for (int i = 0; i < count; ++i) {
      v1::SpawnProcRequest* r = bulk.add_procs();
      *r = one;
      r->set_name(absl::StrCat(name, "-", i));
    }
    v1::SpawnProcsResponse resp;
    c.Prepare(ctx, limit == absl::InfiniteDuration() ? limit : limit * (1 + count / 16));
    grpc::Status s;
    {
      Progress progress(c, "ready", count, [&](const v1::ProcEvent& e) {
        return e.status().state() == v1::PROC_STATE_READY && absl::StartsWith(e.name(), name + "-");
      });
      s = c.stub().SpawnProcs(&ctx, bulk, &resp);
    }
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      for (const auto& r : resp.results()) {
        if (r.code() != 0) fprintf(stderr, "%s: %s\n", r.name().c_str(), r.error().c_str());
      }
      printf("spawned %d, failed %d\n", resp.ok(), resp.failed());
    }
    return resp.failed() == 0 ? 0 : 9;
  }
  if (list->parsed()) {
    v1::ListProcsRequest req;
    std::map<std::string, std::string> label_map;
    if (!kv(labels, "--label", label_map)) return 2;
    req.mutable_labels()->insert(label_map.begin(), label_map.end());
    req.set_live_only(live_only);
    for (const std::string& st : states) {
      v1::ProcState parsed;
      if (!v1::ProcState_Parse("PROC_STATE_" + absl::AsciiStrToUpper(st), &parsed)) {
        fprintf(stderr, "hostctl: --state \"%s\" is not starting, running, ready, stopping, stopped, killed or failed\n",
                st.c_str());
        return 2;
      }
      req.add_states(parsed);
    }
    v1::ListProcsResponse resp;
    c.Prepare(ctx);
    grpc::Status s = c.stub().ListProcs(&ctx, req, &resp);
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      PrintProcTable(resp.procs());
    }
    return 0;
  }
  if (get->parsed() || wait->parsed() || kill->parsed() || terminate->parsed()) {
    v1::Proc resp;
    grpc::Status s;
    if (get->parsed()) {
      v1::GetProcRequest req;
      req.set_name(name);
      c.Prepare(ctx);
      s = c.stub().GetProc(&ctx, req, &resp);
    } else if (wait->parsed()) {
      v1::WaitProcRequest req;
      req.set_name(name);
      if (wait_timeout > 0) *req.mutable_timeout() = Secs(wait_timeout);
      req.set_for_good(for_good);
      c.Prepare(ctx, wait_timeout > 0 ? absl::Seconds(wait_timeout + g.timeout_s) : absl::InfiniteDuration());
      s = c.stub().WaitProc(&ctx, req, &resp);
    } else if (kill->parsed()) {
      v1::KillProcRequest req;
      req.set_name(name);
      c.Prepare(ctx);
      s = c.stub().KillProc(&ctx, req, &resp);
    } else {
      v1::TerminateProcRequest req;
      req.set_name(name);
      *req.mutable_grace() = Secs(grace);
      req.set_reason(reason);
      c.Prepare(ctx, absl::Seconds(grace + g.timeout_s));
      s = c.stub().TerminateProc(&ctx, req, &resp);
    }
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else if (get->parsed()) {
      PrintProc(resp);
    } else {
      printf("%s %s\n", resp.name().c_str(), resp.status().display().c_str());
    }
    if (wait->parsed()) {
      bool clean = resp.status().state() == v1::PROC_STATE_STOPPED && resp.status().exit_code() == 0;
      return clean ? 0 : 7;
    }
    return 0;
  }
  if (terminate_all->parsed()) {
    v1::TerminateAllRequest req;
    *req.mutable_grace() = Secs(grace);
    req.set_max_in_flight(max_in_flight);
    req.set_reason(reason);
    v1::ListProcsRequest lreq;
    lreq.set_live_only(true);
    v1::ListProcsResponse live;
    {
      grpc::ClientContext lctx;
      c.Prepare(lctx);
      grpc::Status s = c.stub().ListProcs(&lctx, lreq, &live);
      if (!s.ok()) return c.Fail(s);
    }
    v1::TerminateAllResponse resp;
    grpc::Status s;
    {
      Progress progress(c, "terminated", live.procs_size(), [](const v1::ProcEvent& e) {
        v1::ProcState st = e.status().state();
        return e.kind() == v1::ProcEvent::KIND_TRANSITION &&
               (st == v1::PROC_STATE_STOPPED || st == v1::PROC_STATE_KILLED || st == v1::PROC_STATE_FAILED);
      });
      c.Prepare(ctx, absl::InfiniteDuration());
      s = c.stub().TerminateAll(&ctx, req, &resp);
    }
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      for (const auto& o : resp.outcomes()) {
        printf("%-24s %s\n", o.name().c_str(), o.ok() ? o.status().display().c_str() : o.error().c_str());
      }
      printf("attempted %d, ok %d, failed %d\n", resp.attempted(), resp.ok(), resp.failed());
    }
    return resp.failed() == 0 ? 0 : 9;
  }
  if (watch->parsed()) {
    v1::WatchProcsRequest req;
    for (const auto& n : names) req.add_names(n);
    req.set_snapshot(snapshot);
    supervision.FillWatch(req);
    auto reader = c.stub().WatchProcs(&ctx, req);
    v1::ProcEvent e;
    while (reader->Read(&e)) {
      if (g.json) {
        c.PrintJson(e);
      } else {
        PrintEvent(e);
      }
      fflush(stdout);
    }
    grpc::Status s = reader->Finish();
    return s.ok() ? 0 : c.Fail(s);
  }
  if (logs->parsed()) {
    v1::StreamLogsRequest req;
    req.set_name(name);
    req.set_stderr(err_log);
    req.set_follow(follow);
    req.set_tail_bytes(tail);
    auto reader = c.stub().StreamLogs(&ctx, req);
    v1::LogChunk chunk;
    while (reader->Read(&chunk)) {
      fwrite(chunk.data().data(), 1, chunk.data().size(), stdout);
      fflush(stdout);
    }
    grpc::Status s = reader->Finish();
    return s.ok() ? 0 : c.Fail(s);
  }
  if (send->parsed()) {
    v1::SendMessageRequest req;
    req.set_name(name);
    req.set_port(port);
    req.set_payload(payload);
    if (reply_timeout > 0) *req.mutable_reply_timeout() = Secs(reply_timeout);
    v1::SendMessageResponse resp;
    c.Prepare(ctx, absl::Seconds(g.timeout_s + reply_timeout + 10));
    grpc::Status s = c.stub().SendMessage(&ctx, req, &resp);
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else if (resp.replied()) {
      printf("%s\n", resp.reply_payload().c_str());
    } else {
      printf("delivered\n");
    }
    return 0;
  }
  if (info->parsed()) {
    v1::HostInfo resp;
    c.Prepare(ctx);
    grpc::Status s = c.stub().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &resp);
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      printf("frontend:    %s\nbackend:     %s\nversion:     %s\nincarnation: %016llx\nuptime:      %llds\n"
             "procs:       %d live, %d ended, %lld spawned\nmanager:     %s\npid:         %d\n",
             resp.frontend_addr().c_str(), resp.backend_addr().c_str(), resp.version().c_str(),
             static_cast<unsigned long long>(resp.incarnation()), static_cast<long long>(resp.uptime().seconds()),
             resp.live_procs(), resp.ended_procs(), static_cast<long long>(resp.spawned_total()),
             resp.manager().c_str(), resp.pid());
      if (!resp.cgroup_fallback().empty()) printf("cgroups:     off (%s)\n", resp.cgroup_fallback().c_str());
    }
    return 0;
  }
  return 2;
}
