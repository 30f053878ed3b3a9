#include "hostctl/commands_supervision.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "hostctl/output.h"

namespace hostd::hostctl {
namespace {

struct GroupCreateOptions {
  std::string name, parent, strategy = "one-for-one";
  int max_restarts = 3;
  double within = 5, backoff_initial = 0.1, backoff_max = 30;
};

struct GroupDeleteOptions {
  std::string name;
};

struct RestartProcOptions {
  std::string name;
  bool handoff = false;
  double grace = 5, handoff_timeout = 10;
};

struct SignalOptions {
  std::string signal, data, group;
};

struct TreeOptions {};

void FillBackoff(double initial, double max, double multiplier, double jitter, v1::Backoff* out) {
  *out->mutable_initial() = SecondsToProto(initial);
  *out->mutable_max() = SecondsToProto(max);
  out->set_multiplier(multiplier);
  out->set_jitter(jitter);
}

std::string StrategyText(v1::Strategy s) {
  switch (s) {
    case v1::STRATEGY_ONE_FOR_ALL: return "one-for-all";
    case v1::STRATEGY_REST_FOR_ONE: return "rest-for-one";
    default: return "one-for-one";
  }
}

std::string Bytes(uint64_t b) {
  if (b >= (10u << 20)) return absl::StrCat(b >> 20, "MiB");
  if (b >= (10u << 10)) return absl::StrCat(b >> 10, "KiB");
  return absl::StrCat(b, "B");
}

void PrintNode(const v1::TreeNode& n, int depth) {
  std::string indent(static_cast<size_t>(depth) * 2, ' ');
  if (n.has_group()) {
    const v1::Group& g = n.group();
    printf("%s%s/ [%s, %d restarts%s]\n", indent.c_str(), g.name().c_str(), StrategyText(g.strategy()).c_str(),
           g.restarts(), g.gave_up() ? absl::StrCat(", GAVE UP: ", g.why()).c_str() : "");
  } else {
    const v1::Proc& p = n.proc();
    std::string usage = n.has_cpu_seconds()
                            ? absl::StrFormat(" cpu %.2fs rss %s in %d process%s", n.cpu_seconds(),
                                              Bytes(n.rss_bytes()), n.processes(), n.processes() == 1 ? "" : "es")
                            : "";
    std::string up = n.uptime_seconds() > 0 ? absl::StrFormat(" up %.0fs", n.uptime_seconds()) : "";
    printf("%s%-*s %-9s pid %-7d #%d%s%s%s\n", indent.c_str(), std::max(1, 24 - depth * 2), p.name().c_str(),
           p.restarting() ? "restarting" : StateName(p.status().state()).c_str(), p.status().pid(), p.incarnation(),
           up.c_str(), usage.c_str(),
           p.status().state() >= v1::PROC_STATE_STOPPED ? absl::StrCat(" ", p.status().display()).c_str() : "");
  }
  for (const v1::TreeNode& c : n.children()) PrintNode(c, depth + 1);
}

int GroupCreate(Client& c, const GroupCreateOptions& o) {
  v1::CreateGroupRequest req;
  req.set_name(o.name);
  req.set_parent(o.parent);
  req.set_strategy(o.strategy == "one-for-all"    ? v1::STRATEGY_ONE_FOR_ALL
                   : o.strategy == "rest-for-one" ? v1::STRATEGY_REST_FOR_ONE
                                                  : v1::STRATEGY_ONE_FOR_ONE);
  req.set_max_restarts(o.max_restarts);
  *req.mutable_within() = SecondsToProto(o.within);
  FillBackoff(o.backoff_initial, o.backoff_max, 2, 0.2, req.mutable_backoff());
  v1::Group resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().CreateGroup(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    printf("group %s created (%s)\n", resp.name().c_str(), StrategyText(resp.strategy()).c_str());
  }
  return 0;
}

int GroupDelete(Client& c, const GroupDeleteOptions& o) {
  v1::DeleteGroupRequest req;
  req.set_name(o.name);
  v1::DeleteGroupResponse resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().DeleteGroup(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJsonObject({{"deleted", o.name}});
  } else {
    printf("group %s deleted\n", o.name.c_str());
  }
  return 0;
}

int RestartProc(Client& c, const RestartProcOptions& o) {
  v1::RestartProcRequest req;
  req.set_name(o.name);
  req.set_handoff(o.handoff);
  *req.mutable_grace() = SecondsToProto(o.grace);
  *req.mutable_handoff_timeout() = SecondsToProto(o.handoff_timeout);
  v1::Proc resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx, absl::Seconds(o.grace + o.handoff_timeout + c.options().timeout_s + 30));
  grpc::Status s = c.stub().RestartProc(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    printf("%s incarnation %d %s pid %d\n", resp.proc_id().c_str(), resp.incarnation(), resp.status().display().c_str(),
           resp.status().pid());
  }
  return 0;
}

int Signal(Client& c, const SignalOptions& o) {
  v1::BroadcastSignalRequest req;
  req.set_signal(o.signal);
  req.set_data(o.data);
  req.set_group(o.group);
  v1::BroadcastSignalResponse resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().BroadcastSignal(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    printf("signal %s: %d procs, %d delivered, %d queued, %d failed\n", o.signal.c_str(), resp.targeted(),
           resp.delivered(), resp.queued(), resp.failed());
  }
  return resp.failed() == 0 ? 0 : kExitPartlyFailed;
}

int Tree(Client& c, const TreeOptions&) {
  v1::Tree resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().GetTree(&ctx, v1::GetTreeRequest(), &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else {
    for (const v1::TreeNode& n : resp.roots()) PrintNode(n, 0);
    if (resp.nodes_omitted() > 0) {
      printf("(%d more not shown, past the reply size; hostctl ls lists every proc)\n", resp.nodes_omitted());
    }
  }
  return 0;
}

}  // namespace

void AddRestartOptions(CLI::App* spawn, RestartOptions& o) {
  spawn->add_option("--restart", o.mode, "when hostd starts it again: never, on-failure or always")
      ->check(CLI::IsMember({"never", "on-failure", "always"}))
      ->capture_default_str();
  spawn->add_option("--max-restarts", o.max_restarts, "give up after this many restarts within --within")
      ->capture_default_str();
  spawn->add_option("--within", o.within, "seconds: the restart intensity window")->capture_default_str();
  spawn->add_option("--backoff-initial", o.backoff_initial, "seconds before the first restart")->capture_default_str();
  spawn->add_option("--backoff-max", o.backoff_max, "seconds: the cap on the delay")->capture_default_str();
  spawn->add_option("--backoff-multiplier", o.backoff_multiplier, "delay growth per restart")->capture_default_str();
  spawn->add_option("--jitter", o.jitter, "each delay is cut by a random fraction up to this")->capture_default_str();
  spawn->add_option("--group", o.group, "join this supervision group (last in its start order)");
  spawn->add_option("--permanent-exit-code", o.permanent_exit_codes,
                    "an exit code that is never restarted, whatever --restart says (repeatable)")
      ->allow_extra_args(false)  // one code per flag: what follows is the proc's
      ->check(CLI::Range(0, 255));
}

void FillRestart(const RestartOptions& o, v1::SpawnProcRequest& req) {
  req.set_group(o.group);
  v1::RestartPolicy* r = req.mutable_restart();
  r->set_mode(o.mode == "always"       ? v1::RESTART_MODE_ALWAYS
              : o.mode == "on-failure" ? v1::RESTART_MODE_ON_FAILURE
                                       : v1::RESTART_MODE_NEVER);
  r->set_max_restarts(o.max_restarts);
  *r->mutable_within() = SecondsToProto(o.within);
  FillBackoff(o.backoff_initial, o.backoff_max, o.backoff_multiplier, o.jitter, r->mutable_backoff());
  for (int code : o.permanent_exit_codes) r->add_permanent_exit_codes(code);
}

CLI::App* AddGroup(CLI::App& app) {
  CLI::App* group = app.add_subcommand("group", "create or delete a supervision group");
  group->require_subcommand(1);
  return group;
}

Subcommand AddGroupCreate(CLI::App& group) {
  auto o = std::make_unique<GroupCreateOptions>();
  CLI::App* cli = group.add_subcommand("create", "create a group");
  cli->add_option("name", o->name)->required();
  cli->add_option("--parent", o->parent, "nest it in this group");
  cli->add_option("--strategy", o->strategy, "one-for-one, one-for-all or rest-for-one")
      ->check(CLI::IsMember({"one-for-one", "one-for-all", "rest-for-one"}))
      ->capture_default_str();
  cli->add_option("--max-restarts", o->max_restarts, "give up after this many restarts within --within")
      ->capture_default_str();
  cli->add_option("--within", o->within, "seconds")->capture_default_str();
  cli->add_option("--backoff-initial", o->backoff_initial, "seconds")->capture_default_str();
  cli->add_option("--backoff-max", o->backoff_max, "seconds")->capture_default_str();
  return MakeSubcommand(cli, std::move(o), GroupCreate);
}

Subcommand AddGroupDelete(CLI::App& group) {
  auto o = std::make_unique<GroupDeleteOptions>();
  CLI::App* cli = group.add_subcommand("delete", "delete a group that has no members");
  cli->add_option("name", o->name)->required();
  return MakeSubcommand(cli, std::move(o), GroupDelete);
}

Subcommand AddRestart(CLI::App& app) {
  auto o = std::make_unique<RestartProcOptions>();
  CLI::App* cli =
      app.add_subcommand("restart", "restart a running proc as its next incarnation (same name and address)");
  cli->add_option("name", o->name)->required();
  cli->add_flag("--handoff", o->handoff,
                "hand the proc's state to the new incarnation (it keeps running if it cannot)");
  cli->add_option("--grace", o->grace, "seconds to stop the running incarnation")->capture_default_str();
  cli->add_option("--handoff-timeout", o->handoff_timeout, "seconds to wait for the state")->capture_default_str();
  return MakeSubcommand(cli, std::move(o), RestartProc);
}

Subcommand AddSignal(CLI::App& app) {
  auto o = std::make_unique<SignalOptions>();
  CLI::App* cli = app.add_subcommand("signal", "broadcast a signal to every proc (or a group's), ahead of queued data");
  cli->add_option("signal", o->signal, "its name, e.g. conclude")->required();
  cli->add_option("--data", o->data, "bytes after the name");
  cli->add_option("--group", o->group, "only this group's procs");
  return MakeSubcommand(cli, std::move(o), Signal);
}

Subcommand AddTree(CLI::App& app) {
  CLI::App* cli = app.add_subcommand("tree", "show the supervision tree: groups, procs, incarnations, CPU and memory");
  return MakeSubcommand(cli, std::make_unique<TreeOptions>(), Tree);
}

}  // namespace hostd::hostctl
