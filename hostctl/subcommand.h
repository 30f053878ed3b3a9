// Subcommand: one hostctl subcommand, as CLI11 parses it and as it runs.
//
// Each Add* function (commands_*.h) registers one subcommand and its options on
// the parent app, binding the options to storage the returned Subcommand owns;
// main() runs the one CLI11 parsed. `run` returns hostctl's exit code (client.h).
#ifndef HOSTD_HOSTCTL_SUBCOMMAND_H_
#define HOSTD_HOSTCTL_SUBCOMMAND_H_

#include <memory>
#include <utility>

#include "absl/functional/any_invocable.h"
#include "CLI/CLI.hpp"
#include "hostctl/client.h"

namespace hostd::hostctl {

struct Subcommand {
  CLI::App* cli;  // owned by its parent CLI::App
  absl::AnyInvocable<int(Client&)> run;
};

// A Subcommand that runs `run` with `options`, which cli's options write into.
template <typename Options>
Subcommand MakeSubcommand(CLI::App* cli, std::unique_ptr<Options> options, int (*run)(Client&, const Options&)) {
  return {cli, [options = std::move(options), run](Client& c) { return run(c, *options); }};
}

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_SUBCOMMAND_H_
