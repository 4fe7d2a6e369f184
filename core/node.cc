#include "core/node.h"

#include <algorithm>
#include <cassert>
#include <condition_variable>
#include <list>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "common/metrics.h"
#include "common/planted_bugs.h"

namespace dsm {
namespace {

constexpr char kQuorumNotAchieved[] = "replication quorum not achieved";
// A peer's heartbeat or /sync answer naming more streams than this is not believed.
constexpr size_t kMaxPeerStreams = 1 << 16;
// A pull tells the peer how far it holds at most this many streams (the peer caps the map at
// 4096); the others are simply sent again and deduplicated.
constexpr size_t kMaxHaveStreams = 1024;
// The same replication error of one peer is logged at most this often (it is always counted).
constexpr auto kErrorLogInterval = std::chrono::seconds(10);

// An upper bound of the JSON bytes of `s` as a string value: quotes, and escapes of control
// characters (6 bytes), quotes and backslashes (2 bytes); other bytes go through as they are.
size_t JsonStringBytes(std::string_view s) {
  size_t n = 2;
  for (unsigned char c : s) {
    n += c < 0x20 ? 6 : (c == '"' || c == '\\') ? 2 : 1;
  }
  return n;
}

// The bytes of a /replicate request around its messages: {"msgs":[...]}.
constexpr size_t kEnvelopeBytes = 16;

// An upper bound of the bytes `m` adds to a /replicate request: its strings, escaped, plus the
// field names, numbers and separators.
size_t EncodedBytes(const Message& m) {
  constexpr size_t kFieldsAndNumbers = 160;
  return kFieldsAndNumbers + JsonStringBytes(m.msg_id) + JsonStringBytes(m.sender) +
         JsonStringBytes(m.recipient) + JsonStringBytes(m.payload) + JsonStringBytes(m.origin);
}

enum class Liveness { kUnknown, kAlive, kDead };

// One peer as this node sees it: failure detector, push replicator and catch-up puller state.
struct PeerState {
  size_t index = 0;
  std::string url;

  // Failure detector. Dead once heartbeat_timeout passed since the last success (or since Start
  // when there was none).
  Liveness liveness = Liveness::kUnknown;
  bool ever_ok = false;
  MonoTime last_ok{};
  double last_ok_wall = 0;
  int consecutive_failures = 0;
  bool heartbeat_in_flight = false;
  MonoTime next_heartbeat{};
  std::string stream;                           // the peer's own stream, from its heartbeat
  std::map<std::string, uint64_t> high_waters;  // what it held at its last heartbeat

  // Push replicator of our own stream.
  uint64_t push_cursor = 0;  // our origin_seq the peer acknowledged...
  std::string push_stream;   // ...and which incarnation of the peer did ("" = not known)
  bool push_in_flight = false;
  MonoTime push_not_before{};
  Millis push_backoff{0};
  // A push is at most this many messages and this many request bytes: the peer's own limit
  // (from its heartbeat) and halved by each 413, grown back by successes.
  uint64_t peer_max_request = 0;  // 0 = not known yet: our own limit is assumed
  size_t push_max_messages = 0;
  size_t push_max_bytes = 0;
  // Why pushes to this peer make no progress, by name ("" when they do). Shown in /status.
  std::string push_problem;
  MonoTime last_error_logged{};

  // Catch-up puller from the peer's log.
  bool pull_in_flight = false;
  uint64_t peer_last_seq = 0;       // the peer's last seq, from its last /sync answer
  uint64_t catchup_applied = 0;     // messages applied in the current run of pages
  MonoTime catchup_started{};       // when the current run of pages began
  MonoTime catchup_logged{};        // last progress line

  // Counters for /metrics.
  uint64_t pushed = 0;        // our messages the peer acknowledged
  uint64_t push_errors = 0;   // failed pushes
  uint64_t pull_errors = 0;   // failed pulls
  uint64_t pulled = 0;        // messages applied from the peer's log
  uint64_t conflicts = 0;     // our messages the peer holds another msg_id for (its 409)
  uint64_t too_large = 0;     // pushes the peer refused as too large (its 413)
  uint64_t bad_replies = 0;   // answers that broke the protocol's rules (ignored)
  uint64_t read_errors = 0;   // failed reads of our log for a push
  uint64_t apply_errors = 0;  // failed writes of pulled or repaired messages
  uint64_t cursor_errors = 0; // failed writes of the push cursor
  bool pull_wanted = true;  // pull as soon as possible (start-up, peer came back, more pages)
  MonoTime next_pull{};     // anti-entropy
};

// A /send awaiting its quorum. Satisfied when `quorum` nodes hold our own stream up to
// `own_needed` and each (origin, origin_seq) in `foreign_needed`.
struct QuorumWaiter {
  std::string first_msg_id;  // named in the timeout answer
  uint64_t own_needed = 0;
  std::vector<std::pair<std::string, uint64_t>> foreign_needed;
  MonoTime deadline{};
  SendResult result;
  std::function<void(SendResult)> done;
};

// Work decided under the lock and carried out after releasing it.
struct Actions {
  std::vector<size_t> heartbeats;
  struct Push {
    size_t peer;
    uint64_t from;  // the push cursor
    size_t max_messages;
    size_t max_bytes;  // request bytes
  };
  std::vector<Push> pushes;
  std::vector<std::pair<size_t, PushCursor>> persist_push;
  std::vector<std::pair<size_t, PullCursor>> pulls;
  struct Repair {
    size_t peer;
    std::string origin;
    uint64_t since;
  };
  std::vector<Repair> repairs;
  std::vector<std::pair<std::function<void(SendResult)>, SendResult>> completions;
  std::vector<std::pair<EventLevel, std::string>> events;
  bool wake = false;
};

}  // namespace

struct Node::Impl {
  Impl(const NodeOptions& o, LogStore* l, Transport* t, Clock* c)
      : options(o), log(l), transport(t), clock(c) {}

  const NodeOptions& options;
  LogStore* const log;
  Transport* const transport;
  Clock* const clock;

  mutable std::mutex mu;
  bool started = false;                    // GUARDED_BY(mu)
  bool stopped = false;                    // GUARDED_BY(mu)
  MonoTime started_at{};                   // GUARDED_BY(mu)
  std::vector<PeerState> peers;            // GUARDED_BY(mu)
  std::list<std::shared_ptr<QuorumWaiter>> waiters;  // GUARDED_BY(mu)
  std::function<void()> wakeup;            // GUARDED_BY(mu)
  std::function<void(EventLevel, const std::string&)> event_log;  // GUARDED_BY(mu)
  std::vector<std::pair<EventLevel, std::string>> pending_events;  // GUARDED_BY(mu)
  // Client writes handed to LogStore::AppendAsync whose completion has not finished yet; the
  // destructor waits for them (their completions use this Impl).
  int appends_in_flight = 0;               // GUARDED_BY(mu)
  std::condition_variable appends_done;    // notified when appends_in_flight drops to 0

