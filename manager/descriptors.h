// Descriptor clean-up for a child between clone (or fork) and exec, where only
// async-signal-safe code may run: raw system calls, no allocation, a buffer on the
// stack. The launcher marks what a proc must not inherit close-on-exec; the janitor
// closes everything it does not need.
//
// close_range(2) does it in one call where the kernel has it (Linux 5.9; its
// CLOSE_RANGE_CLOEXEC flag since 5.11). On older kernels the descriptors listed in
// /proc/self/fd are handled one by one (/proc must be mounted then). Each function
// returns 0, or the errno of the method it tried last.
#ifndef HOSTD_MANAGER_DESCRIPTORS_H_
#define HOSTD_MANAGER_DESCRIPTORS_H_

namespace hostd::manager {

// Closes every descriptor numbered `lowest` or above.
int CloseDescriptorsFrom(int lowest);
// Marks every descriptor numbered `lowest` or above close-on-exec.
int MarkCloseOnExecFrom(int lowest);

// The /proc/self/fd methods alone, what kernels without close_range get; for tests.
int CloseListedDescriptorsFrom(int lowest);
int MarkListedCloseOnExecFrom(int lowest);

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_DESCRIPTORS_H_
