#include "hostctl/commands_procs.h"

#include <signal.h>
#include <string.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "hostctl/commands_supervision.h"
#include "hostctl/output.h"
#include "hostctl/progress.h"

namespace hostd::hostctl {
namespace {

struct SpawnOptions {
  std::string name, program, readiness = "handshake", cwd, user;
  std::vector<std::string> args, env, labels, inherit;
  double ready_timeout = 30;
  int count = 0;
  bool ranks = false;
  int first_rank = 0, world_size = 0;
  RestartOptions restart;
  int64_t memory_max = 0, pids_max = 0;
  double cpus = 0;
  std::string cpuset;
  std::string lease_owner;
  double lease_ttl = 0;
  // Liveness: a kind, and the rest only when given (unset: hostd's defaults).
  bool liveness_heartbeat = false;
  std::string liveness_exec, liveness_dump_signal;
  std::optional<double> liveness_period, liveness_timeout, liveness_delay, liveness_dump_grace;
  int liveness_failures = 0;
};

struct ListOptions {
  std::vector<std::string> states, labels;
  bool live_only = false;
};

struct NameOptions {
  std::string name;
};

struct WaitOptions {
  std::string name;
  double wait_timeout = 0;
  bool for_good = false;
};

struct TerminateOptions {
  std::string name, reason;
  double grace = 10;
};

struct TerminateAllOptions {
  double grace = 10;
  int max_in_flight = 64;
  std::string reason;
};

struct LeaseRenewOptions {
  std::string owner;
};

struct SendOptions {
  std::string name, port, payload;
  double reply_timeout = 0;
};

// KEY=VALUE items into `out`; false (after saying which item, naming `what`) on a malformed one.
bool ParseKeyValues(const std::vector<std::string>& items, const char* what, std::map<std::string, std::string>& out) {
  for (const std::string& item : items) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      fprintf(stderr, "hostctl: %s \"%s\" is not KEY=VALUE\n", what, item.c_str());
      return false;
    }
    out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return true;
}

// A signal as a number, or named with or without "SIG" (SIGQUIT, quit, 3); 0 if it is none.
int ParseSignal(const std::string& text) {
  int n = 0;
  if (absl::SimpleAtoi(text, &n)) return n > 0 && n <= SIGRTMAX ? n : 0;
  absl::string_view name = text;
  std::string upper = absl::AsciiStrToUpper(name);
  absl::string_view bare = upper;
  absl::ConsumePrefix(&bare, "SIG");
  for (int sig = 1; sig < NSIG; ++sig) {
    const char* abbrev = ::sigabbrev_np(sig);
    if (abbrev != nullptr && bare == abbrev) return sig;
  }
  return 0;
}

// The spawn's liveness flags into `spec`; false (after saying why) on a usage error.
bool FillLiveness(const SpawnOptions& o, v1::ProcSpec* spec) {
  const bool exec = !o.liveness_exec.empty();
  const bool tuned = o.liveness_period || o.liveness_timeout || o.liveness_delay || o.liveness_dump_grace ||
                     o.liveness_failures != 0 || !o.liveness_dump_signal.empty();
  if (!o.liveness_heartbeat && !exec) {
    if (tuned) fprintf(stderr, "hostctl: --liveness-* options need --liveness-heartbeat or --liveness-exec\n");
    return !tuned;
  }
  v1::LivenessCheck* l = spec->mutable_liveness();
  if (o.liveness_heartbeat) {
    l->mutable_heartbeat();
  } else {
    for (absl::string_view arg : absl::StrSplit(o.liveness_exec, absl::ByAnyChar(" \t"), absl::SkipEmpty())) {
      l->mutable_exec()->add_command(std::string(arg));
    }
  }
  if (o.liveness_period) *l->mutable_period() = SecondsToProto(*o.liveness_period);
  if (o.liveness_timeout) *l->mutable_timeout() = SecondsToProto(*o.liveness_timeout);
  if (o.liveness_delay) *l->mutable_initial_delay() = SecondsToProto(*o.liveness_delay);
  if (o.liveness_dump_grace) *l->mutable_dump_grace() = SecondsToProto(*o.liveness_dump_grace);
  l->set_failure_threshold(o.liveness_failures);
  if (!o.liveness_dump_signal.empty()) {
    int sig = ParseSignal(o.liveness_dump_signal);
    if (sig == 0) {
      fprintf(stderr, "hostctl: --liveness-dump-signal \"%s\" is not a signal (SIGQUIT, QUIT or 3, say)\n",
              o.liveness_dump_signal.c_str());
      return false;
    }
    l->set_dump_signal(sig);
  }
  return true;
}

// The reply of a call on one proc: JSON, or its name and status.
void PrintProcReply(const Client& c, const v1::Proc& resp) {
  if (c.options().json) {
    PrintJson(resp);
  } else {
    printf("%s %s\n", resp.name().c_str(), resp.status().display().c_str());
  }
}

int Spawn(Client& c, const SpawnOptions& o) {
  v1::SpawnProcRequest one;
  v1::ProcSpec* spec = one.mutable_spec();
  spec->set_program(o.program);
  for (const auto& a : o.args) spec->add_args(a);
  std::map<std::string, std::string> env_map, label_map;
  if (!ParseKeyValues(o.env, "--env", env_map) || !ParseKeyValues(o.labels, "--label", label_map)) return kExitUsage;
  for (const auto& [k, v] : env_map) {
    auto* e = spec->add_env();
    e->set_name(k);
    e->set_value(v);
  }
  for (const auto& i : o.inherit) spec->add_inherit_env(i);
  spec->set_cwd(o.cwd);
  spec->set_user(o.user);
  spec->set_readiness(o.readiness == "exec"     ? v1::READINESS_MODE_EXEC
                      : o.readiness == "notify" ? v1::READINESS_MODE_NOTIFY
                                                : v1::READINESS_MODE_HANDSHAKE);
  *spec->mutable_ready_timeout() = SecondsToProto(o.ready_timeout);
  spec->mutable_limits()->set_memory_max_bytes(o.memory_max);
  spec->mutable_limits()->set_cpus(o.cpus);
  spec->mutable_limits()->set_pids_max(o.pids_max);
  spec->mutable_limits()->set_cpuset_cpus(o.cpuset);
  if (!FillLiveness(o, spec)) return kExitUsage;
  one.mutable_labels()->insert(label_map.begin(), label_map.end());
  FillRestart(o.restart, one);
  if (!o.lease_owner.empty()) {
    one.mutable_lease()->set_owner(o.lease_owner);
    *one.mutable_lease()->mutable_ttl() = SecondsToProto(o.lease_ttl);
  }
  absl::Duration limit = o.ready_timeout > 0 ? absl::Seconds(o.ready_timeout) + absl::Seconds(c.options().timeout_s)
                                             : absl::InfiniteDuration();
  grpc::ClientContext ctx;
  if (o.ranks && o.count <= 0) {
    fprintf(stderr, "hostctl: --ranks needs --count (ranks are handed out by a bulk spawn)\n");
    return kExitUsage;
  }
  if (o.count <= 0) {
    one.set_name(o.name);
    v1::SpawnProcResponse resp;
    c.Prepare(ctx, limit);
    grpc::Status s = c.stub().SpawnProc(&ctx, one, &resp);
    if (!s.ok()) return c.Fail(s);
    if (c.options().json) {
      PrintJson(resp.proc());
    } else {
      printf("%s %s pid %d\n", resp.proc().proc_id().c_str(), resp.proc().status().display().c_str(),
             resp.proc().status().pid());
    }
    return 0;
  }
  // In batches no bigger than hostd's default --max-spawn-batch; the replies add up.
  constexpr int kBatch = 1000;
  v1::SpawnProcsResponse resp;
  grpc::Status s;
  {
    Progress progress(c, "ready", o.count, [&](const v1::ProcEvent& e) {
      return e.status().state() == v1::PROC_STATE_READY && absl::StartsWith(e.name(), o.name + "-");
    });
    for (int first = 0; first < o.count && s.ok(); first += kBatch) {
      v1::SpawnProcsRequest bulk;
      for (int i = first; i < std::min(o.count, first + kBatch); ++i) {
        v1::SpawnProcRequest* r = bulk.add_procs();
        *r = one;
        r->set_name(absl::StrCat(o.name, "-", i));
      }
      if (o.ranks) {
        v1::RankEnv* ranks = bulk.mutable_ranks();
        ranks->set_first_rank(o.first_rank + first);
        ranks->set_world_size(o.world_size > 0 ? o.world_size : o.first_rank + o.count);
        ranks->set_first_local_rank(first);
        ranks->set_local_world_size(o.count);
      }
      v1::SpawnProcsResponse part;
      grpc::ClientContext batch_ctx;
      c.Prepare(batch_ctx, limit == absl::InfiniteDuration() ? limit : limit * (1 + bulk.procs_size() / 16));
      s = c.stub().SpawnProcs(&batch_ctx, bulk, &part);
      resp.set_ok(resp.ok() + part.ok());
      resp.set_failed(resp.failed() + part.failed());
      resp.set_details_omitted(resp.details_omitted() + part.details_omitted());
      resp.set_results_omitted(resp.results_omitted() + part.results_omitted());
      for (auto& r : *part.mutable_results()) *resp.add_results() = std::move(r);
    }
  }
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    for (const auto& r : resp.results()) {
      if (r.code() != 0) fprintf(stderr, "%s: %s\n", r.name().c_str(), r.error().c_str());
    }
    printf("spawned %d, failed %d\n", resp.ok(), resp.failed());
  }
  return resp.failed() == 0 ? 0 : kExitPartlyFailed;
}

