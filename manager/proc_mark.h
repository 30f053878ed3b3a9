// ProcMark: how a manager finds every process its procs started, when neither the
// process group nor a cgroup holds them.
//
// A descendant that calls setsid() (or setpgid()) leaves its proc's process group,
// so signalling the group misses it; without cgroups nothing else contains it.
// What it keeps is its environment: every proc is launched with
//
//   HOSTD_PROC_MARK=<token>.<serial>
//
// where <token> is 32 random hex digits drawn once per manager and <serial> numbers
// that manager's launches (each incarnation its own). Children inherit the
// environment, so a scan of /proc/<pid>/environ finds the proc's whole family,
// whatever group or session it is in. The orphan reaper kills the family of an
// ended proc this way (orphan_reaper.h); the janitor kills every marked process
// when the manager's process dies (janitor.h).
//
// Bounds of the guarantee: a descendant that both leaves the process group and
// replaces its whole environment (execve with a fresh one, `env -i`) is not found;
// cgroups contain those too. A process that copies another manager's mark into its
// own environment can only get itself killed. Reading another user's environ
// needs root (or the same user), which is what hostd has over its procs.
#ifndef HOSTD_MANAGER_PROC_MARK_H_
#define HOSTD_MANAGER_PROC_MARK_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace hostd::manager {

inline constexpr char kEnvProcMark[] = "HOSTD_PROC_MARK";
// The token's length in hex digits.
inline constexpr size_t kMarkTokenLength = 32;

// A fresh token from the kernel's random source.
std::string NewMarkToken();

// The value of kEnvProcMark for launch `serial` of the manager with `token`.
std::string MarkValue(const std::string& token, uint64_t serial);

// Called for each marked process: its pid and the serial in its mark.
using MarkVisitor = void (*)(pid_t pid, uint64_t serial, void* context);

// Visits every process but the caller whose environment holds the mark of `token`
// (a NUL-terminated string of kMarkTokenLength hex digits); returns how many it
// visited. Async-signal-safe: system calls and stack buffers only, so the janitor
// can run it in a forked child. A process that ends during the scan is skipped.
int ScanMarked(const char* token, MarkVisitor visit, void* context);

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROC_MARK_H_
