#include "bench/dsm_bench/stats.h"

#include <algorithm>
#include <cmath>

namespace dsm::bench {

int64_t NowNs() {
  static const auto kStart = std::chrono::steady_clock::now();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              kStart)
      .count();
}

int64_t Quantile(const std::vector<int64_t>& sorted, double q) {
  const size_t n = sorted.size();
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(n)));
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

LatencySummary Summarize(std::vector<int64_t>* samples_ns) {
  LatencySummary s;
  if (samples_ns->empty()) return s;
  std::sort(samples_ns->begin(), samples_ns->end());
  const std::vector<int64_t>& v = *samples_ns;
  s.count = v.size();
  double sum = 0;
  for (int64_t x : v) sum += static_cast<double>(x);
  s.min_ms = NsToMs(v.front());
  s.mean_ms = sum / static_cast<double>(v.size()) / 1e6;
  s.p50_ms = NsToMs(Quantile(v, 0.50));
  s.p90_ms = NsToMs(Quantile(v, 0.90));
  s.p99_ms = NsToMs(Quantile(v, 0.99));
  s.p999_ms = NsToMs(Quantile(v, 0.999));
  s.max_ms = NsToMs(v.back());
  return s;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

Spread SpreadOf(std::vector<double> values) {
  Spread s;
  if (values.empty()) return s;
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  s.min = *lo;
  s.max = *hi;
  s.median = Median(std::move(values));
  return s;
}

}  // namespace dsm::bench
