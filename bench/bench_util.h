// Shared by the benchmarks: samples with median/percentiles, the table row every
// benchmark prints (run.sh gathers them into one table), and CPU pinning.
#ifndef HOSTD_BENCH_BENCH_UTIL_H_
#define HOSTD_BENCH_BENCH_UTIL_H_

#include <dirent.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"

namespace hostd::bench {

class Samples {
 public:
  void Add(double v) { v_.push_back(v); }
  void Merge(const Samples& o) { v_.insert(v_.end(), o.v_.begin(), o.v_.end()); }
  bool empty() const { return v_.empty(); }
  size_t size() const { return v_.size(); }
  // The q-quantile (0..1) by nearest rank.
  double Quantile(double q) const {
    if (v_.empty()) return 0;
    std::vector<double> s = v_;
    std::sort(s.begin(), s.end());
    size_t i = static_cast<size_t>(q * static_cast<double>(s.size() - 1) + 0.5);
    return s[std::min(i, s.size() - 1)];
  }
  double Median() const { return Quantile(0.5); }
  double Min() const { return v_.empty() ? 0 : *std::min_element(v_.begin(), v_.end()); }
  double Max() const { return v_.empty() ? 0 : *std::max_element(v_.begin(), v_.end()); }

 private:
  std::vector<double> v_;
};

// Whether `flag` (e.g. "--quick") is among the arguments.
inline bool HasFlag(int argc, char** argv, const char* flag) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0) return true;
  }
  return false;
}

inline bool QuickMode(int argc, char** argv) { return HasFlag(argc, argv, "--quick"); }

// --filter=TEXT: only scenarios whose name contains TEXT (for profiling one).
inline std::string FilterArg(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--filter=", 9) == 0) return argv[i] + 9;
  }
  return "";
}

// "12.3k" style.
inline std::string Si(double v) {
  if (v >= 1e9) return absl::StrFormat("%.2fG", v / 1e9);
  if (v >= 1e6) return absl::StrFormat("%.2fM", v / 1e6);
  if (v >= 1e3) return absl::StrFormat("%.1fk", v / 1e3);
  return absl::StrFormat("%.1f", v);
}

// Seconds as "12.34 ms" / "56.7 us".
inline std::string Ms(double secs) { return absl::StrFormat("%.2f ms", secs * 1e3); }
inline std::string Us(double secs) { return absl::StrFormat("%.1f us", secs * 1e6); }

// "median (min..max) unit" of throughput-like samples.
inline std::string Spread(const Samples& s, const char* unit) {
  return absl::StrFormat("%s %s (%s..%s)", Si(s.Median()), unit, Si(s.Min()), Si(s.Max()));
}

// One row of the table: | scenario | baseline | hostd | ratio | goal | met |.
// `ratio` is hostd/baseline as the goal states it; goal "-" means none (met: "-").
inline void Row(const std::string& scenario, const std::string& baseline, const std::string& hostd, double ratio,
                const std::string& goal, bool met) {
  std::printf("| %s | %s | %s | %.2fx | %s | %s |\n", scenario.c_str(), baseline.c_str(), hostd.c_str(), ratio,
              goal.c_str(),
              goal == "-" ? "-"
              : met       ? "yes"
                          : "**no**");
  std::fflush(stdout);
}

// Pins every thread of this process to `cpu` (-1: all CPUs).
inline void PinProcess(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  for (long c = 0; c < n; ++c) {
    if (cpu < 0 || c == cpu) CPU_SET(c, &set);
  }
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    sched_setaffinity(static_cast<pid_t>(std::atoi(e->d_name)), sizeof(set), &set);
  }
  closedir(d);
}

}  // namespace hostd::bench

#endif  // HOSTD_BENCH_BENCH_UTIL_H_