  // Metrics: atomics and histograms, updated without mu.
  enum Source { kClient, kReplicate, kPull, kSources };
  std::atomic<uint64_t> appended[kSources] = {};
  std::atomic<uint64_t> deduplicated[kSources] = {};
  std::atomic<uint64_t> quorum_ok{0}, quorum_refused{0}, quorum_timeout{0};
  std::atomic<uint64_t> conflicts{0};  // /replicate batches refused for a conflict
  Histogram send_local_seconds, send_quorum_seconds, log_write_seconds;

  // The rest of a client write once the log has it (or refused it): count it, then answer now
  // or register its quorum wait.
  void OnAppended(bool quorum, std::string first_msg_id,
                  Result<std::vector<WriteOutcome>> written, std::function<void(SendResult)> done);

  void CountOutcomes(Source source, const std::vector<WriteOutcome>& outcomes) {
    uint64_t a = 0, d = 0;
    for (const WriteOutcome& o : outcomes) {
      if (o.kind == WriteOutcome::Kind::kAppended) ++a;
      if (o.kind == WriteOutcome::Kind::kDuplicate) ++d;
    }
    appended[source].fetch_add(a, std::memory_order_relaxed);
    deduplicated[source].fetch_add(d, std::memory_order_relaxed);
  }

  // The peer seq a pull answer moves the cursor to (see OnSync).
  // A `next` beyond the peer's last seq is not believed.
  static uint64_t next_cursor_seq(const Result<SyncReply>& r, const PullCursor& cursor) {
    if (r->stream != cursor.peer_stream && cursor.seq != 0) return 0;
    const uint64_t reached = r->messages.empty() ? cursor.seq : r->messages.back().seq;
    return r->next <= r->last_seq ? std::max(reached, r->next) : reached;
  }

  // Tracks a run of pull pages from `p` and logs the progress of long catch-ups.
  // REQUIRES: mu held.
  void NoteCatchUp(PeerState& p, MonoTime now, uint64_t applied, uint64_t peer_last_seq,
                   uint64_t at, bool more) {
    constexpr uint64_t kLongCatchUp = 1000;  // messages
    if (p.catchup_applied == 0 && applied > 0) {
      p.catchup_started = now;
      p.catchup_logged = now;
    }
    p.catchup_applied += applied;
    p.pulled += applied;
    p.peer_last_seq = peer_last_seq;
    const double secs = std::chrono::duration<double>(now - p.catchup_started).count();
    if (more && p.catchup_applied > 0 && now - p.catchup_logged >= std::chrono::seconds(2)) {
      p.catchup_logged = now;
      Event(EventLevel::kInfo,
            fmt::format("catching up from {}: {} messages applied in {:.1f} s, at its seq {} of {}",
                        p.url, p.catchup_applied, secs, at, peer_last_seq));
    }
    if (!more) {
      if (p.catchup_applied >= kLongCatchUp) {
        Event(EventLevel::kInfo,
              fmt::format("caught up from {}: {} messages in {:.1f} s", p.url, p.catchup_applied,
                          secs));
      }
      p.catchup_applied = 0;
    }
  }

  // REQUIRES: mu held.
  void Event(EventLevel level, std::string text) {
    pending_events.emplace_back(level, std::move(text));
  }

  // ---- derived state (REQUIRES: mu held) ----

  // Whether `p`'s current incarnation acknowledged our stream up to `origin_seq`: a push cursor
  // counts only once the peer has told this process its stream id and the cursor was
  // acknowledged by that very incarnation (a wiped peer holds nothing it acknowledged before).
  bool HoldsOwn(const PeerState& p, uint64_t origin_seq) const {
    if (Planted(PlantedBug::kQuorumFromStaleCursor)) return p.push_cursor >= origin_seq;
    return !p.stream.empty() && p.push_stream == p.stream && p.push_cursor >= origin_seq;
  }

  // Nodes (this one included) known to hold our stream up to `origin_seq`.
  int OwnHolders(uint64_t origin_seq) const {
    int n = 1;
    for (const PeerState& p : peers) {
      if (HoldsOwn(p, origin_seq)) ++n;
    }
    return n;
  }

  // Nodes (this one included) whose current incarnation said, in its last heartbeat, that it
  // holds stream `origin` up to `origin_seq`.
  int ForeignHolders(const std::string& origin, uint64_t origin_seq) const {
    int n = 1;
    for (const PeerState& p : peers) {
      if (p.stream.empty()) continue;
      auto it = p.high_waters.find(origin);
      if (it != p.high_waters.end() && it->second >= origin_seq) ++n;
    }
    return n;
  }

  // The peer's own stream as it just told us (a heartbeat or a push answer). A new one means
  // its data directory was replaced: what it acknowledged before is gone, so the push cursor
  // restarts from what this incarnation acknowledges. REQUIRES: mu held.
  void NoteStream(PeerState& p, const std::string& stream, MonoTime now, Actions* a) {
    if (stream.empty() || stream == p.stream) return;
    if (!p.stream.empty()) {
      Event(EventLevel::kWarning,
            fmt::format("peer {} has a new data directory (stream {}, was {}): it no longer "
                        "holds what it acknowledged; pushing our stream to it from the start",
                        p.url, stream, p.stream));
    }
    p.stream = stream;
    p.high_waters.clear();
    if (p.push_stream != stream) {
      p.push_stream = stream;
      p.push_cursor = 0;
      p.push_not_before = now;
      p.push_problem.clear();
      a->persist_push.emplace_back(p.index, PushCursor{p.push_stream, 0});
    }
  }

  // Logs a replication error of `p` unless one was logged within kErrorLogInterval (every error
  // is counted by the caller). REQUIRES: mu held.
  void ErrorEvent(PeerState& p, MonoTime now, std::string text) {
    if (p.last_error_logged != MonoTime{} && now - p.last_error_logged < kErrorLogInterval) return;
    p.last_error_logged = now;
    Event(EventLevel::kWarning, std::move(text));
  }

  bool Satisfied(const QuorumWaiter& w) const {
    if (w.own_needed > 0 && OwnHolders(w.own_needed) < options.quorum) return false;
    for (const auto& [origin, seq] : w.foreign_needed) {
      if (ForeignHolders(origin, seq) < options.quorum) return false;
    }
    return true;
  }

  // Refuse a quorum write up front only when the failure detector already knows that fewer than
  // `quorum` nodes are reachable; unknown peers (not heard from yet) get the benefit of the doubt.
  bool QuorumReachable() const {
    int reachable = 1;
    for (const PeerState& p : peers) {
      if (p.liveness != Liveness::kDead) ++reachable;
    }
    return reachable >= options.quorum;
  }

  void CollectSatisfied(Actions* a) {
    for (auto it = waiters.begin(); it != waiters.end();) {
      if (Satisfied(**it)) {
        a->completions.emplace_back(std::move((*it)->done), std::move((*it)->result));
        it = waiters.erase(it);
      } else {
        ++it;
      }
    }
  }

  void UpdateLiveness(PeerState& p, MonoTime now) {
    if (p.liveness == Liveness::kDead) return;
    MonoTime since = p.ever_ok ? p.last_ok : started_at;
    if (now - since >= options.heartbeat_timeout) {
      p.liveness = Liveness::kDead;
      Event(EventLevel::kWarning,
            fmt::format("peer {} is dead: no successful exchange for {} ms", p.url,
                        std::chrono::duration_cast<Millis>(now - since).count()));
    }
  }

