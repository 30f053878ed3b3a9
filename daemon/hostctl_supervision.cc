#include "daemon/hostctl_supervision.h"

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace hostd::daemon {
namespace {

void FillBackoff(double initial, double max, double multiplier, double jitter, v1::Backoff* out) {
  *out->mutable_initial() = Secs(initial);
  *out->mutable_max() = Secs(max);
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
    std::string usage = n.has_cpu_seconds() ? absl::StrFormat(" cpu %.2fs rss %s in %d process%s", n.cpu_seconds(),
                                                              Bytes(n.rss_bytes()), n.processes(),
                                                              n.processes() == 1 ? "" : "es")
                                            : "";
    std::string up = n.uptime_seconds() > 0 ? absl::StrFormat(" up %.0fs", n.uptime_seconds()) : "";
    printf("%s%-*s %-9s pid %-7d #%d%s%s%s\n", indent.c_str(), std::max(1, 24 - depth * 2), p.name().c_str(),
           p.restarting() ? "restarting" : StateName(p.status().state()).c_str(), p.status().pid(), p.incarnation(),
           up.c_str(), usage.c_str(), p.status().state() >= v1::PROC_STATE_STOPPED
                                          ? absl::StrCat(" ", p.status().display()).c_str()
                                          : "");
  }
  for (const v1::TreeNode& c : n.children()) PrintNode(c, depth + 1);
}

}  // namespace

void SupervisionCommands::Add(CLI::App& app, CLI::App* spawn, CLI::App* watch) {
  spawn->add_option("--restart", restart_, "when hostd starts it again: never, on-failure or always")
      ->check(CLI::IsMember({"never", "on-failure", "always"}))
      ->capture_default_str();
  spawn->add_option("--max-restarts", max_restarts_, "give up after this many restarts within --within")
      ->capture_default_str();
  spawn->add_option("--within", within_, "seconds: the restart intensity window")->capture_default_str();
  spawn->add_option("--backoff-initial", backoff_initial_, "seconds before the first restart")->capture_default_str();
  spawn->add_option("--backoff-max", backoff_max_, "seconds: the cap on the delay")->capture_default_str();
  spawn->add_option("--backoff-multiplier", backoff_multiplier_, "delay growth per restart")->capture_default_str();
  spawn->add_option("--jitter", jitter_, "each delay is cut by a random fraction up to this")->capture_default_str();
  spawn->add_option("--group", group_, "join this supervision group (last in its start order)");
  watch->add_option("--group", watch_group_, "only procs of this group (and its subgroups), and its own events");

  group_cmd_ = app.add_subcommand("group", "create or delete a supervision group");
  group_cmd_->require_subcommand(1);
  group_create_ = group_cmd_->add_subcommand("create", "create a group");
  group_create_->add_option("name", name_)->required();
  group_create_->add_option("--parent", parent_, "nest it in this group");
  group_create_->add_option("--strategy", strategy_, "one-for-one, one-for-all or rest-for-one")
      ->check(CLI::IsMember({"one-for-one", "one-for-all", "rest-for-one"}))
      ->capture_default_str();
  group_create_->add_option("--max-restarts", group_max_restarts_, "give up after this many restarts within --within")
      ->capture_default_str();
  group_create_->add_option("--within", group_within_, "seconds")->capture_default_str();
  group_create_->add_option("--backoff-initial", group_backoff_initial_, "seconds")->capture_default_str();
  group_create_->add_option("--backoff-max", group_backoff_max_, "seconds")->capture_default_str();
  group_delete_ = group_cmd_->add_subcommand("delete", "delete a group that has no members");
  group_delete_->add_option("name", name_)->required();

  restart_cmd_ = app.add_subcommand("restart", "restart a running proc as its next incarnation (same name and address)");
  restart_cmd_->add_option("name", name_)->required();
  restart_cmd_->add_flag("--handoff", handoff_, "hand the proc's state to the new incarnation (it keeps running if it cannot)");
  restart_cmd_->add_option("--grace", grace_, "seconds to stop the running incarnation")->capture_default_str();
  restart_cmd_->add_option("--handoff-timeout", handoff_timeout_, "seconds to wait for the state")->capture_default_str();

  signal_cmd_ = app.add_subcommand("signal", "broadcast a signal to every proc (or a group's), ahead of queued data");
  signal_cmd_->add_option("signal", signal_, "its name, e.g. conclude")->required();
  signal_cmd_->add_option("--data", data_, "bytes after the name");
  signal_cmd_->add_option("--group", signal_group_, "only this group's procs");

  tree_cmd_ = app.add_subcommand("tree", "show the supervision tree: groups, procs, incarnations, CPU and memory");
}