int List(Client& c, const ListOptions& o) {
  v1::ListProcsRequest req;
  std::map<std::string, std::string> label_map;
  if (!ParseKeyValues(o.labels, "--label", label_map)) return kExitUsage;
  req.mutable_labels()->insert(label_map.begin(), label_map.end());
  req.set_live_only(o.live_only);
  for (const std::string& st : o.states) {
    v1::ProcState parsed;
    if (!v1::ProcState_Parse("PROC_STATE_" + absl::AsciiStrToUpper(st), &parsed)) {
      fprintf(stderr, "hostctl: --state \"%s\" is not starting, running, ready, stopping, stopped, killed or failed\n",
              st.c_str());
      return kExitUsage;
    }
    req.add_states(parsed);
  }
  v1::ListProcsResponse resp;
  do {  // page by page, as hostd's reply budget cuts them
    v1::ListProcsResponse page;
    grpc::ClientContext ctx;
    c.Prepare(ctx);
    grpc::Status s = c.stub().ListProcs(&ctx, req, &page);
    if (!s.ok()) return c.Fail(s);
    for (auto& p : *page.mutable_procs()) *resp.add_procs() = std::move(p);
    req.set_page_token(page.next_page_token());
  } while (!req.page_token().empty());
  if (c.options().json) {
    PrintJson(resp);
  } else {
    PrintProcTable(resp.procs());
  }
  return 0;
}