  void MarkSuccess(PeerState& p, MonoTime now) {
    p.ever_ok = true;
    p.last_ok = now;
    p.last_ok_wall = clock->WallSeconds();
    p.consecutive_failures = 0;
    if (p.liveness != Liveness::kAlive) {
      // Back (or seen for the first time): catch up from it and push to it without waiting.
      Event(EventLevel::kInfo, fmt::format("peer {} is alive{}", p.url,
                                           p.liveness == Liveness::kDead ? " again" : ""));
      p.liveness = Liveness::kAlive;
      p.pull_wanted = true;
      p.push_backoff = Millis(0);
      p.push_not_before = now;
    }
  }

  void MarkFailure(PeerState& p, MonoTime now) {
    ++p.consecutive_failures;
    UpdateLiveness(p, now);
  }

  // Decides which requests are due now. Marks them in flight.
  void CollectDue(MonoTime now, Actions* a) {
    CollectDueWork(now, a);
    a->events.insert(a->events.end(), std::make_move_iterator(pending_events.begin()),
                     std::make_move_iterator(pending_events.end()));
    pending_events.clear();
  }

  void CollectDueWork(MonoTime now, Actions* a) {
    if (!started || stopped) return;
    const uint64_t own_hw = log->HighWater(log->stream_id());
    for (PeerState& p : peers) {
      UpdateLiveness(p, now);
      if (!p.heartbeat_in_flight && now >= p.next_heartbeat) {
        p.heartbeat_in_flight = true;
        p.next_heartbeat = now + options.heartbeat_interval;
        a->heartbeats.push_back(p.index);
      }
      // Pushes wait until the peer's incarnation is known: a cursor is only meaningful for it.
      if (!p.push_in_flight && !p.stream.empty() && p.push_cursor < own_hw &&
          now >= p.push_not_before) {
        p.push_in_flight = true;
        const size_t limit = p.peer_max_request > 0 ? p.peer_max_request : MaxRequestBytes(options);
        a->pushes.push_back({p.index, p.push_cursor, p.push_max_messages,
                             std::min(p.push_max_bytes, limit)});
      }
      if (!p.pull_in_flight && (p.pull_wanted || now >= p.next_pull)) {
        p.pull_in_flight = true;
        p.pull_wanted = false;
        a->pulls.emplace_back(p.index, log->GetPullCursor(p.url));
      }
    }
    for (auto it = waiters.begin(); it != waiters.end();) {
      QuorumWaiter& w = **it;
      if (now < w.deadline) {
        ++it;
        continue;
      }
      w.result.status = Status::Timeout(fmt::format(
          "quorum of {} not reached within {} ms: message {} is stored at seq {} and keeps "
          "replicating; retry with the same msg_id to wait for it again",
          options.quorum, options.quorum_timeout.count(), w.first_msg_id,
          w.result.outcomes.front().seq));
      a->completions.emplace_back(std::move(w.done), std::move(w.result));
      it = waiters.erase(it);
    }
  }

  // Runs `task` on the executor (SetExecutor), or here when there is none.
  void Post(std::function<void()> task) {
    if (executor) {
      executor(std::move(task));
    } else {
      task();
    }
  }
  // Set before Start(), read-only afterwards.
  std::function<void(std::function<void()>)> executor;

  // Event handlers and the executor of decided work. REQUIRES: mu not held.
  void Run(Actions actions);
  // Takes the answer (`ok` or not) of one request to `peer`: under the lock, counts it toward the
  // peer's liveness, lets `update(peer_state, now, actions)` record what the answer changed,
  // collects what became due; then runs it all outside the lock. Nothing once stopped.
  template <typename Update>
  void AfterExchange(size_t peer, bool ok, Update&& update);
  void StartPush(const Actions::Push& push);
  void OnPushed(size_t peer, size_t sent, size_t sent_bytes, Result<ReplicateReply> r);
  void OnHeartbeat(size_t peer, Result<HeartbeatReply> r);
  void OnSync(size_t peer, PullCursor cursor, Result<SyncReply> r);
  void OnRepair(size_t peer, std::string origin, Result<SyncReply> r);
  // The answer to a quorum /send of `msgs` when every one of them is already stored and held by
  // `quorum` current holders; nullopt otherwise. REQUIRES: mu not held.
  std::optional<SendResult> AlreadyHeld(const std::vector<Message>& msgs);

  // How far this node holds each stream, for a pull: the peer leaves out what it covers. At most
  // kMaxHaveStreams of them (the longest), so the request stays bounded however many streams
  // wiped nodes left behind; entries of the others are sent again and deduplicated.
  std::map<std::string, uint64_t> HaveMap() const {
    std::map<std::string, uint64_t> all = log->HighWaters();
    if (all.size() <= kMaxHaveStreams) return all;
    std::vector<std::pair<uint64_t, std::string>> by_size;
    by_size.reserve(all.size());
    for (auto& [origin, hw] : all) by_size.emplace_back(hw, origin);
    std::nth_element(by_size.begin(), by_size.begin() + kMaxHaveStreams, by_size.end(),
                     std::greater<>());
    std::map<std::string, uint64_t> have;
    for (size_t i = 0; i < kMaxHaveStreams; ++i) have.emplace(by_size[i].second, by_size[i].first);
    return have;
  }

  MonoTime NextDeadline() const {
    MonoTime next = MonoTime::max();
    if (!started || stopped) return next;
    const uint64_t own_hw = log->HighWater(log->stream_id());
    for (const PeerState& p : peers) {
      if (!p.heartbeat_in_flight) next = std::min(next, p.next_heartbeat);
      if (!p.push_in_flight && !p.stream.empty() && p.push_cursor < own_hw) {
        next = std::min(next, p.push_not_before);
      }
      if (!p.pull_in_flight) {
        next = std::min(next, p.pull_wanted ? MonoTime::min() : p.next_pull);
      }
      if (p.liveness != Liveness::kDead) {
        next = std::min(next, (p.ever_ok ? p.last_ok : started_at) + options.heartbeat_timeout);
      }
    }
    for (const auto& w : waiters) next = std::min(next, w->deadline);
    return next;
  }
};

Node::Node(NodeOptions options, LogStore* log, Transport* transport, Clock* clock)
    : options_(std::move(options)),
      impl_(std::make_unique<Impl>(options_, log, transport, clock)) {
  for (size_t i = 0; i < options_.peers.size(); ++i) {
    PeerState p;
    p.index = i;
    p.url = options_.peers[i];
    p.push_max_messages = std::max<size_t>(1, options_.batch_messages);
    p.push_max_bytes = MaxRequestBytes(options_);
    impl_->peers.push_back(std::move(p));
  }
}

Node::~Node() {
  std::unique_lock lock(impl_->mu);
  impl_->appends_done.wait(lock, [this] { return impl_->appends_in_flight == 0; });
}

void Node::Start() {
  const uint64_t own_hw = impl_->log->HighWater(impl_->log->stream_id());
  std::function<void()> wake;
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->started) return;
    impl_->started = true;
    impl_->started_at = impl_->clock->Now();
    for (PeerState& p : impl_->peers) {
      // A cursor beyond our stream means the cursor outlived a restored data directory: resend.
      const PushCursor cursor = impl_->log->GetPushCursor(p.url);
      p.push_cursor = std::min(cursor.origin_seq, own_hw);
      p.push_stream = cursor.peer_stream;
      p.next_heartbeat = impl_->started_at;
      p.push_not_before = impl_->started_at;
      p.next_pull = impl_->started_at;
    }
    wake = impl_->wakeup;
  }
  if (wake) wake();
}

