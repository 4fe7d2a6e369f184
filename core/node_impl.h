// Node::Impl: the replication core's state and the handlers that change it, shared by the files
// that implement it, one concern each (NuRaft's handle_*.cxx split):
//   node.cc              the Node API: start and stop, serving /replicate, /sync and /heartbeat,
//                        status and metrics, and the scheduler (CollectDue, NextDeadline, Run);
//   failure_detector.cc  liveness of each peer, its incarnation (stream id), its heartbeats;
//   push.cc              the push replicator of this node's own stream, one per peer;
//   pull.cc              catch-up pulls from each peer's log and the repair of gaps;
//   quorum.cc            client writes and their quorum: who holds what, waiters, 503 and 504;
//   retention.cc         trimming the oldest messages once every peer holds them;
//   cluster.cc           membership: changes, merging what peers say, learners, GET /cluster.
// Internal to core/: nothing outside includes it.
//
// Threads: Impl is a monitor. `mu` guards the per-peer state, the quorum waiters and the pending
// events; the log, the transport and the clock are called without it. Handlers decide under the
// lock what to do and return it as Actions, which Run() carries out after releasing the lock
// (requests to peers, answers to clients, cursor writes). Peer answers, log completions of client
// writes and timers (Tick) arrive through Post() on the runtime's replication thread, which makes
// every replication decision. HTTP server threads only read the state (Send's up-front 503 check,
// GetStatus) and hand work to the log (Send's append, Replicate's apply, Sync's reads); the
// storage executor reads push batches that are no longer in memory (and records them in the
// window) and applies pulled pages, whose outcomes go back to the replication thread.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/metrics.h"
#include "common/thread_annotations.h"
#include "core/node.h"
#include "dsm/membership.h"

namespace dsm {

enum class Liveness { kUnknown, kAlive, kDead };

// One push batch in flight to a peer (PeerState::push_window).
struct PushInFlight {
  uint64_t id = 0;
  uint64_t epoch = 0;   // PeerState::push_epoch when it was sent
  uint64_t from = 0;    // it carried origin_seq from + 1 ...
  uint64_t last = 0;    // ... to last
  size_t messages = 0;
  uint64_t skip_through = 0;  // > 0: it told the peer to skip from + 1 .. this (trimmed here)
  size_t bytes = 0;     // encoded request bytes (an upper bound)
  bool first = false;   // nothing of its epoch was in flight before it when it was sent
  // Cut by bytes (the request limit, or about batch_bytes of payload) with more positions behind:
  // a backlog of large messages, whose batches are full before batch_messages.
  bool full_by_bytes = false;
  bool answered = false;
  Result<ReplicateReply> reply = Status::Unavailable("no answer yet");
};

// A read of one origin stream from a peer (POST /sync {"origin":...}) to fill what this node
// lacks of it after `since`. `skip_through` > 0: read because a skip of positions trimmed up to
// there waits for what the peer may hold (SkipUnheld).
struct StreamRepair {
  std::string origin;
  uint64_t since = 0;
  uint64_t skip_through = 0;
};

// How far a skip of trimmed positions went (Node::Impl::SkipUnheld).
struct SkipOutcome {
  uint64_t skipped = 0;  // positions skipped...
  uint64_t through = 0;  // ...up to this one
};

// One peer as this node sees it: failure detector, push replicator and catch-up puller state.
struct PeerState {
  size_t index = 0;
  std::string url;

  // Membership (cluster.cc). A peer that is no longer a member (or turned out to be this node)
  // keeps its index and is never called again; a learner is replicated with and counted in no
  // quorum. A peer added by a change gets no push or pull before its first heartbeat answer,
  // which may show that the URL is this node.
  bool member = true;
  bool voter = true;
  bool self = false;
  bool added = false;
  bool active() const { return member && !self; }
  bool counts() const { return active() && voter; }
  // Pushes and pulls go to an active peer once it can be told apart from this node.
  friend bool Replicating(const PeerState& p) { return p.active() && !(p.added && p.stream.empty()); }