int Get(Client& c, const NameOptions& o) {
  v1::GetProcRequest req;
  req.set_name(o.name);
  v1::Proc resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().GetProc(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    PrintProc(resp);
  }
  return 0;
}

int Wait(Client& c, const WaitOptions& o) {
  v1::WaitProcRequest req;
  req.set_name(o.name);
  if (o.wait_timeout > 0) *req.mutable_timeout() = SecondsToProto(o.wait_timeout);
  req.set_for_good(o.for_good);
  v1::Proc resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx, o.wait_timeout > 0 ? absl::Seconds(o.wait_timeout + c.options().timeout_s) : absl::InfiniteDuration());
  grpc::Status s = c.stub().WaitProc(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  PrintProcReply(c, resp);
  bool clean = resp.status().state() == v1::PROC_STATE_STOPPED && resp.status().exit_code() == 0;
  return clean ? 0 : kExitProcFailed;
}

int Terminate(Client& c, const TerminateOptions& o) {
  v1::TerminateProcRequest req;
  req.set_name(o.name);
  *req.mutable_grace() = SecondsToProto(o.grace);
  req.set_reason(o.reason);
  v1::Proc resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx, absl::Seconds(o.grace + c.options().timeout_s));
  grpc::Status s = c.stub().TerminateProc(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  PrintProcReply(c, resp);
  return 0;
}

int Kill(Client& c, const NameOptions& o) {
  v1::KillProcRequest req;
  req.set_name(o.name);
  v1::Proc resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().KillProc(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  PrintProcReply(c, resp);
  return 0;
}

int TerminateAll(Client& c, const TerminateAllOptions& o) {
  v1::TerminateAllRequest req;
  *req.mutable_grace() = SecondsToProto(o.grace);
  req.set_max_in_flight(o.max_in_flight);
  req.set_reason(o.reason);
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
    grpc::ClientContext ctx;
    c.Prepare(ctx, absl::InfiniteDuration());
    s = c.stub().TerminateAll(&ctx, req, &resp);
  }
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    for (const auto& out : resp.outcomes()) {
      printf("%-24s %s\n", out.name().c_str(), out.ok() ? out.status().display().c_str() : out.error().c_str());
    }
    printf("attempted %d, ok %d, failed %d\n", resp.attempted(), resp.ok(), resp.failed());
  }
  return resp.failed() == 0 ? 0 : kExitPartlyFailed;
}