void Node::Stop() {
  std::list<std::shared_ptr<QuorumWaiter>> waiters;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopped = true;
    waiters.swap(impl_->waiters);
  }
  for (auto& w : waiters) {
    w->result.status = Status::Unavailable("shutting down");
    w->done(std::move(w->result));
  }
}

void Node::SetExecutor(std::function<void(std::function<void()>)> executor) {
  impl_->executor = std::move(executor);
}

void Node::SetWakeup(std::function<void()> wakeup) {
  std::lock_guard lock(impl_->mu);
  impl_->wakeup = std::move(wakeup);
}

void Node::SetEventLog(std::function<void(EventLevel, const std::string&)> log) {
  std::lock_guard lock(impl_->mu);
  impl_->event_log = std::move(log);
}

void Node::WriteMetrics(MetricsWriter& w) const {
  Impl& d = *impl_;
  const NodeStatus st = GetStatus();
  struct PeerCounters {
    uint64_t pushed, push_errors, pull_errors, pulled, peer_last_seq, conflicts, too_large,
        bad_replies, read_errors, apply_errors, cursor_errors;
  };
  std::vector<PeerCounters> counters;
  {
    std::lock_guard lock(d.mu);
    for (const PeerState& p : d.peers) {
      counters.push_back({p.pushed, p.push_errors, p.pull_errors, p.pulled, p.peer_last_seq,
                          p.conflicts, p.too_large, p.bad_replies, p.read_errors, p.apply_errors,
                          p.cursor_errors});
    }
  }
  static constexpr const char* kSourceNames[] = {"client", "replicate", "pull"};
  w.Family("dsm_messages_appended_total", "counter",
           "Messages written to the log, by how they arrived (client /send, a peer's /replicate "
           "push, or this node's /sync pull).");
  for (int s = 0; s < Impl::kSources; ++s) {
    w.Sample("dsm_messages_appended_total", {{"source", kSourceNames[s]}},
             static_cast<double>(d.appended[s].load()));
  }
  w.Family("dsm_messages_deduplicated_total", "counter",
           "Messages not written because this node already held them (msg_id or stream position).");
  for (int s = 0; s < Impl::kSources; ++s) {
    w.Sample("dsm_messages_deduplicated_total", {{"source", kSourceNames[s]}},
             static_cast<double>(d.deduplicated[s].load()));
  }
  w.Family("dsm_send_duration_seconds", "histogram",
           "Time from a /send reaching the core to its answer, by acknowledgement mode.");
  w.HistogramSamples("dsm_send_duration_seconds", {{"ack", "local"}}, d.send_local_seconds.Read());
  w.HistogramSamples("dsm_send_duration_seconds", {{"ack", "quorum"}},
                     d.send_quorum_seconds.Read());
  w.Family("dsm_log_write_duration_seconds", "histogram",
           "Time of a /send's log write: group commit wait plus the fsynced RocksDB write.");
  w.HistogramSamples("dsm_log_write_duration_seconds", {}, d.log_write_seconds.Read());
  w.Family("dsm_quorum_writes_total", "counter",
           "Quorum /send outcomes: ok, refused (503, nothing written) or timeout (504).");
  w.Sample("dsm_quorum_writes_total", {{"outcome", "ok"}}, static_cast<double>(d.quorum_ok.load()));
  w.Sample("dsm_quorum_writes_total", {{"outcome", "refused"}},
           static_cast<double>(d.quorum_refused.load()));
  w.Sample("dsm_quorum_writes_total", {{"outcome", "timeout"}},
           static_cast<double>(d.quorum_timeout.load()));
  w.Family("dsm_log_last_seq", "gauge", "Highest seq in this node's log.");
  w.Sample("dsm_log_last_seq", static_cast<double>(st.last_seq));
  w.Family("dsm_own_stream_high_water", "gauge", "Messages accepted by this node's own stream.");
  w.Sample("dsm_own_stream_high_water", static_cast<double>(st.own_high_water));
  w.Family("dsm_log_writable", "gauge", "1 while the log accepts writes, 0 after a disk failure.");
  w.Sample("dsm_log_writable", st.write_health.ok() ? 1 : 0);

  auto per_peer = [&](const char* name, const char* type, const char* help, auto value) {
    w.Family(name, type, help);
    for (size_t i = 0; i < st.peers.size(); ++i) {
      w.Sample(name, {{"peer", st.peers[i].url}}, static_cast<double>(value(i)));
    }
  };
  per_peer("dsm_peer_alive", "gauge", "1 when the failure detector sees the peer alive.",
           [&](size_t i) { return st.peers[i].alive ? 1 : 0; });
  per_peer("dsm_peer_consecutive_failures", "gauge", "Failed exchanges since the last success.",
           [&](size_t i) { return st.peers[i].consecutive_failures; });
  per_peer("dsm_peer_push_cursor", "gauge",
           "Position of this node's stream the peer acknowledged.",
           [&](size_t i) { return st.peers[i].push_cursor; });
  per_peer("dsm_peer_lag_messages", "gauge", "Own messages the peer has not acknowledged yet.",
           [&](size_t i) { return st.peers[i].lag_messages; });
  per_peer("dsm_peer_lag_seconds", "gauge",
           "Age of the oldest own message the peer has not acknowledged (0 when none).",
           [&](size_t i) { return st.peers[i].lag_seconds; });
  per_peer("dsm_peer_replicated_messages_total", "counter",
           "Own messages the peer acknowledged (push).",
           [&](size_t i) { return counters[i].pushed; });
  per_peer("dsm_peer_replication_errors_total", "counter", "Failed pushes to the peer.",
           [&](size_t i) { return counters[i].push_errors; });
  per_peer("dsm_peer_pull_errors_total", "counter", "Failed catch-up pulls from the peer.",
           [&](size_t i) { return counters[i].pull_errors; });
  per_peer("dsm_peer_pulled_messages_total", "counter",
           "Messages applied from the peer's log by catch-up pulls.",
           [&](size_t i) { return counters[i].pulled; });
  per_peer("dsm_peer_pull_cursor", "gauge", "Last peer seq applied by catch-up (peer's seq space).",
           [&](size_t i) { return st.peers[i].pull_cursor.seq; });
  per_peer("dsm_peer_last_seq", "gauge", "The peer's last seq, as of its last /sync answer.",
           [&](size_t i) { return counters[i].peer_last_seq; });
  per_peer("dsm_peer_conflicts_total", "counter",
           "Messages the peer and this node hold differently: another msg_id at one position "
           "(refused both ways, never counted toward a quorum).",
           [&](size_t i) { return counters[i].conflicts; });
  per_peer("dsm_peer_push_too_large_total", "counter",
           "Pushes the peer refused as too large (413); each halves the next batch.",
           [&](size_t i) { return counters[i].too_large; });
  per_peer("dsm_peer_bad_replies_total", "counter",
           "Answers of the peer that broke the protocol's rules (ignored, nothing changed).",
           [&](size_t i) { return counters[i].bad_replies; });
  per_peer("dsm_peer_read_errors_total", "counter",
           "Failed reads of this node's log for a push to the peer (retried).",
           [&](size_t i) { return counters[i].read_errors; });
  per_peer("dsm_peer_apply_errors_total", "counter",
           "Failed writes of messages pulled or repaired from the peer (retried).",
           [&](size_t i) { return counters[i].apply_errors; });
  per_peer("dsm_peer_cursor_errors_total", "counter",
           "Failed writes of the peer's push cursor (the push is resent).",
           [&](size_t i) { return counters[i].cursor_errors; });
  per_peer("dsm_peer_push_blocked", "gauge",
           "1 while pushes to the peer make no progress for a named reason (see /status).",
           [&](size_t i) { return st.peers[i].push_problem.empty() ? 0 : 1; });
  w.Family("dsm_conflicts_total", "counter",
           "/replicate batches refused because another msg_id holds a pushed position.");
  w.Sample("dsm_conflicts_total", static_cast<double>(d.conflicts.load()));
}

