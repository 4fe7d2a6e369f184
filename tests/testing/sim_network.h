// SimNetwork: an in-memory network between simulated nodes, driven by a ManualClock and a seeded
// random generator, for deterministic simulation tests. Each node gets a Transport whose requests
// become timed events: delivered after a random latency, dropped at random or by a cut link (the
// caller then times out), refused when the target is down. A request can be applied by the
// target while its reply is lost. Events run in (time, insertion) order, so a seed replays
// exactly.
//
// Thread safety: none; one thread drives the simulation (transport calls included).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <vector>

#include "dsm/transport.h"
#include "tests/testing/manual_clock.h"

namespace dsm {

struct SimNetworkOptions {
  Millis min_latency{1};
  Millis max_latency{20};
  double drop_probability = 0.0;  // per request and per reply
  Millis request_timeout{300};
};

class SimNetwork {
 public:
  // How a node serves peer requests (its Node's Heartbeat/Replicate/Sync).
  struct Handlers {
    std::function<Result<HeartbeatReply>()> heartbeat;
    std::function<Result<ReplicateReply>(std::vector<Message>)> replicate;
    std::function<Result<SyncReply>(uint64_t since, size_t limit,
                                    const std::map<std::string, uint64_t>& have)>
        sync;
    std::function<Result<SyncReply>(const std::string& origin, uint64_t since, size_t limit)>
        sync_stream;
  };

  SimNetwork(ManualClock* clock, std::mt19937_64* rng, SimNetworkOptions options);
  ~SimNetwork();

  // Adds a node (down until SetHandlers). Returns its index.
  size_t AddNode();
  // The node is up and serves requests with `h`.
  void SetHandlers(size_t node, Handlers h);
  // The node is down: requests to it are refused, and replies to its requests that are still in
  // flight are never delivered (its process is gone).
  void Crash(size_t node);
  bool IsUp(size_t node) const;

  // A transport for `node` whose peer i is node peer_nodes[i].
  std::unique_ptr<Transport> MakeTransport(size_t node, std::vector<size_t> peer_nodes);

  // Cuts or restores the direction from -> to.
  void SetLink(size_t from, size_t to, bool up);
  void HealAll();
  void set_drop_probability(double p) { options_.drop_probability = p; }

  // Earliest pending event time, or MonoTime::max() when idle.
  MonoTime NextEventTime() const;
  // Runs every event due at or before clock->Now(). Returns how many ran.
  int RunDue();

 private:
  class SimTransport;
  struct Event {
    MonoTime at;
    uint64_t order;
    std::function<void()> run;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : order > o.order; }
  };

  void Schedule(Millis delay, std::function<void()> run);
  void ScheduleAt(MonoTime at, std::function<void()> run);
  Millis Latency();
  bool Dropped();
  bool LinkUp(size_t from, size_t to) const;

  // Sends a request from `from` to `to`: `serve` runs at the target and produces the reply,
  // `done` gets it (or an error) back at the source.
  template <typename Reply>
  void Call(size_t from, size_t to, std::function<Result<Reply>(const Handlers&)> serve,
            std::function<void(Result<Reply>)> done);

  ManualClock* clock_;
  std::mt19937_64* rng_;
  SimNetworkOptions options_;
  std::vector<Handlers> handlers_;
  std::vector<bool> up_;
  std::vector<uint64_t> epoch_;  // bumped at every crash
  std::set<std::pair<size_t, size_t>> cut_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  uint64_t next_order_ = 0;
};

}  // namespace dsm