  // Failure detector. Dead once heartbeat_timeout passed since the last success (or, when there
  // was none, since Start or since a membership change added it: known_since).
  Liveness liveness = Liveness::kUnknown;
  bool ever_ok = false;
  MonoTime last_ok{};
  MonoTime known_since{};
  double last_ok_wall = 0;
  int consecutive_failures = 0;
  bool heartbeat_in_flight = false;
  MonoTime next_heartbeat{};
  std::optional<MonoTime> heard_from;  // its last heartbeat that HeardFrom acted on
  std::string stream;                           // the peer's own stream, from its heartbeat
  std::vector<std::string> former_streams;      // streams it had before (the last 16), never
                                                // current again
  std::map<std::string, uint64_t> high_waters;  // what it held at its last heartbeat

  // Push replicator of our own stream.
  uint64_t push_cursor = 0;  // our origin_seq the peer acknowledged...
  // ...and which incarnation of the peer did: the persisted one until the peer speaks, then
  // always `stream` (NoteStream restarts the cursor when they differ).
  std::string push_stream;
  // The window: batches sent and not yet taken into the cursor, oldest first. Answers may
  // arrive in any order; they are taken in the order the batches were sent. A failure (or a new
  // incarnation, or a gap) rewinds: push_sent goes back to the cursor and the epoch changes, so
  // the batches still in flight count for nothing when they return (they still occupy the window
  // until they do, so that it bounds what the peer is sent).
  std::deque<PushInFlight> push_window;
  uint64_t push_sent = 0;    // the last origin_seq sent in the current epoch (>= push_cursor)
  uint64_t push_epoch = 0;   // changed by every rewind
  uint64_t push_next_id = 0;
  bool push_reading = false;  // the next batch is being read from the log
  MonoTime push_not_before{};
  Millis push_backoff{0};
  // A push is at most this many messages and this many request bytes: the peer's own limit
  // (from its heartbeat) and halved by each 413, grown back by successes.
  uint64_t peer_max_request = 0;  // 0 = not known yet: our own limit is assumed
  size_t push_max_messages = 0;
  size_t push_max_bytes = 0;
  // Why pushes to this peer make no progress, by name ("" when they do). Shown in /status.
  std::string push_problem;
  // Why pulls from this peer make no progress (a refused or unreadable answer, a failed apply),
  // "" when they do. Shown in /status.
  std::string pull_problem;
  MonoTime last_error_logged{};

  // Catch-up puller from the peer's log: a chain of pages, pipelined (the next page is requested
  // while the last is written). A page is written only if it starts at the durable pull cursor;
  // a chain that breaks (a failure, a gap to repair, an unusable answer) changes the epoch, and
  // its pages still out count for nothing when they return.
  int pull_pages = 0;           // pages requested and not through FinishSync yet
  bool repairing = false;       // a repair (SyncStream pages) is out
  uint64_t pull_epoch = 0;
  // Pages of a chain or a repair are out: no new chain starts.
  bool pull_in_flight() const { return pull_pages > 0 || repairing; }
  uint64_t peer_last_seq = 0;    // the peer's last seq, from its last /sync answer
  uint64_t catchup_applied = 0;  // messages applied in the current run of pages
  MonoTime catchup_started{};    // when the current run of pages began
  MonoTime catchup_logged{};     // last progress line