MonoTime Node::NextDeadline() const {
  std::lock_guard lock(impl_->mu);
  return impl_->NextDeadline();
}

// Carries out the actions decided under the lock. Must be called without the lock.
void Node::Impl::Run(Actions actions) {
  if (!actions.events.empty()) {
    std::function<void(EventLevel, const std::string&)> sink;
    {
      std::lock_guard lock(mu);
      sink = event_log;
    }
    if (sink) {
      for (const auto& [level, text] : actions.events) sink(level, text);
    }
  }
  for (auto& [done, result] : actions.completions) done(std::move(result));
  for (size_t peer : actions.heartbeats) {
    transport->Heartbeat(peer, [this, peer](Result<HeartbeatReply> r) {
      Post([this, peer, r = std::move(r)]() mutable { OnHeartbeat(peer, std::move(r)); });
    });
  }
  for (const auto& [peer, cursor] : actions.persist_push) {
    Status st = log->SetPushCursor(options.peers[peer], cursor);
    if (!st.ok()) {
      // Not fatal (a lost cursor only causes a resend), but never silent.
      std::lock_guard lock(mu);
      PeerState& p = peers[peer];
      ++p.cursor_errors;
      ErrorEvent(p, clock->Now(),
                 fmt::format("writing the push cursor of {} failed: {}", p.url, st.ToString()));
    }
  }
  for (const Actions::Push& push : actions.pushes) StartPush(push);
  for (auto& pull : actions.pulls) {
    transport->Sync(pull.first, pull.second.seq, options.batch_messages, HaveMap(),
                    [this, peer = pull.first, cursor = pull.second](Result<SyncReply> r) {
                      Post([this, peer, cursor, r = std::move(r)]() mutable {
                        OnSync(peer, cursor, std::move(r));
                      });
                    });
  }
  for (auto& rep : actions.repairs) {
    transport->SyncStream(rep.peer, rep.origin, rep.since, options.batch_messages,
                          [this, peer = rep.peer, origin = rep.origin](Result<SyncReply> r) {
                            Post([this, peer, origin, r = std::move(r)]() mutable {
                              OnRepair(peer, origin, std::move(r));
                            });
                          });
  }
  if (actions.wake) {
    std::function<void()> wake;
    {
      std::lock_guard lock(mu);
      wake = wakeup;
    }
    if (wake) wake();
  }
}

void Node::Tick() {
  Actions a;
  {
    std::lock_guard lock(impl_->mu);
    impl_->CollectDue(impl_->clock->Now(), &a);
  }
  impl_->Run(std::move(a));
}

// Reads the next push batch of our stream for `push.peer` and sends it. The batch is cut to what
// the peer accepts as one request (by the encoded size of its messages, an upper bound), but
// always holds at least one message: one the peer can never accept is reported by OnPushed.
void Node::Impl::StartPush(const Actions::Push& push) {
  Result<std::vector<Message>> batch =
      log->ReadOrigin(log->stream_id(), push.from, push.max_messages, options.batch_bytes);
  if (!batch.ok() || batch->empty()) {
    std::lock_guard lock(mu);
    PeerState& p = peers[push.peer];
    p.push_in_flight = false;
    const MonoTime now = clock->Now();
    p.push_not_before = now + options.retry_max;
    if (!batch.ok()) {
      ++p.read_errors;
      p.push_problem = "reading our log for a push failed: " + batch.status().ToString();
      ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, p.push_problem));
    }
    return;
  }
  size_t bytes = kEnvelopeBytes;
  size_t n = 0;
  for (const Message& m : *batch) {
    const size_t more = EncodedBytes(m) + 1;
    if (n > 0 && bytes + more > push.max_bytes) break;
    bytes += more;
    ++n;
  }
  batch->resize(n);
  transport->Replicate(push.peer, std::move(batch.value()),
                       [this, peer = push.peer, n, bytes](Result<ReplicateReply> r) {
                         Post([this, peer, n, bytes, r = std::move(r)]() mutable {
                           OnPushed(peer, n, bytes, std::move(r));
                         });
                       });
}