int Send(Client& c, const SendOptions& o) {
  v1::SendMessageRequest req;
  req.set_name(o.name);
  req.set_port(o.port);
  req.set_payload(o.payload);
  if (o.reply_timeout > 0) *req.mutable_reply_timeout() = SecondsToProto(o.reply_timeout);
  v1::SendMessageResponse resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx, absl::Seconds(c.options().timeout_s + o.reply_timeout + 10));
  grpc::Status s = c.stub().SendMessage(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else if (resp.replied()) {
    printf("%s\n", resp.reply_payload().c_str());
  } else {
    printf("delivered\n");
  }
  return 0;
}

int LeaseRenew(Client& c, const LeaseRenewOptions& o) {
  v1::RenewLeaseRequest req;
  req.set_owner(o.owner);
  v1::RenewLeaseResponse resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().RenewLease(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    printf("renewed %d procs of %s; the first expires at %s\n", resp.procs(), o.owner.c_str(),
           LocalTime(resp.expires_at()).c_str());
  }
  return 0;
}

}  // namespace

Subcommand AddSpawn(CLI::App& app) {
  auto o = std::make_unique<SpawnOptions>();
  CLI::App* cli =
      app.add_subcommand("spawn", "spawn a proc (or --count N of them: NAME-0 .. NAME-N-1) and wait until ready");
  cli->add_option("name", o->name, "proc name ([A-Za-z0-9][A-Za-z0-9_.-]{0,63})")->required();
  cli->add_option("program", o->program, "program to run (path or name in PATH)")->required();
  cli->add_option("args", o->args, "its arguments (put -- before arguments that start with -)");
  cli->add_option("--env", o->env, "NAME=VALUE for the proc's environment (repeatable)");
  cli->add_option("--inherit-env", o->inherit, "a variable copied from hostd's environment (repeatable)");
  cli->add_option("--label", o->labels, "KEY=VALUE label (repeatable)");
  cli->add_option("--cwd", o->cwd, "working directory");
  cli->add_option("--user", o->user, "run as this user (NAME or NAME:GROUP; hostd's --allow-user must list it)");
  cli->add_option("--readiness", o->readiness, "handshake, exec or notify")
      ->check(CLI::IsMember({"handshake", "exec", "notify"}))
      ->capture_default_str();
  cli->add_option("--ready-timeout", o->ready_timeout, "seconds for launch + readiness (0: none)")
      ->capture_default_str();
  cli->add_option("--count", o->count, "spawn this many concurrently, named NAME-<i>");
  auto* ranks = cli->add_flag("--ranks", o->ranks,
                              "with --count: set RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE in each proc's "
                              "environment (NAME-<i> has local rank i)");
  cli->add_option("--first-rank", o->first_rank, "with --ranks: NAME-0's RANK (this host's part of a larger job)")
      ->check(CLI::NonNegativeNumber)
      ->needs(ranks);
  cli->add_option("--world-size", o->world_size, "with --ranks: WORLD_SIZE (default: --first-rank + --count)")
      ->check(CLI::PositiveNumber)
      ->needs(ranks);
  cli->add_option("--memory-max", o->memory_max, "cgroup memory.max: bytes, or with a unit (512M, 2G)")
      ->transform(CLI::AsSizeValue(false));
  cli->add_option("--cpus", o->cpus, "cgroup cpu.max as CPUs (1.5)");
  cli->add_option("--pids-max", o->pids_max, "cgroup pids.max: processes and threads at once");
  cli->add_option("--cpuset", o->cpuset, "cgroup cpuset.cpus (0-3,6)");
  auto* owner = cli->add_option("--lease-owner", o->lease_owner,
                                 "hold the proc under this client's lease: it is terminated (and not restarted) "
                                 "once the owner stops renewing it (`hostctl lease renew`)");
  cli->add_option("--lease-ttl", o->lease_ttl, "with --lease-owner: seconds the lease lasts unrenewed (1 to 86400)")
      ->needs(owner);
  owner->needs(cli->get_option("--lease-ttl"));
  auto* heartbeat = cli->add_flag("--liveness-heartbeat", o->liveness_heartbeat,
                                  "liveness: the proc's runtime must heartbeat (ProcRuntime::Heartbeat) every period");
  cli->add_option("--liveness-exec", o->liveness_exec,
                  "liveness: run this command (split at spaces) every period; an exit other than 0 is a miss")
      ->excludes(heartbeat);
  cli->add_option("--liveness-period", o->liveness_period, "liveness: seconds between checks (default 10)");
  cli->add_option("--liveness-timeout", o->liveness_timeout, "liveness: seconds a probe may run (default: the period)");
  cli->add_option("--liveness-failures", o->liveness_failures, "liveness: misses in a row that fail it (default 3)");
  cli->add_option("--liveness-delay", o->liveness_delay, "liveness: seconds after ready before the first period");
  cli->add_option("--liveness-dump-signal", o->liveness_dump_signal,
                  "liveness: sent first, so the proc can dump its stacks (SIGQUIT, USR1, 3)");
  cli->add_option("--liveness-dump-grace", o->liveness_dump_grace,
                  "liveness: seconds between the dump signal and SIGKILL (default 2)");
  AddRestartOptions(cli, o->restart);
  return MakeSubcommand(cli, std::move(o), Spawn);
}