  // Counters for /metrics.
  uint64_t pushed = 0;         // our messages the peer acknowledged
  uint64_t push_errors = 0;    // failed pushes
  // The last push answer was a failure to reach the peer (unavailable, timed out): its backoff
  // ends early when the peer calls (HeardFrom). Other refusals keep theirs.
  bool push_unreachable = false;
  uint64_t pull_errors = 0;    // failed pulls
  uint64_t pulled = 0;         // messages applied from the peer's log
  uint64_t conflicts = 0;      // our messages the peer holds another msg_id for (its 409)
  // From sending a push batch to its answer (observed on the transport's thread).
  std::shared_ptr<Histogram> push_round_trip = std::make_shared<Histogram>();
  uint64_t too_large = 0;      // pushes the peer refused as too large (its 413)
  uint64_t bad_replies = 0;    // answers that broke the protocol's rules (ignored)
  uint64_t read_errors = 0;    // failed reads of our log for a push
  uint64_t apply_errors = 0;   // failed writes of pulled or repaired messages
  uint64_t cursor_errors = 0;  // failed writes of the push cursor
  uint64_t push_rewinds = 0;   // RewindPush calls
  // Retention: positions of our stream the peer lacked when they were trimmed here (it was told
  // to skip them), and positions of other streams this node skipped because the peer had
  // trimmed them before this node got them.
  uint64_t push_trimmed = 0;
  uint64_t trimmed_skipped = 0;
  // Per origin stream, how far the peer showed it cannot supply positions this node lacks
  // (SkipUnheld): its own trim (the trimmed_through of its push or stream page); the positions
  // before the first message of a stream page read from this node's high water; or, when such a
  // page held nothing, the trimmed positions it was read for (the peer had none of them, and
  // their origin had trimmed them already: it can only get them from another node).
  std::map<std::string, uint64_t> lacks_through;
  // A stream to read from the peer because a skip waits for it (SkipUnheld); read once the peer
  // is alive and no pull or repair of it is out.
  std::optional<StreamRepair> repair_wanted;
  bool repair_due() const {
    return repair_wanted && liveness == Liveness::kAlive && !pull_in_flight();
  }
  // Streams the peer's heartbeat showed further than this node held when the last pull chain
  // reached the end of the peer's log, with how far this node held them then (StuckStream).
  std::map<std::string, uint64_t> behind_at_chain_end;
  bool pull_wanted = true;     // pull as soon as possible (start-up, peer came back, more pages)
  bool pull_again = false;     // a heartbeat showed more while a pull was in flight
  MonoTime next_pull{};        // anti-entropy
};

// A /send awaiting its quorum. Satisfied when `quorum` nodes hold our own stream up to
// `own_needed` and each (origin, origin_seq) in `foreign_needed`.
struct QuorumWaiter {
  std::string first_msg_id;  // named in the timeout answer
  uint64_t own_needed = 0;
  std::vector<std::pair<std::string, uint64_t>> foreign_needed;
  MonoTime deadline{};
  MonoTime durable_at{};  // when the local write completed (for the quorum_wait stage)
  SendResult result;
  std::function<void(SendResult)> done;
};

// Work decided under the lock and carried out after releasing it.
struct Actions {
  std::vector<size_t> heartbeats;
  struct Push {
    size_t peer;
    uint64_t from;  // the last position sent (push_sent)
    uint64_t epoch;  // the peer's push_epoch when it was decided
    size_t max_messages;
    size_t max_bytes;  // request bytes
  };
  std::vector<Push> pushes;
  std::vector<std::pair<size_t, PushCursor>> persist_push;
  struct Pull {
    size_t peer;
    PullCursor cursor;  // the page starts after it
    uint64_t epoch;     // the peer's pull_epoch when it was decided
  };
  std::vector<Pull> pulls;
  struct Repair {
    size_t peer;
    StreamRepair what;
  };
  std::vector<Repair> repairs;
  std::vector<std::pair<std::function<void(SendResult)>, SendResult>> completions;
  std::vector<std::pair<EventLevel, std::string>> events;
  bool retention = false;  // run a retention step (retention.cc)
  bool persist_membership = false;  // write the membership (cluster.cc)
  std::optional<Membership> membership;  // sent with the heartbeats (once a change was made)
  bool wake = false;
};

// What one pulled page did, carried from the storage executor back to the owner thread.
struct PullOutcome {
  uint64_t epoch = 0;       // of the chain the page belongs to
  bool stale = false;       // it did not start at the durable cursor: not written
  Status status;            // of the request: not OK when the peer could not be read
  std::string bad;          // why the answer was not believed ("" when it was)
  bool new_stream = false;  // the peer's data directory was replaced: the pull starts over
  std::string stream;       // the peer's stream id
  uint64_t last_seq = 0;    // the peer's last seq
  uint64_t at = 0;          // where the page ended in the peer's seq space
  bool more = false;
  bool applied_ok = true;
  std::string apply_error;
  uint64_t applied = 0;
  uint64_t conflicts = 0;
  std::optional<std::pair<std::string, uint64_t>> repair;  // a gap: origin, repair from
};

// What one page of a repair (SyncStream) did.
struct RepairOutcome {
  Status status;
  std::string origin;
  uint64_t skip_through = 0;  // StreamRepair::skip_through of the read
  uint64_t last = 0;  // how far this node holds the stream after the page
  bool more = false;
  bool progressed = false;
  std::string error;
  uint64_t skipped = 0;          // positions skipped because the peer had trimmed them...
  uint64_t trimmed_through = 0;  // ...up to this one
};

struct Node::Impl {
  Impl(const NodeOptions& o, LogStore* l, Transport* t, Clock* c)
      : options(o), log(l), transport(t), clock(c) {}

