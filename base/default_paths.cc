#include "base/default_paths.h"

#include <unistd.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace hostd::base {
namespace {

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v == nullptr ? "" : v;
}

}  // namespace

std::string DefaultRuntimeDir() {
  if (std::string d = Env("HOSTD_RUNTIME_DIR"); !d.empty()) return d;
  if (std::string d = Env("XDG_RUNTIME_DIR"); !d.empty()) return d + "/hostd";
  if (geteuid() == 0) return "/run/hostd";
  return absl::StrCat("/tmp/hostd-", geteuid());
}

std::string DefaultStateDir() {
  if (std::string d = Env("HOSTD_STATE_DIR"); !d.empty()) return d;
  if (std::string d = Env("XDG_STATE_HOME"); !d.empty()) return d + "/hostd";
  if (geteuid() == 0) return "/var/lib/hostd";
  if (std::string h = Env("HOME"); !h.empty()) return h + "/.local/state/hostd";
  return absl::StrCat("/tmp/hostd-", geteuid(), "/state");
}

std::string DefaultGrpcAddr() { return absl::StrCat("unix:", DefaultRuntimeDir(), "/hostd.sock"); }

}  // namespace hostd::base
