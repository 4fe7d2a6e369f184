// The consume phase of dsm-bench (--phases consume): consume-and-acknowledge throughput of a
// durable consumer (docs/api.md, "Durable consumers"). For each client count, several runs: a
// fresh recipient is preloaded with `messages` messages (batched /send), a consumer of it is
// created, and `clients` connections each fetch up to `fetch_max` messages and acknowledge them
// in one request, in a closed loop, until every message is acknowledged (acks are answered once
// durable). The run's figure is messages acknowledged per second; the ack round trips are pooled
// over the runs.
//
// Thread safety: RunConsume is called from one thread; it starts and joins its client threads.
#pragma once

#include <atomic>
#include <cstddef>
#include <string>
#include <vector>

#include "bench/dsm_bench/http_client.h"
#include "bench/dsm_bench/stats.h"

namespace dsm::bench {

struct ConsumeConfig {
  std::vector<int> clients = {1, 16};
  int runs = 3;
  size_t messages = 20000;  // per run
  int fetch_max = 10;       // messages per fetch (and per ack request)
  size_t payload_bytes = 100;
};

struct ConsumeRun {
  int clients = 0;
  std::vector<double> acked_per_s;  // one per run
  double median_per_s = 0;
  double min_per_s = 0;
  double max_per_s = 0;
  LatencySummary fetch_latency;  // GET /consumers/{name}/messages round trips, pooled
  LatencySummary ack_latency;    // POST /consumers/{name}/ack round trips (durable), pooled
  size_t redelivered = 0;        // deliveries after the first (should be 0)
  size_t errors = 0;             // failed requests
};

struct ConsumeReport {
  bool ran = false;
  std::string skipped;
  ConsumeConfig config;
  std::vector<ConsumeRun> runs;
};

// Runs the phase against `node`. Returns an error only when the node cannot be used at all
// (durable consumers not available); failed requests are counted.
Status RunConsume(const Endpoint& node, const ConsumeConfig& config, const std::string& prefix,
                  const std::atomic<bool>& stop, ConsumeReport* report);

}  // namespace dsm::bench
