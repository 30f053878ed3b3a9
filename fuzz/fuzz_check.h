// FUZZ_CHECK: an invariant the fuzz targets assert. A violation prints the condition
// and aborts, which libFuzzer reports as a crash and saves the input.
#ifndef HOSTD_FUZZ_FUZZ_CHECK_H_
#define HOSTD_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

#endif  // HOSTD_FUZZ_FUZZ_CHECK_H_