Subcommand AddList(CLI::App& app) {
  auto o = std::make_unique<ListOptions>();
  CLI::App* cli = app.add_subcommand("list", "list procs");
  cli->add_option("--state", o->states, "only procs in this state (repeatable): starting, running, ready, ...");
  cli->add_option("--label", o->labels, "only procs with KEY=VALUE (repeatable)");
  cli->add_flag("--live", o->live_only, "only procs that have not ended");
  return MakeSubcommand(cli, std::move(o), List);
}

Subcommand AddGet(CLI::App& app) {
  auto o = std::make_unique<NameOptions>();
  CLI::App* cli = app.add_subcommand("get", "show one proc");
  cli->add_option("name", o->name)->required();
  return MakeSubcommand(cli, std::move(o), Get);
}

Subcommand AddWait(CLI::App& app) {
  auto o = std::make_unique<WaitOptions>();
  CLI::App* cli = app.add_subcommand("wait", "wait until a proc ends; exits 0 if it stopped with exit code 0");
  cli->add_option("name", o->name)->required();
  cli->add_option("--wait-timeout", o->wait_timeout, "seconds (0: no limit)");
  cli->add_flag("--for-good", o->for_good, "until it will not be restarted (not just its current incarnation's end)");
  return MakeSubcommand(cli, std::move(o), Wait);
}

Subcommand AddTerminate(CLI::App& app) {
  auto o = std::make_unique<TerminateOptions>();
  CLI::App* cli = app.add_subcommand("terminate", "stop a proc: agent stop, SIGTERM, then SIGKILL after the grace");
  cli->add_option("name", o->name)->required();
  cli->add_option("--grace", o->grace, "seconds before SIGKILL")->capture_default_str();
  cli->add_option("--reason", o->reason, "told to the proc");
  return MakeSubcommand(cli, std::move(o), Terminate);
}

Subcommand AddKill(CLI::App& app) {
  auto o = std::make_unique<NameOptions>();
  CLI::App* cli = app.add_subcommand("kill", "SIGKILL a proc now");
  cli->add_option("name", o->name)->required();
  return MakeSubcommand(cli, std::move(o), Kill);
}

Subcommand AddTerminateAll(CLI::App& app) {
  auto o = std::make_unique<TerminateAllOptions>();
  CLI::App* cli = app.add_subcommand("terminate-all", "terminate every proc");
  cli->add_option("--grace", o->grace, "seconds each proc gets before SIGKILL")->capture_default_str();
  cli->add_option("--max-in-flight", o->max_in_flight, "terminations at once")->capture_default_str();
  cli->add_option("--reason", o->reason, "told to the procs");
  return MakeSubcommand(cli, std::move(o), TerminateAll);
}

CLI::App* AddLease(CLI::App& app) {
  CLI::App* lease = app.add_subcommand("lease", "renew a client's lease on its procs");
  lease->require_subcommand(1);
  return lease;
}

Subcommand AddLeaseRenew(CLI::App& lease) {
  auto o = std::make_unique<LeaseRenewOptions>();
  CLI::App* cli = lease.add_subcommand("renew", "renew every live proc of a lease owner for one more TTL");
  cli->add_option("owner", o->owner, "the --lease-owner its procs were spawned with")->required();
  return MakeSubcommand(cli, std::move(o), LeaseRenew);
}

Subcommand AddSend(CLI::App& app) {
  auto o = std::make_unique<SendOptions>();
  CLI::App* cli = app.add_subcommand("send", "deliver a message to a proc's port (and print its reply)");
  cli->add_option("name", o->name)->required();
  cli->add_option("port", o->port)->required();
  cli->add_option("payload", o->payload, "bytes to send");
  cli->add_option("--reply-timeout", o->reply_timeout, "also wait this many seconds for a reply");
  return MakeSubcommand(cli, std::move(o), Send);
}

}  // namespace hostd::hostctl