void Node::Impl::OnPushed(size_t peer, size_t sent, size_t sent_bytes, Result<ReplicateReply> r) {
  AfterExchange(peer, r.ok(), [&](PeerState& p, MonoTime now, Actions& a) {
    p.push_in_flight = false;
    if (!r.ok()) {
      ++p.push_errors;
      p.push_backoff = std::clamp(p.push_backoff * 2, options.retry_min, options.retry_max);
      p.push_not_before = now + p.push_backoff;
      if (r.status().code() != Code::kTooLarge) {
        // Unreachable peers are the failure detector's business; other refusals are named.
        if (r.status().code() != Code::kUnavailable && r.status().code() != Code::kTimeout) {
          p.push_problem = "push refused: " + r.status().ToString();
          ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, p.push_problem));
        }
        return;
      }
      // 413: the peer takes less in one request than we sent. Halve the batch; a single
      // message it refuses can never be delivered by push: say so, by name, and keep trying
      // slowly (the peer may be reconfigured; its pulls may still fetch the message).
      ++p.too_large;
      p.push_max_messages = std::max<size_t>(1, sent / 2);
      p.push_max_bytes = sent_bytes / 2 + kEnvelopeBytes;
      if (sent > 1) {
        p.push_not_before = now;
        p.push_problem.clear();
        return;
      }
      p.push_problem = fmt::format(
          "message {} of our stream is too large for peer {} ({} bytes encoded; the peer accepts "
          "requests of up to {} bytes, this node {}): {}",
          p.push_cursor + 1, p.url, sent_bytes,
          p.peer_max_request > 0 ? std::to_string(p.peer_max_request) : std::string("?"),
          MaxRequestBytes(options), r.status().message());
      p.push_not_before = now + options.retry_max;
      ErrorEvent(p, now, p.push_problem);
      return;
    }
    const uint64_t own_hw = log->HighWater(log->stream_id());
    NoteStream(p, r->stream, now, &a);
    if (r->high_water > own_hw) {
      // The peer claims positions of our stream we never wrote.
      ++p.bad_replies;
      p.push_problem = fmt::format(
          "peer claims our stream up to {}, beyond its end {} (a restored data directory on "
          "one side?)",
          r->high_water, own_hw);
      ErrorEvent(p, now, fmt::format("push to {}: {}", p.url, p.push_problem));
      p.push_not_before = now + options.retry_max;
      return;
    }
    const uint64_t cursor = r->high_water;
    if (cursor > p.push_cursor) p.pushed += cursor - p.push_cursor;
    if (r->gap) {
      Event(EventLevel::kWarning,
            fmt::format("peer {} holds our stream only up to {}: resending from there", p.url,
                        cursor));
    }
    p.push_cursor = cursor;
    p.push_stream = p.stream;
    a.persist_push.emplace_back(p.index, PushCursor{p.push_stream, p.push_cursor});
    if (r->conflict) {
      ++p.conflicts;
      p.push_problem = fmt::format(
          "conflict: peer {} holds another message at position {} of our stream: {}", p.url,
          cursor + 1, r->reason);
      ErrorEvent(p, now, p.push_problem);
      p.push_backoff = options.retry_max;
      p.push_not_before = now + options.retry_max;
      return;
    }
    p.push_problem.clear();
    // Grow back towards the full batch after a 413 shrank it.
    p.push_max_messages = std::min(std::max<size_t>(1, options.batch_messages),
                                   std::max<size_t>(p.push_max_messages, sent * 2));
    p.push_max_bytes = std::min(MaxRequestBytes(options),
                                std::max(p.push_max_bytes, sent_bytes * 2));
    p.push_backoff = Millis(0);
    p.push_not_before = now;
    CollectSatisfied(&a);
  });
}

template <typename Update>
void Node::Impl::AfterExchange(size_t peer, bool ok, Update&& update) {
  Actions a;
  {
    std::lock_guard lock(mu);
    if (stopped) return;
    PeerState& p = peers[peer];
    const MonoTime now = clock->Now();
    if (ok) {
      MarkSuccess(p, now);
    } else {
      MarkFailure(p, now);
    }
    update(p, now, a);
    CollectDue(now, &a);
    a.wake = true;
  }
  Run(std::move(a));
}

void Node::Impl::OnHeartbeat(size_t peer, Result<HeartbeatReply> r) {
  AfterExchange(peer, r.ok(), [&](PeerState& p, MonoTime now, Actions& a) {
    p.heartbeat_in_flight = false;
    if (!r.ok()) return;
    // Peer input is checked like client input: a bad answer changes nothing.
    std::string bad;
    if (r->stream.empty()) {
      bad = "no stream id";
    } else if (r->high_waters.size() > kMaxPeerStreams) {
      bad = fmt::format("{} streams (at most {} are believed)", r->high_waters.size(),
                        kMaxPeerStreams);
    } else if (r->stream == p.stream) {
      // One incarnation's high waters only grow.
      for (const auto& [origin, hw] : p.high_waters) {
        auto it = r->high_waters.find(origin);
        if (it != r->high_waters.end() && it->second < hw) {
          bad = fmt::format("its high water of {} went down from {} to {}", origin, hw,
                            it->second);
          break;
        }
      }
    }
    if (!bad.empty()) {
      ++p.bad_replies;
      ErrorEvent(p, now, fmt::format("ignored a heartbeat answer of {}: {}", p.url, bad));
      return;
    }
    NoteStream(p, r->stream, now, &a);
    p.high_waters = std::move(r->high_waters);
    if (r->max_request_bytes > 0) p.peer_max_request = r->max_request_bytes;
    CollectSatisfied(&a);
  });
}

// Checks a /sync answer against the request: its messages are entries of the peer's log after
// `cursor.seq`, in strictly increasing seq order, none beyond the peer's last seq, each with an
// origin position. Returns what is wrong, "" when nothing is.
static std::string CheckSyncReply(const SyncReply& r, const PullCursor& cursor) {
  uint64_t prev = cursor.seq;
  for (const Message& m : r.messages) {
    if (m.seq <= prev) {
      return fmt::format("seq {} is not after {} (the request's since, or the entry before)",
                         m.seq, prev);
    }
    if (m.seq > r.last_seq) {
      return fmt::format("seq {} is beyond the peer's last seq {}", m.seq, r.last_seq);
    }
    if (m.origin.empty() || m.origin_seq == 0) {
      return fmt::format("the entry at seq {} has no origin position", m.seq);
    }
    prev = m.seq;
  }
  return "";
}

// One /sync page from a peer: apply it with the new cursor in ONE write. A page can show a gap
// in some origin stream when the peer holds positions of that stream whose message it stores
// under another origin (a msg_id accepted by two nodes): the store then writes the cursor just
// before the gap (LogStore::Apply), and the stream is repaired from the peer first
// (SyncStream), after which the pull resumes.
void Node::Impl::OnSync(size_t peer, PullCursor cursor, Result<SyncReply> r) {
  const std::string& url = options.peers[peer];
  bool applied_ok = true;
  std::string apply_error;
  std::string bad;
  bool more = false;
  uint64_t applied = 0;
  uint64_t conflicts = 0;
  std::optional<std::pair<std::string, uint64_t>> repair;  // origin, repair from
  const bool new_stream = r.ok() && r->stream != cursor.peer_stream && cursor.seq != 0;
  if (r.ok() && !new_stream) bad = CheckSyncReply(*r, cursor);
  if (r.ok() && bad.empty()) {
    PullCursor next;
    next.peer_stream = r->stream;
    std::vector<Message> msgs;
    if (new_stream) {
      // The peer's data directory was replaced: its seq space restarted. Start over from 0.
      next.seq = 0;
      more = true;
    } else {
      next.seq = next_cursor_seq(r, cursor);
      more = r->more;
      msgs = std::move(r->messages);
    }
    if (!msgs.empty() || next != cursor) {
      Result<std::vector<WriteOutcome>> w = log->Apply(std::move(msgs), url, &next);
      if (!w.ok()) {
        applied_ok = false;
        apply_error = w.status().ToString();
      } else {
        CountOutcomes(kPull, *w);
        for (const WriteOutcome& o : *w) {
          if (o.kind == WriteOutcome::Kind::kAppended) ++applied;
          if (o.kind == WriteOutcome::Kind::kConflict) ++conflicts;
          if (o.kind == WriteOutcome::Kind::kGap && !repair) {
            repair.emplace(o.origin, o.expected_origin_seq - 1);
          }
        }
      }
    }
  }
  AfterExchange(peer, r.ok(), [&](PeerState& p, MonoTime now, Actions& a) {
    if (r.ok() && !bad.empty()) {
      ++p.bad_replies;
      ErrorEvent(p, now, fmt::format("ignored a /sync answer of {}: {}", p.url, bad));
    } else if (r.ok()) {
      NoteCatchUp(p, now, applied, r->last_seq, next_cursor_seq(r, cursor), more && applied_ok);
      if (new_stream) {
        Event(EventLevel::kWarning,
              fmt::format("peer {} has a new data directory ({}): pulling it from the start",
                          p.url, r->stream));
      }
      if (!applied_ok) {
        ++p.apply_errors;
        ErrorEvent(p, now,
                   fmt::format("applying a page pulled from {} failed: {}", p.url, apply_error));
      }
      if (conflicts > 0) {
        p.conflicts += conflicts;
        ErrorEvent(p, now,
                   fmt::format("{} messages pulled from {} conflict with ours (another msg_id at "
                               "a position we hold): refused",
                               conflicts, p.url));
      }
      if (repair && applied_ok) {
        Event(EventLevel::kInfo,
              fmt::format("pull from {} stopped at a gap in stream {}: repairing it from the "
                          "peer's stream",
                          p.url, repair->first));
      }
    } else {
      ++p.pull_errors;
    }
    if (r.ok() && bad.empty() && repair && applied_ok) {
      a.repairs.push_back({peer, repair->first, repair->second});  // the pull stays in flight
    } else {
      p.pull_in_flight = false;
      if (r.ok() && bad.empty() && applied_ok && more) {
        p.pull_wanted = true;
      } else {
        p.next_pull = now + (applied_ok && bad.empty() ? options.anti_entropy_interval
                                                       : options.retry_max);
      }
    }
  });
}

