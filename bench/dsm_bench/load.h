// Load generation for dsm-bench: client threads on blocking keep-alive connections (one thread
// and one connection per client), publishing to POST /send (one message or a batch per request),
// sending GET /heartbeat (the empty-request baseline), or putting one key per request into etcd
// through its v3 JSON gateway (POST /v3/kv/put, the etcd comparison).
//
//  - Closed loop: each client sends its next request as soon as the previous one is answered.
//    Requests sent during the warm-up are not measured; latency is the request's round trip.
//  - Open loop: requests are scheduled at a fixed rate from the start (request k is due at
//    start + k / rate) and taken by the first free client; latency counts from the scheduled
//    time, so a stalled server (or too few clients) shows as latency instead of being hidden
//    (coordinated omission corrected). The service time (from the actual send) is reported too.
//
// msg_ids (etcd: keys) are "<prefix>-<client>-<n>", so every request publishes new messages.
//
// Thread safety: RunLoad is called by one thread and starts and joins its own client threads.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/dsm_bench/http_client.h"
#include "bench/dsm_bench/machine.h"
#include "bench/dsm_bench/progress.h"
#include "bench/dsm_bench/stats.h"
#include "bench/dsm_bench/watch.h"

namespace dsm::bench {

// What each request of a load is.
enum class LoadKind {
  kSend,       // POST /send to a dsm node (PublishRecords kept for the replication watcher)
  kHeartbeat,  // GET /heartbeat to a dsm node: the empty request
  kEtcdPut,    // POST /v3/kv/put {"key","value"} (base64) to an etcd member; one message each
};

struct LoadConfig {
  std::vector<Endpoint> targets;       // client i talks to targets[i % size]
  std::vector<uint32_t> target_nodes;  // the node index of each target (for PublishRecord::node)
  LoadKind kind = LoadKind::kSend;
  std::string ack = "local";  // kSend: "local" | "quorum"
  int clients = 1;
  double rate = 0;  // open loop: requests per second; 0 = closed loop
  int batch = 0;    // kSend: 0 = the single-message body, n = {"messages":[n messages]}
  size_t payload_bytes = 100;
  // Each message gets its own payload of random letters and digits (as little compressible as
  // text gets) instead of the same run of 'x' (which compresses to nothing): what the disk
  // figures of the scale phase need.
  bool random_payloads = false;
  std::chrono::nanoseconds warmup{0};
  std::chrono::nanoseconds duration{0};  // measured time (0 = until max_requests)
  size_t max_requests = 0;               // stop after this many requests in all (0 = by time only)
  std::string id_prefix = "bench";
  std::chrono::milliseconds timeout{30000};
};

struct LoadResult {
  size_t requests = 0;                   // measured requests answered 200
  size_t messages = 0;                   // messages in them
  std::map<std::string, size_t> errors;  // "503", "504", "timeout", ... -> count (measured)
  int64_t window_start_ns = 0;
  int64_t window_end_ns = 0;  // the last measured answer
  double window_s = 0;
  double requests_per_s = 0;
  double messages_per_s = 0;
  LatencySummary latency;   // closed loop: round trip; open loop: from the scheduled time
  LatencySummary service;   // open loop: from the actual send (closed loop: = latency)
  double offered_rate = 0;  // open loop: the scheduled rate
  std::vector<PublishRecord> records;  // measured, accepted publishes
  CpuUse cpu;                          // over the measured window
  size_t total_errors() const;
};

// Runs one load. `pids` are the node processes whose CPU use is reported (may be empty).
// Returns early, with what was measured, when `stop` is set.
LoadResult RunLoad(const LoadConfig& config, OriginTable* origins, Progress* progress,
                   const std::atomic<bool>& stop, const std::vector<pid_t>& pids);

}  // namespace dsm::bench