  const NodeOptions& options;
  LogStore* const log;
  Transport* const transport;
  Clock* const clock;

  mutable Mutex mu;
  bool started GUARDED_BY(mu) = false;
  bool stopped GUARDED_BY(mu) = false;
  MonoTime started_at GUARDED_BY(mu){};
  // A deque: adding a peer (a membership change) leaves references to the others valid.
  std::deque<PeerState> peers GUARDED_BY(mu);
  std::list<std::shared_ptr<QuorumWaiter>> waiters GUARDED_BY(mu);
  std::function<void()> wakeup GUARDED_BY(mu);
  std::function<void(EventLevel, const std::string&)> event_log GUARDED_BY(mu);
  std::vector<std::pair<EventLevel, std::string>> pending_events GUARDED_BY(mu);
  // Writes handed to LogStore::AppendAsync (client writes) or ApplyAsync (pushed batches) whose
  // completion has not finished yet; the destructor waits for them (their completions use this
  // Impl).
  int appends_in_flight GUARDED_BY(mu) = 0;
  CondVar appends_done;  // notified when appends_in_flight drops to 0 (such a completion)
  // Counts one of them down when destroyed: the last thing its completion does, however it ends.
  struct WriteInFlight {
    Impl& d;
    ~WriteInFlight() {
      MutexLock lock(&d.mu);
      if (--d.appends_in_flight == 0) d.appends_done.NotifyAll();
    }
  };

  // Metrics: atomics and histograms, updated without mu.
  enum Source { kClient, kReplicate, kPull, kSources };
  std::atomic<uint64_t> appended[kSources] = {};
  std::atomic<uint64_t> deduplicated[kSources] = {};
  std::atomic<uint64_t> quorum_ok{0}, quorum_refused{0}, quorum_timeout{0};
  std::atomic<uint64_t> conflicts{0};  // /replicate batches refused for a conflict
  Histogram send_local_seconds, send_quorum_seconds, log_write_seconds;
  // The stages of a /send after its log write (dsm_send_stage_duration_seconds): from the log's
  // completion to the replication thread taking it, and from there to its quorum.
  Histogram core_queue_seconds, quorum_wait_seconds;
  Histogram replicate_write_seconds;  // the log write of a /replicate batch this node received

