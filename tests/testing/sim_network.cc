#include "tests/testing/sim_network.h"

#include <algorithm>
#include <utility>

#include "src/http/json_codec.h"

namespace dsm {
namespace {

constexpr char kHeartbeatRoute[] = "GET /heartbeat";
constexpr char kReplicateRoute[] = "POST /replicate";
constexpr char kSyncRoute[] = "POST /sync";

// The decoders of the peer client, in one shape.
Result<HeartbeatReply> DecodeHeartbeat(long status, std::string_view body, size_t) {
  return json::DecodeHeartbeatReply(status, body);
}
Result<ReplicateReply> DecodeReplicate(long status, std::string_view body, size_t) {
  return json::DecodeReplicateReply(status, body);
}
Result<SyncReply> DecodeSync(long status, std::string_view body, size_t max_payload_bytes) {
  return json::DecodeSyncReply(status, body, max_payload_bytes);
}

// An error answer. Out of line: inlined, GCC 12 takes the empty payload of the Result for an
// uninitialized one (-Wmaybe-uninitialized).
template <typename Reply>
[[gnu::noinline]] Result<Reply> ErrorAnswer(Status s) {
  return Result<Reply>(std::move(s));
}

}  // namespace

class SimNetwork::SimTransport final : public Transport {
 public:
  SimTransport(SimNetwork* net, size_t node, std::vector<size_t> peers)
      : net_(net), node_(node), peers_(std::move(peers)) {}

  void Heartbeat(size_t peer, std::function<void(Result<HeartbeatReply>)> done) override {
    net_->Call<HeartbeatReply>(node_, peers_[peer], kHeartbeatRoute, "", &DecodeHeartbeat,
                               std::move(done));
  }
  void Replicate(size_t peer, std::vector<Message> msgs, PushSkip skip,
                 std::function<void(Result<ReplicateReply>)> done) override {
    net_->Call<ReplicateReply>(node_, peers_[peer], kReplicateRoute,
                               json::EncodeReplicateRequest(msgs, skip), &DecodeReplicate,
                               std::move(done));
  }
  void Sync(size_t peer, uint64_t since, size_t limit, std::map<std::string, uint64_t> have,
            std::function<void(Result<SyncReply>)> done) override {
    net_->Call<SyncReply>(node_, peers_[peer], kSyncRoute,
                          json::EncodeSyncRequest(since, limit, have), &DecodeSync,
                          std::move(done));
  }
  void SyncStream(size_t peer, std::string origin, uint64_t since, size_t limit,
                  std::function<void(Result<SyncReply>)> done) override {
    net_->Call<SyncReply>(node_, peers_[peer], kSyncRoute,
                          json::EncodeSyncStreamRequest(origin, since, limit), &DecodeSync,
                          std::move(done));
  }

