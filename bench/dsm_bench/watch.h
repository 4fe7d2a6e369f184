// Replication watching for dsm-bench: which origin streams exist (OriginTable), what each
// accepted publish was (PublishRecord), and ReplicationWatcher, which polls GET /heartbeat on the
// watched nodes and keeps, per node and origin stream, the timeline of its high water - so the
// moment a node first held a given message can be looked up afterwards.
//
// How end-to-end replication latency is measured: a message accepted by node A at origin_seq s
// of A's stream is present on node B from the first /heartbeat answer of B whose high_waters
// shows that stream at >= s (a node holds every stream as a gap-free prefix, so the high water
// says exactly which messages it holds). The observation time is when that answer arrived, an
// upper bound: the error is at most one poll interval plus one heartbeat round trip (reported as
// the resolution). On A itself the message is present when A's 200 arrived. End-to-end latency
// = (the latest of those times over all nodes) - (the time the publish was sent).
//
// Thread safety: OriginTable and ReplicationWatcher are thread-safe; the watcher runs one polling
// thread per watched node between Start() and Stop().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/dsm_bench/http_client.h"
#include "bench/dsm_bench/stats.h"
#include "common/thread_annotations.h"

namespace dsm::bench {

// Origin stream ids ("node1@4aa8...") numbered densely from 0.
class OriginTable {
 public:
  uint32_t Id(std::string_view origin) LOCKS_EXCLUDED(mu_);
  std::string Name(uint32_t id) const LOCKS_EXCLUDED(mu_);

 private:
  mutable Mutex mu_;
  std::map<std::string, uint32_t, std::less<>> ids_ GUARDED_BY(mu_);
  std::vector<std::string> names_ GUARDED_BY(mu_);
};

// One accepted publish request (one message, or a batch whose messages are consecutive positions
// of one stream ending at origin_seq).
struct PublishRecord {
  int64_t send_ns = 0;  // when it was sent (open loop: when it was meant to be sent)
  int64_t ack_ns = 0;   // when its 200 arrived
  uint64_t origin_seq = 0;
  uint32_t origin = 0;  // OriginTable id
  uint32_t node = 0;    // index of the node that accepted it
  uint32_t messages = 1;
};

class ReplicationWatcher {
 public:
  // Polls the nodes whose `watch` flag is set, every `interval` (after each answer).
  ReplicationWatcher(std::vector<Endpoint> nodes, std::vector<bool> watch, OriginTable* origins,
                     std::chrono::microseconds interval);
  ~ReplicationWatcher();  // Stop()
  ReplicationWatcher(const ReplicationWatcher&) = delete;
  ReplicationWatcher& operator=(const ReplicationWatcher&) = delete;

  void Start();
  void Stop();

  // Waits until every watched node holds, for each origin in `need`, at least that origin_seq;
  // false when `deadline_ns` (NowNs() scale) passed or `stop` was set first.
  bool WaitHeld(const std::map<uint32_t, uint64_t>& need, int64_t deadline_ns,
                const std::atomic<bool>& stop) const;
  // When node `node` was first seen holding `origin_seq` of `origin` (NowNs() scale), -1 if never
  // (or the node is not watched).
  int64_t FirstSeen(size_t node, uint32_t origin, uint64_t origin_seq) const LOCKS_EXCLUDED(mu_);
  // The current high water of `origin` on `node` (0 when unknown or not watched).
  uint64_t HighWater(size_t node, uint32_t origin) const LOCKS_EXCLUDED(mu_);

  // When node `node` first answered a poll (NowNs() scale), -1 if never.
  int64_t FirstAnswer(size_t node) const LOCKS_EXCLUDED(mu_);
  bool watched(size_t node) const { return watch_[node]; }
  size_t nodes() const { return nodes_.size(); }
  // Mean duration of one poll (request + answer), ms.
  double MeanPollMs() const;
  uint64_t polls() const { return polls_.load(); }
  std::chrono::microseconds interval() const { return interval_; }

 private:
  struct Timeline {
    std::vector<int64_t> t;    // observation times, increasing
    std::vector<uint64_t> hw;  // high water at t[i], increasing
  };
  void Poll(size_t node) LOCKS_EXCLUDED(mu_);

  const std::vector<Endpoint> nodes_;
  const std::vector<bool> watch_;
  OriginTable* const origins_;
  const std::chrono::microseconds interval_;

  mutable Mutex mu_;
  // Per node: origin id -> timeline.
  std::vector<std::map<uint32_t, Timeline>> timelines_ GUARDED_BY(mu_);
  std::vector<int64_t> first_answer_ GUARDED_BY(mu_);  // -1 = none yet
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> polls_{0};
  std::atomic<int64_t> poll_ns_{0};
  std::vector<std::thread> threads_;
};

// End-to-end replication of the publishes of one run.
struct ReplicationResult {
  size_t requests = 0;
  size_t messages = 0;
  size_t missing = 0;                 // requests not seen on every node by the deadline
  LatencySummary e2e;                 // per request: send -> present on every node
  double fully_replicated_per_s = 0;  // messages / (last present-on-all - window start)
  double resolution_ms = 0;           // poll interval + mean poll round trip
};

// Evaluates `records` against the watcher's timelines. `window_start_ns` starts the throughput
// window.
ReplicationResult EvaluateReplication(const std::vector<PublishRecord>& records,
                                      const ReplicationWatcher& watcher, int64_t window_start_ns);

// The highest origin_seq per origin among `records`.
std::map<uint32_t, uint64_t> HighestPerOrigin(const std::vector<PublishRecord>& records);

}  // namespace dsm::bench
