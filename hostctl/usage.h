// How hostctl's command line fails: every usage error exits kExitUsage (2) with a
// message on stderr, whatever CLI11 would have returned; an unknown subcommand
// is named, with the nearest known one suggested. Also the bash completion
// script, generated from the same CLI::App (`hostctl completion`), so that it
// cannot drift from the options.
#ifndef HOSTD_HOSTCTL_USAGE_H_
#define HOSTD_HOSTCTL_USAGE_H_

#include <string>
#include <vector>

#include "CLI/CLI.hpp"

namespace hostd::hostctl {

// Parses argv into `app`. Returns -1 to go on, else the exit code: 0 after
// --help or --version (printed), kExitUsage after a usage error (explained).
int ParseCommandLine(CLI::App& app, int argc, char** argv);

// The known name nearest to `word` by edit distance ("" if none is close).
std::string Nearest(const std::string& word, const std::vector<std::string>& known);

// A bash completion script for `app`'s subcommands and their options.
std::string BashCompletion(const CLI::App& app);

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_USAGE_H_