  // Membership (cluster.cc). `membership` holds an entry per peer URL (and this node's own once
  // a change named it); `self_url` is this node's URL once it learned it.
  Membership membership GUARDED_BY(mu);
  std::string self_url GUARDED_BY(mu);
  // Serializes membership changes (AddMember, RemoveMember) and the writes of the membership.
  Mutex change_mu ACQUIRED_BEFORE(mu);

  // Retention (retention.cc). One step at a time, on the storage executor.
  bool retention_running GUARDED_BY(mu) = false;
  MonoTime next_retention GUARDED_BY(mu){};
  // Why the last step stopped short of what the limits ask for ("" when it did not).
  std::string retention_waiting GUARDED_BY(mu);
  std::atomic<uint64_t> retention_trimmed{0}, retention_trimmed_bytes{0}, retention_forced{0},
      retention_steps{0}, retention_errors{0};
  // Positions skipped because a node that is not a peer trimmed them (pushes name their stream).
  std::atomic<uint64_t> skipped_unattributed{0};

  // Origin streams whose pushes this node applied lately (a /replicate without a gap or a
  // conflict), with when. Pulled pages are written only up to their first position the pushes
  // are bringing (FirstPushedPosition).
  std::map<std::string, MonoTime, std::less<>> pushed_streams GUARDED_BY(mu);

  // The rest of a client write once the log has it (or refused it): count it, then answer now
  // or register its quorum wait.
  void OnAppended(bool quorum, std::string first_msg_id, Result<std::vector<WriteOutcome>> written,
                  std::function<void(SendResult)> done) LOCKS_EXCLUDED(mu);

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
  static uint64_t next_cursor_seq(const Result<SyncReply>& r, const PullCursor& cursor);

  // A failed pull or repair request: named in pull_problem unless the peer is just unreachable.
  void NotePullFailure(PeerState& p, MonoTime now, const Status& s) EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Tracks a run of pull pages from `p` and logs the progress of long catch-ups.
  void NoteCatchUp(PeerState& p, MonoTime now, uint64_t applied, uint64_t peer_last_seq,
                   uint64_t at, bool more) EXCLUSIVE_LOCKS_REQUIRED(mu);

  void Event(EventLevel level, std::string text) EXCLUSIVE_LOCKS_REQUIRED(mu) {
    pending_events.emplace_back(level, std::move(text));
  }

  // ---- derived state (REQUIRES: mu held) ----

  // Whether `p`'s current incarnation acknowledged our stream up to `origin_seq`: a push cursor
  // counts only once the peer has told this process its stream id and the cursor was
  // acknowledged by that very incarnation (a wiped peer holds nothing it acknowledged before).
  bool HoldsOwn(const PeerState& p, uint64_t origin_seq) const EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Nodes (this one included) known to hold our stream up to `origin_seq`.
  int OwnHolders(uint64_t origin_seq) const EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Nodes (this one included) whose current incarnation said, in its last heartbeat, that it
  // holds stream `origin` up to `origin_seq`.
  int ForeignHolders(const std::string& origin, uint64_t origin_seq) const
      EXCLUSIVE_LOCKS_REQUIRED(mu);

