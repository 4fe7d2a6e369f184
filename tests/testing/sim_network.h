// SimNetwork: an in-memory network between simulated nodes, and the event queue of a simulation,
// driven by a ManualClock and a seeded random generator. A failing seed replays exactly: events
// run in (time, insertion) order and every random choice comes from the one generator.
//
// What travels is bytes, as over HTTP: each node's Transport encodes its requests with the
// project's JSON codec (src/http/json_codec.h) and decodes the answers with it; the serving side
// is a Server function from (route, request body) to (HTTP status, body) (tests/sim serves them
// with a real Node). Faults, per request:
//  - a cut link or a random drop loses the request or its answer: the caller times out;
//  - a late request is served after the caller's timeout (the work is done, the caller sees
//    Timeout);
//  - a duplicated request is delivered and served twice (the caller still gets one answer: the
//    transport contract calls `done` exactly once);
//  - a request to a node that is down is refused (Unavailable);
//  - a paused node (Pause) runs none of its events until the pause ends: requests to it, answers
//    to it, its timeouts and the events scheduled for it (Schedule with its index) wait;
//  - a crashed node (Crash) never receives the answers to the requests its process sent.
// Every request has the caller's timeout (options.request_timeout) from the moment it is made.
//
// Thread safety: none; one thread drives the simulation (transport calls included).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dsm/transport.h"
#include "tests/testing/manual_clock.h"

namespace dsm {

struct SimNetworkOptions {
  Millis min_latency{1};
  Millis max_latency{20};
  double drop_probability = 0.0;       // per request and per answer
  double duplicate_probability = 0.0;  // per request: delivered twice
  double late_probability = 0.0;       // per request: served after the caller's timeout
  Millis request_timeout{300};
  size_t max_payload_bytes = 1 << 20;  // payload limit when decoding /sync answers
};

// What happened on the network so far (for the run summaries).
struct SimNetworkStats {
  uint64_t requests = 0;
  uint64_t dropped = 0;     // requests or answers lost (drops and cut links)
  uint64_t duplicated = 0;  // requests delivered twice
  uint64_t late = 0;        // requests served after the caller's timeout
  uint64_t refused = 0;     // requests to a node that was down
  uint64_t timeouts = 0;    // calls answered with Timeout
  uint64_t bytes = 0;       // request and answer bodies
};

class SimNetwork {
 public:
  static constexpr size_t kNoNode = SIZE_MAX;

  struct HttpReply {
    HttpReply() = default;
    HttpReply(long s, std::string b) : status(s), body(std::move(b)) {}
    long status = 200;
    std::string body;
    // Called with the caller's index when the answer reaches the caller (not when it is lost,
    // late or superseded by a duplicate): what the caller's process has heard.
    std::function<void(size_t caller)> on_delivered;
  };
  // How a node serves peer requests. `route` is "GET /heartbeat", "POST /heartbeat" (with the
  // caller's membership), "POST /replicate" or
  // "POST /sync"; `body` the request body (empty for a GET).
  using Server = std::function<HttpReply(const std::string& route, const std::string& body)>;

  SimNetwork(ManualClock* clock, std::mt19937_64* rng, SimNetworkOptions options);
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  // Adds a node (down until SetServer). Returns its index.
  size_t AddNode();
  // The node is up and serves requests with `server`.
  void SetServer(size_t node, Server server);
  // The node is down: requests to it are refused, answers to the requests of its process are
  // never delivered, and a pause ends.
  void Crash(size_t node);
  bool IsUp(size_t node) const;
  // Names `node` by `url`, for the peers a transport adds later (Transport::AddPeer).
  void SetNodeUrl(size_t node, std::string url);
  size_t NodeOfUrl(const std::string& url) const;  // kNoNode when none has that URL

  // A transport for `node` whose peer i is node peer_nodes[i].
  std::unique_ptr<Transport> MakeTransport(size_t node, std::vector<size_t> peer_nodes);
  // Serves a request at `node` now, as a client outside the cluster would send it (a 503 when the
  // node is down).
  HttpReply ServeNow(size_t node, const std::string& route, const std::string& body);

  // Cuts or restores the direction from -> to.
  void SetLink(size_t from, size_t to, bool up);
  bool LinkUp(size_t from, size_t to) const;
  void HealAll();
  SimNetworkOptions& options() { return options_; }

  // Holds back every event of `node` until `until` (a stopped process: GC pause, SIGSTOP, VM
  // freeze).
  void Pause(size_t node, MonoTime until);
  bool Paused(size_t node) const;
  MonoTime PausedUntil(size_t node) const;

  // Runs `run` after `delay`. With a node index, the event waits while that node is paused.
  void Schedule(Millis delay, std::function<void()> run, size_t node = kNoNode);

  // Earliest pending event time, or MonoTime::max() when idle.
  MonoTime NextEventTime() const;
  // Runs every event due at or before clock->Now(). Returns how many ran.
  int RunDue();
  // Runs the first event due at or before clock->Now(), if any (events of paused nodes are put
  // back to the end of their pause). Returns whether one ran.
  bool RunOne();

  const SimNetworkStats& stats() const { return stats_; }

 private:
  class SimTransport;
  struct Event {
    MonoTime at;
    uint64_t order;
    size_t node;
    std::function<void()> run;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : order > o.order; }
  };

  void ScheduleAt(MonoTime at, std::function<void()> run, size_t node);
  Millis Latency();
  bool Chance(double p);

  // Sends `body` to `route` of node `to` on behalf of node `from`; `decode` turns the answer's
  // bytes into the Reply that `done` gets (or the error).
  template <typename Reply>
  void Call(size_t from, size_t to, std::string route, std::string body,
            Result<Reply> (*decode)(long, std::string_view, size_t),
            std::function<void(Result<Reply>)> done);

  ManualClock* clock_;
  std::mt19937_64* rng_;
  SimNetworkOptions options_;
  std::vector<Server> servers_;
  std::vector<bool> up_;
  std::map<std::string, size_t> urls_;
  std::vector<uint64_t> epoch_;  // bumped at every crash
  std::vector<MonoTime> paused_until_;
  std::set<std::pair<size_t, size_t>> cut_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  uint64_t next_order_ = 0;
  SimNetworkStats stats_;
};

}  // namespace dsm
