// Builds against an installed hostd and embeds a Host with in-process procs, as a
// user's own test would: spawn an echo proc, send it a message, get the reply.
#include <cstdio>

#include "absl/synchronization/notification.h"
#include "daemon/host.h"
#include "manager/local_proc_manager.h"

int main() {
  using namespace hostd;
  manager::LocalProcManager mgr;
  auto host = daemon::Host::Start(mgr, mgr, {});
  if (!host.ok()) return 1;
  manager::SpawnSpec spec;
  spec.local_setup = [](proc::ProcRuntime& rt) {
    return rt.Bind("echo", [&rt](channel::Message m) { (void)rt.Reply(m, "echo.reply", m.payload()); });
  };
  if (!(*host)->Spawn("echo", spec).ok()) return 1;
  absl::Notification done;
  absl::StatusOr<daemon::Host::Reply> reply;
  (*host)->SendToProc("echo", "echo", "hi", absl::Seconds(30), absl::Seconds(30), [&](auto r) {
    reply = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  (*host)->TerminateChildren(absl::Seconds(5), 4, "done");
  if (!reply.ok() || reply->payload != "hi") return 1;
  std::printf("installed hostd: an embedded host echoed \"%s\" (frontend %s)\n", reply->payload.c_str(),
              (*host)->frontend().ToString().c_str());
  return 0;
}
