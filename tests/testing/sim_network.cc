#include "tests/testing/sim_network.h"

#include <utility>

namespace dsm {

class SimNetwork::SimTransport final : public Transport {
 public:
  SimTransport(SimNetwork* net, size_t node, std::vector<size_t> peers)
      : net_(net), node_(node), peers_(std::move(peers)) {}

  void Heartbeat(size_t peer, std::function<void(Result<HeartbeatReply>)> done) override {
    net_->Call<HeartbeatReply>(
        node_, peers_[peer], [](const Handlers& h) { return h.heartbeat(); }, std::move(done));
  }
  void Replicate(size_t peer, std::vector<Message> msgs,
                 std::function<void(Result<ReplicateReply>)> done) override {
    net_->Call<ReplicateReply>(
        node_, peers_[peer],
        [msgs = std::move(msgs)](const Handlers& h) { return h.replicate(msgs); },
        std::move(done));
  }
  void Sync(size_t peer, uint64_t since, size_t limit, std::map<std::string, uint64_t> have,
            std::function<void(Result<SyncReply>)> done) override {
    net_->Call<SyncReply>(
        node_, peers_[peer],
        [since, limit, have = std::move(have)](const Handlers& h) {
          return h.sync(since, limit, have);
        },
        std::move(done));
  }

  void SyncStream(size_t peer, std::string origin, uint64_t since, size_t limit,
                  std::function<void(Result<SyncReply>)> done) override {
    net_->Call<SyncReply>(
        node_, peers_[peer],
        [origin = std::move(origin), since, limit](const Handlers& h) {
          return h.sync_stream(origin, since, limit);
        },
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
  handlers_.emplace_back();
  up_.push_back(false);
  epoch_.push_back(0);
  return handlers_.size() - 1;
}

void SimNetwork::SetHandlers(size_t node, Handlers h) {
  handlers_[node] = std::move(h);
  up_[node] = true;
}

void SimNetwork::Crash(size_t node) {
  handlers_[node] = Handlers();
  up_[node] = false;
  ++epoch_[node];
}

bool SimNetwork::IsUp(size_t node) const { return up_[node]; }

std::unique_ptr<Transport> SimNetwork::MakeTransport(size_t node, std::vector<size_t> peer_nodes) {
  return std::make_unique<SimTransport>(this, node, std::move(peer_nodes));
}

void SimNetwork::SetLink(size_t from, size_t to, bool up) {
  if (up) {
    cut_.erase({from, to});
  } else {
    cut_.insert({from, to});
  }
}

void SimNetwork::HealAll() { cut_.clear(); }

bool SimNetwork::LinkUp(size_t from, size_t to) const { return !cut_.count({from, to}); }

MonoTime SimNetwork::NextEventTime() const {
  return events_.empty() ? MonoTime::max() : events_.top().at;
}

int SimNetwork::RunDue() {
  int n = 0;
  while (!events_.empty() && events_.top().at <= clock_->Now()) {
    // Copy out before running: the callback may schedule new events.
    std::function<void()> run = events_.top().run;
    events_.pop();
    run();
    ++n;
  }
  return n;
}

void SimNetwork::Schedule(Millis delay, std::function<void()> run) {
  ScheduleAt(clock_->Now() + delay, std::move(run));
}

void SimNetwork::ScheduleAt(MonoTime at, std::function<void()> run) {
  events_.push(Event{at, next_order_++, std::move(run)});
}

Millis SimNetwork::Latency() {
  std::uniform_int_distribution<int64_t> d(options_.min_latency.count(),
                                           options_.max_latency.count());
  return Millis(d(*rng_));
}

bool SimNetwork::Dropped() {
  return std::uniform_real_distribution<double>(0, 1)(*rng_) < options_.drop_probability;
}

template <typename Reply>
void SimNetwork::Call(size_t from, size_t to,
                      std::function<Result<Reply>(const Handlers&)> serve,
                      std::function<void(Result<Reply>)> done) {
  const uint64_t from_epoch = epoch_[from];
  const MonoTime deadline = clock_->Now() + options_.request_timeout;
  auto shared_done = std::make_shared<std::function<void(Result<Reply>)>>(std::move(done));
  // Delivers `r` to the caller unless its process died meanwhile.
  auto reply = [this, from, from_epoch, shared_done](Result<Reply> r) {
    if (epoch_[from] != from_epoch) return;
    (*shared_done)(std::move(r));
  };
  auto time_out = [this, deadline, reply] {
    ScheduleAt(deadline, [reply] { reply(Status::Timeout("simulated request timeout")); });
  };
  if (!LinkUp(from, to) || Dropped()) {
    time_out();
    return;
  }
  Schedule(Latency(), [this, from, to, serve = std::move(serve), reply, time_out] {
    if (!up_[to]) {
      Schedule(Latency(), [reply] { reply(Status::Unavailable("connection refused")); });
      return;
    }
    Result<Reply> r = serve(handlers_[to]);
    if (!LinkUp(to, from) || Dropped()) {
      time_out();
      return;
    }
    Schedule(Latency(), [reply, r = std::move(r)]() mutable { reply(std::move(r)); });
  });
}

}  // namespace dsm