void SupervisionCommands::FillSpawn(v1::SpawnProcRequest& req) const {
  req.set_group(group_);
  v1::RestartPolicy* r = req.mutable_restart();
  r->set_mode(restart_ == "always"       ? v1::RESTART_MODE_ALWAYS
              : restart_ == "on-failure" ? v1::RESTART_MODE_ON_FAILURE
                                         : v1::RESTART_MODE_NEVER);
  r->set_max_restarts(max_restarts_);
  *r->mutable_within() = Secs(within_);
  FillBackoff(backoff_initial_, backoff_max_, backoff_multiplier_, jitter_, r->mutable_backoff());
}

std::optional<int> SupervisionCommands::Run(Client& c, const Globals& g) {
  grpc::ClientContext ctx;
  if (group_create_->parsed()) {
    v1::CreateGroupRequest req;
    req.set_name(name_);
    req.set_parent(parent_);
    req.set_strategy(strategy_ == "one-for-all"    ? v1::STRATEGY_ONE_FOR_ALL
                     : strategy_ == "rest-for-one" ? v1::STRATEGY_REST_FOR_ONE
                                                   : v1::STRATEGY_ONE_FOR_ONE);
    req.set_max_restarts(group_max_restarts_);
    *req.mutable_within() = Secs(group_within_);
    FillBackoff(group_backoff_initial_, group_backoff_max_, 2, 0.2, req.mutable_backoff());
    v1::Group resp;
    c.Prepare(ctx);
    grpc::Status s = c.stub().CreateGroup(&ctx, req, &resp);
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      printf("group %s created (%s)\n", resp.name().c_str(), StrategyText(resp.strategy()).c_str());
    }
    return 0;
  }
  if (group_delete_->parsed()) {
    v1::DeleteGroupRequest req;
    req.set_name(name_);
    v1::DeleteGroupResponse resp;
    c.Prepare(ctx);
    grpc::Status s = c.stub().DeleteGroup(&ctx, req, &resp);
    if (!s.ok()) return c.Fail(s);
    if (!g.json) printf("group %s deleted\n", name_.c_str());
    return 0;
  }
  if (restart_cmd_->parsed()) {
    v1::RestartProcRequest req;
    req.set_name(name_);
    req.set_handoff(handoff_);
    *req.mutable_grace() = Secs(grace_);
    *req.mutable_handoff_timeout() = Secs(handoff_timeout_);
    v1::Proc resp;
    c.Prepare(ctx, absl::Seconds(grace_ + handoff_timeout_ + g.timeout_s + 30));
    grpc::Status s = c.stub().RestartProc(&ctx, req, &resp);
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      printf("%s incarnation %d %s pid %d\n", resp.proc_id().c_str(), resp.incarnation(),
             resp.status().display().c_str(), resp.status().pid());
    }
    return 0;
  }
  if (signal_cmd_->parsed()) {
    v1::BroadcastSignalRequest req;
    req.set_signal(signal_);
    req.set_data(data_);
    req.set_group(signal_group_);
    v1::BroadcastSignalResponse resp;
    c.Prepare(ctx);
    grpc::Status s = c.stub().BroadcastSignal(&ctx, req, &resp);
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      printf("signal %s: %d procs, %d delivered, %d queued, %d failed\n", signal_.c_str(), resp.targeted(),
             resp.delivered(), resp.queued(), resp.failed());
    }
    return resp.failed() == 0 ? 0 : 9;
  }
  if (tree_cmd_->parsed()) {
    v1::Tree resp;
    c.Prepare(ctx);
    grpc::Status s = c.stub().GetTree(&ctx, v1::GetTreeRequest(), &resp);
    if (!s.ok()) return c.Fail(s);
    if (g.json) {
      c.PrintJson(resp);
    } else {
      for (const v1::TreeNode& n : resp.roots()) PrintNode(n, 0);
    }
    return 0;
  }
  return std::nullopt;
}

void PrintEvent(const v1::ProcEvent& e) {
  std::string kind = absl::AsciiStrToLower(v1::ProcEvent::Kind_Name(e.kind()).substr(5));  // KIND_
  std::string extra;
  switch (e.kind()) {
    case v1::ProcEvent::KIND_RESTARTING:
      extra = absl::StrFormat("attempt %d in %dms%s: %s", e.attempt(),
                              e.delay().seconds() * 1000 + e.delay().nanos() / 1000000,
                              e.start_failed() ? " (start failed)" : "", e.detail());
      break;
    case v1::ProcEvent::KIND_RESTARTED: extra = absl::StrCat("incarnation ", e.incarnation()); break;
    case v1::ProcEvent::KIND_GAVE_UP:
    case v1::ProcEvent::KIND_RESTART_FAILED:
    case v1::ProcEvent::KIND_SPAWN_FAILED: extra = e.detail(); break;
    default: break;
  }
  std::string who = e.is_group() ? absl::StrCat("group ", e.name()) : e.name();
  printf("%-6llu %-15s %-24s %s%s%s\n", static_cast<unsigned long long>(e.seq()), kind.c_str(), who.c_str(),
         e.is_group() ? "" : e.status().display().c_str(), extra.empty() ? "" : "  ", extra.c_str());
}

}  // namespace hostd::daemon