  // The peer's own stream as it just told us (a heartbeat or a push answer). A new one means
  // its data directory was replaced: what it acknowledged before is gone, so the push cursor
  // restarts from what this incarnation acknowledges. REQUIRES: mu held.
  // Returns false (and changes nothing) when `stream` is a former incarnation of the peer.
  bool NoteStream(PeerState& p, const std::string& stream, MonoTime now, Actions* a)
      EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Logs a replication error of `p` unless one was logged within kErrorLogInterval (every error
  // is counted by the caller). REQUIRES: mu held.
  void ErrorEvent(PeerState& p, MonoTime now, std::string text) EXCLUSIVE_LOCKS_REQUIRED(mu);

  bool Satisfied(const QuorumWaiter& w) const EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Refuse a quorum write up front only when the failure detector already knows that fewer than
  // `quorum` nodes are reachable; unknown peers (not heard from yet) get the benefit of the doubt.
  bool QuorumReachable() const EXCLUSIVE_LOCKS_REQUIRED(mu);

  void CollectSatisfied(Actions* a) EXCLUSIVE_LOCKS_REQUIRED(mu);

  void UpdateLiveness(PeerState& p, MonoTime now) EXCLUSIVE_LOCKS_REQUIRED(mu);

  void MarkSuccess(PeerState& p, MonoTime now) EXCLUSIVE_LOCKS_REQUIRED(mu);

  void MarkFailure(PeerState& p, MonoTime now) EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Node::Heartbeat's `caller_stream`: the peer whose stream it is called this node.
  void HeardFrom(const std::string& stream) LOCKS_EXCLUDED(mu);

  // Decides which requests are due now. Marks them in flight.
  void CollectDue(MonoTime now, Actions* a) EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Node::Tick: does everything due now.
  void Tick() LOCKS_EXCLUDED(mu);

  void CollectDueWork(MonoTime now, Actions* a) EXCLUSIVE_LOCKS_REQUIRED(mu);

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
  // Runs `task` (a log read or write for replication) on the storage executor
  // (SetStorageExecutor), or here when there is none.
  void Store(std::function<void()> task) {
    if (storage_executor) {
      storage_executor(std::move(task));
    } else {
      task();
    }
  }
  // Set before Start(), read-only afterwards.
  std::function<void(std::function<void()>)> storage_executor;

  // Event handlers and the executor of decided work. REQUIRES: mu not held.
  void Run(Actions actions) LOCKS_EXCLUDED(mu);
  // Takes the answer (`ok` or not) of one request to `peer`: under the lock, counts it toward the
  // peer's liveness, lets `update(peer_state, now, actions)` record what the answer changed,
  // collects what became due; then runs it all outside the lock. Nothing once stopped.
  template <typename Update>
  void AfterExchange(size_t peer, bool ok, Update&& update) LOCKS_EXCLUDED(mu);
  // Reads the batch `push` decided (from memory here, else from disk on the storage executor),
  // then SendPush.
  void StartPush(const Actions::Push& push) LOCKS_EXCLUDED(mu);
  // `trimmed_through` > 0: the positions after push.from up to it were trimmed here; the batch
  // (possibly empty) follows them and tells the peer to skip them.
  void SendPush(const Actions::Push& push, Result<std::vector<Message>> batch,
                uint64_t trimmed_through) LOCKS_EXCLUDED(mu);
  // The answer to the push batch `id` of the window.
  void OnPushed(size_t peer, uint64_t id, Result<ReplicateReply> r) LOCKS_EXCLUDED(mu);
  // Whether another push batch may be read and sent to `p` now.
  bool PushDue(const PeerState& p, uint64_t own_hw, MonoTime now) const
      EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Takes the answered batches at the front of `p`'s window into its cursor, in the order they
  // were sent.
  void TakePushAnswers(PeerState& p, MonoTime now, Actions& a) EXCLUSIVE_LOCKS_REQUIRED(mu);
  // What one answered batch says: moves the cursor, or rewinds the window.
  void TakePushAnswer(PeerState& p, const PushInFlight& b, MonoTime now)
      EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Forgets what is in flight to `p`: the next batch starts after the cursor, and the answers of
  // the batches in flight count for nothing.
  void RewindPush(PeerState& p) EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ++p.push_epoch;
    ++p.push_rewinds;
    p.push_sent = p.push_cursor;
  }
  void OnHeartbeat(size_t peer, Result<HeartbeatReply> r) LOCKS_EXCLUDED(mu);
  // Requests the page of `peer`'s log after `cursor`, for the chain of `epoch`.
  void SendPull(size_t peer, PullCursor cursor, uint64_t epoch) LOCKS_EXCLUDED(mu);
  void OnSync(size_t peer, PullCursor cursor, uint64_t epoch, Result<SyncReply> r)
      LOCKS_EXCLUDED(mu);
  void FinishSync(size_t peer, PullOutcome o) LOCKS_EXCLUDED(mu);
  void OnRepair(size_t peer, StreamRepair what, Result<SyncReply> r) LOCKS_EXCLUDED(mu);
  void FinishRepair(size_t peer, RepairOutcome o) LOCKS_EXCLUDED(mu);
  // At the end of a pull chain: a stream (other than the peer's own) that the peer's heartbeat
  // shows further than this node holds, and that made no progress since the end of the last
  // chain; with where to repair it from. Records what is behind for the next chain's end.
  std::optional<std::pair<std::string, uint64_t>> StuckStream(PeerState& p)
      EXCLUSIVE_LOCKS_REQUIRED(mu);
  // When every message of `msgs` is stored already, their outcomes (duplicates, as a write of
  // them would answer); nullopt otherwise.
  std::optional<std::vector<WriteOutcome>> AllStored(const std::vector<Message>& msgs)
      LOCKS_EXCLUDED(mu);

