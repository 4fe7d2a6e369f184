// Reading a node's GET /metrics (Prometheus text exposition format 0.0.4) in dsm-bench: one
// scrape is every sample line as name, labels and value; two scrapes of the same node give what a
// histogram observed between them (bucket, sum and count deltas), from which the stage breakdown
// of a quorum write is computed (mean from _sum/_count, quantiles estimated from the buckets).
//
// Pure functions and value types, thread-compatible; ScrapeMetrics is thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bench/dsm_bench/http_client.h"
#include "dsm/status.h"

namespace dsm::bench {

struct MetricSample {
  std::string name;  // e.g. "dsm_send_stage_duration_seconds_bucket"
  std::vector<std::pair<std::string, std::string>> labels;  // in the order written, unescaped
  double value = 0;
};
using MetricsScrape = std::vector<MetricSample>;

// Parses the text format: comment lines and blank lines are skipped. Errors: Corruption naming
// the first line that is not `name[{labels}] value`.
Result<MetricsScrape> ParseMetrics(std::string_view text);

// GET /metrics of `endpoint`, parsed.
Result<MetricsScrape> ScrapeMetrics(const Endpoint& endpoint);

// What one histogram family observed between two scrapes, summed over every series of the family
// whose labels include all of `match` (an empty `match` takes every series, e.g. every peer).
struct HistogramDelta {
  std::vector<double> bounds;      // upper bounds in seconds, ascending, without +Inf
  std::vector<double> cumulative;  // observations <= each bound
  double count = 0;                // all observations (the +Inf bucket)
  double sum = 0;                  // seconds

  bool empty() const { return count <= 0; }
  double MeanMs() const { return count > 0 ? 1000 * sum / count : 0; }
  // The q-quantile (0..1) in ms, interpolated linearly inside the bucket that holds it (the
  // first bucket starts at 0); the largest finite bound when it falls into +Inf; 0 when empty.
  double QuantileMs(double q) const;
};

HistogramDelta HistogramBetween(const MetricsScrape& before, const MetricsScrape& after,
                                std::string_view family,
                                const std::vector<std::pair<std::string, std::string>>& match);

// The sum of two deltas of the same family with the same bounds (e.g. two peers' scrapes).
// REQUIRES: a and b have the same bounds, or one of them has none.
HistogramDelta Add(const HistogramDelta& a, const HistogramDelta& b);

}  // namespace dsm::bench