// One page of an origin stream read from a peer to fill a gap (see OnSync).
void Node::Impl::OnRepair(size_t peer, std::string origin, Result<SyncReply> r) {
  bool progressed = false;
  bool more = false;
  uint64_t last = 0;
  std::string error;
  if (r.ok() && !r->messages.empty()) {
    {
      last = r->messages.back().origin_seq;
      more = r->more;
      const uint64_t before = log->HighWater(origin);
      Result<std::vector<WriteOutcome>> w = log->Apply(std::move(r->messages));
      if (w.ok()) {
        CountOutcomes(kPull, *w);
      } else {
        error = "applying it failed: " + w.status().ToString();
      }
      progressed = w.ok() && log->HighWater(origin) > before;
    }
  }
  AfterExchange(peer, r.ok(), [&](PeerState& p, MonoTime now, Actions& a) {
    if (!r.ok()) ++p.pull_errors;
    if (!error.empty()) {
      ++p.apply_errors;
      ErrorEvent(p, now, fmt::format("repair of stream {} from {}: {}", origin, p.url, error));
    }
    if (progressed && more) {
      a.repairs.push_back({peer, origin, last});
    } else {
      p.pull_in_flight = false;
      if (progressed) {
        p.pull_wanted = true;  // resume the pull before the gap
      } else {
        p.next_pull = now + (error.empty() ? options.anti_entropy_interval : options.retry_max);
      }
    }
  });
}

void Node::Send(std::vector<Message> msgs, AckMode ack, std::function<void(SendResult)> done) {
  Impl& d = *impl_;
  const bool quorum = ack == AckMode::kQuorum ||
                      (ack == AckMode::kDefault && options_.mode == ReplicationMode::kSyncQuorum);
  // Count every answer and time it from here.
  done = [&d, quorum, start = d.clock->Now(), done = std::move(done)](SendResult r) {
    const double secs = std::chrono::duration<double>(d.clock->Now() - start).count();
    (quorum ? d.send_quorum_seconds : d.send_local_seconds).Observe(secs);
    if (quorum) {
      if (r.status.ok()) {
        d.quorum_ok.fetch_add(1, std::memory_order_relaxed);
      } else if (r.status.code() == Code::kTimeout) {
        d.quorum_timeout.fetch_add(1, std::memory_order_relaxed);
      } else if (r.status.code() == Code::kUnavailable) {
        d.quorum_refused.fetch_add(1, std::memory_order_relaxed);
      }
    }
    done(std::move(r));
  };
  Status refusal;
  bool unreachable = false;
  {
    std::lock_guard lock(d.mu);
    if (d.stopped) {
      refusal = Status::Unavailable("shutting down");
    } else if (quorum && !d.QuorumReachable()) {
      unreachable = true;
    } else {
      ++d.appends_in_flight;
    }
  }
  if (unreachable) {
    // A retry of messages that `quorum` current holders already hold was a success: answer it
    // as one, whatever the failure detector sees now. Anything else is refused untouched.
    if (std::optional<SendResult> held = d.AlreadyHeld(msgs)) {
      done(std::move(*held));
      return;
    }
    refusal = Status::Unavailable(kQuorumNotAchieved);
  }
  if (!refusal.ok()) {
    SendResult res;
    res.status = std::move(refusal);
    done(std::move(res));
    return;
  }
  std::string first_msg_id = msgs.empty() ? std::string() : msgs.front().msg_id;
  // The write completes here or later on the store's commit thread; this thread goes on.
  d.log->AppendAsync(
      std::move(msgs),
      [&d, quorum, first_msg_id = std::move(first_msg_id), write_start = d.clock->Now(),
       done = std::move(done)](Result<std::vector<WriteOutcome>> written) mutable {
        d.log_write_seconds.Observe(
            std::chrono::duration<double>(d.clock->Now() - write_start).count());
        // Off the thread that led the group commit: it has other writers to wake.
        d.Post([&d, quorum, first_msg_id = std::move(first_msg_id), written = std::move(written),
                done = std::move(done)]() mutable {
          d.OnAppended(quorum, std::move(first_msg_id), std::move(written), std::move(done));
          std::lock_guard lock(d.mu);
          if (--d.appends_in_flight == 0) d.appends_done.notify_all();
        });
      });
}

std::optional<SendResult> Node::Impl::AlreadyHeld(const std::vector<Message>& msgs) {
  if (msgs.empty()) return std::nullopt;
  SendResult res;
  QuorumWaiter w;
  const std::string& own = log->stream_id();
  for (const Message& m : msgs) {
    Result<std::optional<Message>> stored = log->FindByMsgId(m.msg_id);
    if (!stored.ok() || !stored->has_value()) return std::nullopt;
    const Message& s = **stored;
    res.outcomes.push_back(
        WriteOutcome{WriteOutcome::Kind::kDuplicate, s.seq, s.origin, s.origin_seq, 0});
    if (s.origin == own) {
      w.own_needed = std::max(w.own_needed, s.origin_seq);
    } else {
      w.foreign_needed.emplace_back(s.origin, s.origin_seq);
    }
  }
  std::lock_guard lock(mu);
  if (!Satisfied(w)) return std::nullopt;
  return res;
}