  // How far this node holds each stream, for a pull (the peer leaves out what it covers) and a
  // heartbeat answer. At most 1024 of them (those held furthest), so both stay bounded however
  // many streams wiped nodes left behind; entries of the others are just sent again and
  // deduplicated.
  std::map<std::string, uint64_t> HaveMap() const;
  // The first entry of a pulled page that the pushes are bringing (see pull.cc), or msgs.size().
  size_t FirstPushedPosition(const std::vector<Message>& msgs) const LOCKS_EXCLUDED(mu);
  // Records that a push of `origin` was applied without a gap or a conflict.
  void NotePushed(const std::string& origin) LOCKS_EXCLUDED(mu);
  // Whether `origin` arrives by push: one was applied within the heartbeat timeout.
  bool ArrivesByPush(std::string_view origin, MonoTime now) const EXCLUSIVE_LOCKS_REQUIRED(mu);

  MonoTime NextDeadline() const EXCLUSIVE_LOCKS_REQUIRED(mu);

  // ---- cluster.cc ----
  // The initial membership: --peers, or what was persisted (which wins; a disagreeing --peers is
  // reported in one line).
  void LoadMembership() LOCKS_EXCLUDED(mu);
  // Brings the peers in line with `membership`: adds peers for new members, stops calling those
  // that left, notes roles. Persists the membership (on the storage executor) when `persist`.
  void ApplyMembership(MonoTime now, bool persist, Actions* a) EXCLUSIVE_LOCKS_REQUIRED(mu);
  // This node's own entry, nullptr while it does not know which one that is.
  const MemberEntry* SelfEntry() const EXCLUSIVE_LOCKS_REQUIRED(mu);
  MemberRole SelfRole() const EXCLUSIVE_LOCKS_REQUIRED(mu);
  // A learner that caught up with every live member promotes itself to voter.
  void MaybePromote(Actions* a) EXCLUSIVE_LOCKS_REQUIRED(mu);
  // A peer at `url` with index `index`, its push limits from the options.
  PeerState NewPeer(size_t index, const std::string& url) const;
  // Whether `url` names this node (its URL as a member told it, or its --host and --port).
  bool IsOwnUrl(const std::string& url) const EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Sets `p` up to be replicated with from `now`: its persisted push cursor, its timers due.
  void StartPeer(PeerState& p, MonoTime now, uint64_t own_hw) EXCLUSIVE_LOCKS_REQUIRED(mu);
  std::string PeerUrl(size_t peer) const LOCKS_EXCLUDED(mu) {
    MutexLock lock(&mu);
    return peers[peer].url;
  }
  // What a heartbeat answer of `p` says about membership: the URL is this node; the peer's id;
  // its membership, merged into ours.
  void NoteMembership(PeerState& p, const HeartbeatReply& r, MonoTime now, Actions* a)
      EXCLUSIVE_LOCKS_REQUIRED(mu);
  // A membership change made here: `decide` checks it against a copy of the membership and
  // makes it there (saying what it did in *what), or refuses it; the copy is stored (fsync), and
  // only then merged into the membership in effect. Nothing changes when it is refused or cannot
  // be stored.
  using Decide = std::function<Result<MemberStatus>(Membership* candidate, std::string* what)>;
  Result<MemberStatus> ChangeMembership(const Decide& decide) LOCKS_EXCLUDED(mu, change_mu);
  // A membership a peer sent with its heartbeat: merged into ours.
  void HearMembership(const Membership& m) LOCKS_EXCLUDED(mu);
  // Writes the current membership (fsynced): the latest one, whoever asked first.
  Status PersistMembership() EXCLUSIVE_LOCKS_REQUIRED(change_mu) LOCKS_EXCLUDED(mu);
  // Messages this node holds that `p` did not hold at its last heartbeat.
  uint64_t LagOf(const PeerState& p, const std::map<std::string, uint64_t>& mine) const
      EXCLUSIVE_LOCKS_REQUIRED(mu);