 private:
  SimNetwork* net_;
  size_t node_;
  std::vector<size_t> peers_;
};

SimNetwork::SimNetwork(ManualClock* clock, std::mt19937_64* rng, SimNetworkOptions options)
    : clock_(clock), rng_(rng), options_(options) {}

SimNetwork::~SimNetwork() = default;

size_t SimNetwork::AddNode() {
  servers_.emplace_back();
  up_.push_back(false);
  epoch_.push_back(0);
  paused_until_.push_back(MonoTime::min());
  return servers_.size() - 1;
}

void SimNetwork::SetServer(size_t node, Server server) {
  servers_[node] = std::move(server);
  up_[node] = true;
}

void SimNetwork::Crash(size_t node) {
  servers_[node] = Server();
  up_[node] = false;
  ++epoch_[node];
  paused_until_[node] = MonoTime::min();
}

bool SimNetwork::IsUp(size_t node) const { return up_[node]; }

std::unique_ptr<Transport> SimNetwork::MakeTransport(size_t node, std::vector<size_t> peer_nodes) {
  return std::make_unique<SimTransport>(this, node, std::move(peer_nodes));
}

SimNetwork::HttpReply SimNetwork::ServeNow(size_t node, const std::string& route,
                                           const std::string& body) {
  if (!up_[node]) return HttpReply{503, json::ErrorBody("connection refused")};
  return servers_[node](route, body);
}

void SimNetwork::SetLink(size_t from, size_t to, bool up) {
  if (up) {
    cut_.erase({from, to});
  } else {
    cut_.insert({from, to});
  }
}

bool SimNetwork::LinkUp(size_t from, size_t to) const { return !cut_.count({from, to}); }

void SimNetwork::HealAll() { cut_.clear(); }

void SimNetwork::Pause(size_t node, MonoTime until) {
  paused_until_[node] = std::max(paused_until_[node], until);
}

bool SimNetwork::Paused(size_t node) const { return paused_until_[node] > clock_->Now(); }

MonoTime SimNetwork::PausedUntil(size_t node) const { return paused_until_[node]; }

MonoTime SimNetwork::NextEventTime() const {
  return events_.empty() ? MonoTime::max() : events_.top().at;
}

int SimNetwork::RunDue() {
  int n = 0;
  while (RunOne()) ++n;
  return n;
}

bool SimNetwork::RunOne() {
  while (!events_.empty() && events_.top().at <= clock_->Now()) {
    // Copy out before running: the callback may schedule new events.
    Event e = events_.top();
    events_.pop();
    if (e.node != kNoNode && paused_until_[e.node] > clock_->Now()) {
      // Its process is stopped: the event waits for the end of the pause.
      ScheduleAt(paused_until_[e.node], std::move(e.run), e.node);
      continue;
    }
    e.run();
    return true;
  }
  return false;
}

void SimNetwork::Schedule(Millis delay, std::function<void()> run, size_t node) {
  ScheduleAt(clock_->Now() + delay, std::move(run), node);
}

void SimNetwork::ScheduleAt(MonoTime at, std::function<void()> run, size_t node) {
  events_.push(Event{at, next_order_++, node, std::move(run)});
}

Millis SimNetwork::Latency() {
  std::uniform_int_distribution<int64_t> d(options_.min_latency.count(),
                                           options_.max_latency.count());
  return Millis(d(*rng_));
}

bool SimNetwork::Chance(double p) {
  return p > 0 && std::uniform_real_distribution<double>(0, 1)(*rng_) < p;
}

template <typename Reply>
void SimNetwork::Call(size_t from, size_t to, std::string route, std::string body,
                      Result<Reply> (*decode)(long, std::string_view, size_t),
                      std::function<void(Result<Reply>)> done) {
  struct CallState {
    std::function<void(Result<Reply>)> done;
    uint64_t from_epoch = 0;
    bool answered = false;
  };
  auto call = std::make_shared<CallState>(CallState{std::move(done), epoch_[from], false});
  // Gives `r` to the caller: once, and only while its process lives.
  auto answer = [this, from, call](Result<Reply> r,
                                   const std::function<void(size_t)>& on_delivered = nullptr) {
    if (call->answered || epoch_[from] != call->from_epoch) return;
    call->answered = true;
    if (on_delivered) on_delivered(from);
    if (!r.ok() && r.status().code() == Code::kTimeout) ++stats_.timeouts;
    std::function<void(Result<Reply>)> done = std::move(call->done);
    done(std::move(r));
  };
  if (!up_[from]) return;  // a dead process sends nothing (and hears nothing)
  ++stats_.requests;
  stats_.bytes += body.size();
  Schedule(
      options_.request_timeout,
      [answer] { answer(ErrorAnswer<Reply>(Status::Timeout("simulated request timeout"))); }, from);
  if (!LinkUp(from, to) || Chance(options_.drop_probability)) {
    ++stats_.dropped;
    return;
  }
  auto request = std::make_shared<const std::string>(std::move(body));
  const size_t max_payload = options_.max_payload_bytes;
  auto deliver = [this, from, to, route = std::move(route), request, decode, answer, max_payload] {
    if (!up_[to]) {
      ++stats_.refused;
      Schedule(
          Latency(),
          [answer] { answer(ErrorAnswer<Reply>(Status::Unavailable("connection refused"))); },
          from);
      return;
    }
    HttpReply reply = servers_[to](route, *request);
    stats_.bytes += reply.body.size();
    if (!LinkUp(to, from) || Chance(options_.drop_probability)) {
      ++stats_.dropped;
      return;
    }
    Schedule(
        Latency(),
        [answer, decode, max_payload, reply = std::move(reply)] {
          answer(decode(reply.status, reply.body, max_payload), reply.on_delivered);
        },
        from);
  };
  Millis delay = Latency();
  if (Chance(options_.late_probability)) {
    ++stats_.late;
    delay += options_.request_timeout;
  }
  Schedule(delay, deliver, to);
  if (Chance(options_.duplicate_probability)) {
    ++stats_.duplicated;
    Schedule(delay + Latency(), deliver, to);
  }
}

}  // namespace dsm
