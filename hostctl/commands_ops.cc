#include "hostctl/commands_ops.h"

#include <cstdio>
#include <memory>

#include "hostctl/output.h"

namespace hostd::hostctl {
namespace {

struct DrainOptions {
  bool off = false;
};

int Drain(Client& c, const DrainOptions& o) {
  v1::DrainRequest req;
  req.set_undrain(o.off);
  v1::DrainResponse resp;
  grpc::ClientContext ctx;
  c.Prepare(ctx);
  grpc::Status s = c.stub().Drain(&ctx, req, &resp);
  if (!s.ok()) return c.Fail(s);
  if (c.options().json) {
    PrintJson(resp);
  } else if (resp.draining()) {
    printf("draining: new spawns are refused; %d procs keep running (`hostctl drain --off` ends it)\n",
           resp.live_procs());
  } else {
    printf("not draining: spawns are taken\n");
  }
  return 0;
}

}  // namespace

Subcommand AddDrain(CLI::App& app) {
  auto o = std::make_unique<DrainOptions>();
  CLI::App* cli = app.add_subcommand(
      "drain", "refuse new spawns while the procs already running keep running; readiness turns not-ready");
  cli->add_flag("--off", o->off, "end the drain: take spawns again");
  return MakeSubcommand(cli, std::move(o), Drain);
}

}  // namespace hostd::hostctl