  // ---- retention.cc ----
  // Whether a retention step is due at `now` (marks it running).
  bool RetentionDue(MonoTime now) EXCLUSIVE_LOCKS_REQUIRED(mu);
  // One step: trims what the limits and the peers allow, at most retention_step_records, then
  // forgets old msg_ids. Runs on the storage executor.
  void RetentionStep() LOCKS_EXCLUDED(mu);
  // Skips the positions of `origin` after this node's high water up to `through`, which a
  // sender's retention trimmed (a push or a stream page saying so), as far as no peer may still
  // hold them. Any peer that is not dead may, up to where it showed it cannot supply the stream
  // (lacks_through): the skip stops there, and that peer is asked for the stream (a repair),
  // unless it was not heard from since the start (then the skip just waits: it answers soon or
  // is declared dead). Heartbeat high waters are not taken as evidence: one may be a heartbeat
  // interval old, and the positions can reach a peer and be trimmed at their origin within it.
  // A dead peer is not waited for: the skip may then cost messages only it holds. Fewer
  // positions than asked are skipped when the skip waits (LogStore::SkipTrimmed).
  Result<SkipOutcome> SkipUnheld(const std::string& origin, uint64_t through) LOCKS_EXCLUDED(mu);
  // Records that `p` cannot supply positions of `origin` up to `through` (lacks_through).
  void NoteLacks(PeerState& p, const std::string& origin, uint64_t through)
      EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Counts and logs `skipped` positions of `origin` up to `through` that this node skipped
  // because their holder had trimmed them.
  void NoteSkipped(const std::string& origin, uint64_t through, uint64_t skipped)
      LOCKS_EXCLUDED(mu);

  // ---- /replicate (node.cc) ----
  // Checks a pushed batch (one origin stream) and applies its skip of trimmed positions; returns
  // the batch's origin stream ("" for seed-style messages to adopt).
  Result<std::string> BeginReplicate(const std::vector<Message>& msgs, const PushSkip& skip)
      LOCKS_EXCLUDED(mu);
  // The answer to a batch of `origin` once its write (begun at `write_start`) is done. Takes mu
  // only briefly: it may run on the log's commit thread.
  Result<ReplicateResult> EndReplicate(const std::string& origin, const PushSkip& skip,
                                       MonoTime write_start,
                                       Result<std::vector<WriteOutcome>> written) LOCKS_EXCLUDED(mu);
};

template <typename Update>
void Node::Impl::AfterExchange(size_t peer, bool ok, Update&& update) {
  Actions a;
  {
    MutexLock lock(&mu);
    if (stopped) return;
    PeerState& p = peers[peer];
    const MonoTime now = clock->Now();
    if (!p.active()) {
      // A late answer of a member that left: its bookkeeping only.
    } else if (ok) {
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

}  // namespace dsm
