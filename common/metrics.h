// Metrics primitives and the Prometheus text exposition format (version 0.0.4).
//
// Histogram: fixed bucket bounds, lock-free observation (atomics), readable at any time.
// MetricsWriter: builds the text of one scrape; families are written whole (HELP, TYPE, then
// their samples), as Prometheus requires.
// Thread safety: Histogram is thread-safe; MetricsWriter is thread-compatible (one per scrape).
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsm {

class Histogram {
 public:
  // 50 µs .. 10 s, finer between 0.1 and 2 ms: suits fsync, HTTP and quorum latencies.
  static std::vector<double> LatencyBuckets();

  explicit Histogram(std::vector<double> bounds = LatencyBuckets());
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;       // upper bounds, ascending (+Inf implied)
    std::vector<uint64_t> cumulative;  // observations <= each bound
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot Read() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1 (the last is +Inf)
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

class MetricsWriter {
 public:
  // Starts a family. `type`: "counter", "gauge" or "histogram". `name` follows Prometheus
  // conventions (dsm_..._total for counters, base units such as _seconds).
  void Family(std::string_view name, std::string_view type, std::string_view help);
  // One sample of the current family (or of `name` with a suffix such as _bucket).
  void Sample(std::string_view name, Labels labels, double value);
  void Sample(std::string_view name, double value) { Sample(name, {}, value); }
  // The _bucket, _sum and _count samples of a histogram family.
  void HistogramSamples(std::string_view name, Labels labels, const Histogram::Snapshot& h);

  const std::string& text() const { return text_; }

 private:
  void AppendLabels(Labels labels, std::string_view extra_key = {},
                    std::string_view extra_value = {});
  std::string text_;
};

}  // namespace dsm
