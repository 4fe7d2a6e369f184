// Latency statistics of dsm-bench: exact percentiles of recorded samples (nanoseconds), and the
// monotonic time base every measurement shares.
//
// Pure functions and value types, thread-compatible.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsm::bench {

// Nanoseconds on the monotonic clock since the first call in this process.
int64_t NowNs();

inline double NsToMs(int64_t ns) { return static_cast<double>(ns) / 1e6; }

struct LatencySummary {
  size_t count = 0;
  double min_ms = 0;
  double mean_ms = 0;
  double p50_ms = 0;
  double p90_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  double max_ms = 0;
};

// Sorts `samples_ns` and summarizes them (nearest-rank percentiles). All zeros when empty.
LatencySummary Summarize(std::vector<int64_t>* samples_ns);

// The median of figures (of runs): the middle one, the mean of the middle two for an even count;
// 0 when empty.
double Median(std::vector<double> values);

// The median, least and greatest of figures (of runs). All zeros when empty.
struct Spread {
  double median = 0;
  double min = 0;
  double max = 0;
};
Spread SpreadOf(std::vector<double> values);

// The value at quantile q (0..1) of sorted samples, nearest rank. REQUIRES: sorted, non-empty.
int64_t Quantile(const std::vector<int64_t>& sorted, double q);

}  // namespace dsm::bench