void Node::Impl::OnAppended(bool quorum, std::string first_msg_id,
                            Result<std::vector<WriteOutcome>> written,
                            std::function<void(SendResult)> done) {
  Impl& d = *this;
  SendResult res;
  if (!written.ok()) {
    res.status = written.status();
    done(std::move(res));
    return;
  }
  res.outcomes = std::move(written.value());
  d.CountOutcomes(Impl::kClient, res.outcomes);

  auto waiter = std::make_shared<QuorumWaiter>();
  waiter->first_msg_id = std::move(first_msg_id);
  const std::string& own = d.log->stream_id();
  for (const WriteOutcome& o : res.outcomes) {
    if (o.origin == own) {
      waiter->own_needed = std::max(waiter->own_needed, o.origin_seq);
    } else {
      waiter->foreign_needed.emplace_back(o.origin, o.origin_seq);
    }
  }
  Actions a;
  {
    std::lock_guard lock(d.mu);
    MonoTime now = d.clock->Now();
    if (!quorum || d.Satisfied(*waiter)) {
      a.completions.emplace_back(std::move(done), std::move(res));
    } else if (d.stopped) {
      res.status = Status::Unavailable("shutting down");
      a.completions.emplace_back(std::move(done), std::move(res));
    } else {
      waiter->deadline = now + options.quorum_timeout;
      waiter->result = std::move(res);
      waiter->done = std::move(done);
      d.waiters.push_back(std::move(waiter));
      a.wake = true;
    }
    d.CollectDue(now, &a);
  }
  d.Run(std::move(a));
}

Result<ReplicateResult> Node::Replicate(std::vector<Message> msgs) {
  Impl& d = *impl_;
  std::string origin;
  for (const Message& m : msgs) {
    if (!m.origin.empty()) {
      origin = m.origin;
      break;
    }
  }
  Result<std::vector<WriteOutcome>> written = d.log->Apply(std::move(msgs));
  if (!written.ok()) return written.status();
  ReplicateResult res;
  res.outcomes = std::move(written.value());
  d.CountOutcomes(Impl::kReplicate, res.outcomes);
  bool adopted = false;
  uint64_t first_conflict = 0;  // origin_seq of the first conflicting position of `origin`
  for (const WriteOutcome& o : res.outcomes) {
    if (o.kind == WriteOutcome::Kind::kGap) res.gap = true;
    if (o.kind == WriteOutcome::Kind::kConflict) {
      res.conflict = true;
      if (o.origin == origin && (first_conflict == 0 || o.origin_seq < first_conflict)) {
        first_conflict = o.origin_seq;
      }
    }
    if (o.kind == WriteOutcome::Kind::kAppended && o.origin == d.log->stream_id()) adopted = true;
  }
  res.high_water = d.log->HighWater(origin.empty() ? d.log->stream_id() : origin);
  // A conflict: the sender's stream is held as it wrote it only up to the position before.
  if (first_conflict > 0) res.high_water = std::min(res.high_water, first_conflict - 1);
  if (res.conflict) d.conflicts.fetch_add(1, std::memory_order_relaxed);
  if (adopted) {
    // Messages without an origin became our own: ship them like a /send.
    Actions a;
    {
      std::lock_guard lock(d.mu);
      d.CollectDue(d.clock->Now(), &a);
    }
    d.Run(std::move(a));
  }
  return res;
}

// Both pages read at most `limit` entries and about batch_bytes of payload (at least one entry),
// so a page stays bounded in memory; `more` compares where the page ended with the end of the
// log (or of the stream) as it was when the page began.
Result<SyncPage> Node::Sync(uint64_t since, size_t limit,
                           const std::map<std::string, uint64_t>& have) {
  Impl& d = *impl_;
  SyncPage page;
  page.stream = d.log->stream_id();
  page.last_seq = d.log->LastSeq();
  page.next = since;
  ScanOptions scan;
  scan.after = since;
  const size_t max_visits = limit > SIZE_MAX / kSyncScanFactor ? SIZE_MAX : limit * kSyncScanFactor;
  size_t visits = 0;
  size_t bytes = 0;
  Status s = d.log->Scan(scan, [&](const Message& m) {
    if (page.messages.size() >= limit || visits >= max_visits) return false;
    if (auto it = have.find(m.origin); it != have.end() && m.origin_seq <= it->second) {
      ++visits;
      page.next = m.seq;  // the puller holds it
      return true;
    }
    if (!page.messages.empty() && bytes + m.payload.size() > options_.batch_bytes) return false;
    ++visits;
    bytes += m.payload.size();
    page.next = m.seq;
    page.messages.push_back(m);
    return true;
  });
  if (!s.ok()) return s;
  page.more = page.next < page.last_seq;
  return page;
}

Result<SyncPage> Node::SyncStream(const std::string& origin, uint64_t since, size_t limit) {
  Impl& d = *impl_;
  SyncPage page;
  page.stream = d.log->stream_id();
  page.last_seq = d.log->LastSeq();
  const uint64_t high_water = d.log->HighWater(origin);
  Result<std::vector<Message>> msgs = d.log->ReadOrigin(origin, since, limit, options_.batch_bytes);
  if (!msgs.ok()) return msgs.status();
  page.messages = std::move(msgs.value());
  page.more =
      (page.messages.empty() ? since : page.messages.back().origin_seq) < high_water;
  return page;
}

const std::string& Node::stream_id() const { return impl_->log->stream_id(); }

HeartbeatReply Node::Heartbeat() const {
  HeartbeatReply r;
  r.node_id = options_.id;
  r.time = impl_->clock->WallSeconds();
  r.stream = impl_->log->stream_id();
  r.high_waters = impl_->log->HighWaters();
  r.max_request_bytes = MaxRequestBytes(options_);
  return r;
}

NodeStatus Node::GetStatus() const {
  Impl& d = *impl_;
  NodeStatus st;
  st.node_id = options_.id;
  st.stream = d.log->stream_id();
  st.mode = options_.mode;
  st.quorum = options_.quorum;
  st.last_seq = d.log->LastSeq();
  st.own_high_water = d.log->HighWater(st.stream);
  st.write_health = d.log->WriteHealth();
  {
    std::lock_guard lock(d.mu);
    MonoTime now = d.clock->Now();
    for (PeerState& p : d.peers) {
      d.UpdateLiveness(p, now);
      PeerStatus ps;
      ps.url = p.url;
      ps.alive = p.liveness == Liveness::kAlive;
      ps.last_ok = p.last_ok_wall;
      ps.consecutive_failures = p.consecutive_failures;
      // What the peer's current incarnation acknowledged (0 while that is not known).
      ps.push_cursor = d.HoldsOwn(p, p.push_cursor) ? p.push_cursor : 0;
      ps.stream = p.stream;
      ps.push_problem = p.push_problem;
      st.peers.push_back(std::move(ps));
    }
  }
  const double wall = d.clock->WallSeconds();
  for (PeerStatus& ps : st.peers) {
    ps.pull_cursor = d.log->GetPullCursor(ps.url);
    if (ps.push_cursor >= st.own_high_water) continue;
    ps.lag_messages = st.own_high_water - ps.push_cursor;
    Result<std::vector<Message>> oldest = d.log->ReadOrigin(st.stream, ps.push_cursor, 1, 0);
    if (oldest.ok() && !oldest->empty()) {
      ps.lag_seconds = std::max(0.0, wall - oldest->front().ts);
    }
  }
  return st;
}

}  // namespace dsm
