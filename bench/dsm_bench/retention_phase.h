// The retention phase of dsm-bench (--phases retention): what continuous trimming costs a /send.
// The same closed-loop quorum /send load (at 1 and 16 clients) runs against two kinds of fresh
// local 3-node clusters: one started with a retention limit far below what the load writes (so
// every node trims every --retention-interval-ms), and one without retention. Each kind is
// measured `repetitions` times (a fresh cluster each time, the two kinds alternating), and the
// report gives the median of each figure. The trim rate comes from the nodes' /metrics
// (dsm_retention_trimmed_messages_total, summed over the 3 nodes).
//
// Thread safety: RunRetention is called from the main thread (it spawns node processes).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/dsm_bench/progress.h"
#include "bench/dsm_bench/stats.h"
#include "dsm/status.h"

namespace dsm::bench {

struct RetentionConfig {
  std::vector<int> clients = {1, 16};
  int repetitions = 3;
  uint64_t max_messages = 1000;  // --retention-max-messages of the trimming clusters
  int interval_ms = 50;          // their --retention-interval-ms
  // Messages written (in batches) to every fresh cluster before it is measured, so a trimming
  // cluster is at its limit from the first measured request on (it trims the excess before the
  // measurement starts).
  uint64_t prefill_messages = 3000;
};

// One measured load: a cluster kind at one client count, one repetition.
struct RetentionSample {
  LatencySummary latency;      // /send round trip
  double messages_per_s = 0;   // accepted
  double trimmed_per_s = 0;    // dsm_retention_trimmed_messages_total, 3 nodes summed, per s
  size_t errors = 0;
};

// Medians over the repetitions of one cluster kind at one client count.
struct RetentionFigure {
  bool trimming = false;
  int clients = 0;
  std::vector<RetentionSample> samples;
  double p50_ms = 0;
  double p99_ms = 0;
  double p999_ms = 0;
  double messages_per_s = 0;
  double trimmed_per_s = 0;
  size_t errors = 0;  // summed over the repetitions
  void Summarize();
};

struct RetentionComparison {
  bool ran = false;
  std::string skipped;  // why not, when requested and !ran
  RetentionConfig config;
  std::vector<RetentionFigure> figures;  // for each client count: without, then with trimming
  const RetentionFigure* Find(bool trimming, int clients) const;
};

struct RetentionRunOptions {
  std::string node_binary;
  std::string root;  // each fresh cluster gets a directory below it (removed unless keep_data)
  std::vector<std::string> node_args;
  bool fsync = true;
  int quorum = 2;
  size_t payload_bytes = 100;
  double warmup_s = 1;
  double duration_s = 5;
  bool keep_data = false;
};

// Runs the comparison into *out (out->config says what to run). Errors: a cluster that does not
// start or a node that dies; what was measured so far stays in *out.
Status RunRetention(const RetentionRunOptions& options, const std::atomic<bool>& stop,
                    Progress* progress, RetentionComparison* out);

}  // namespace dsm::bench
