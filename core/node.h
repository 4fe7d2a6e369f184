// Node: the replication core of one dsm node. It owns the per-peer replicators (push of this
// node's own stream from durable cursors), the catch-up puller (/sync from each peer's seq space),
// the failure detector (heartbeats, with successful replication counting as liveness) and the
// quorum tracker (sync_quorum acks), and serves the peer-facing operations (/replicate, /sync).
//
// It is I/O-free and clock-injected: it talks to the log through LogStore, to peers through
// Transport, reads time from Clock, and starts no threads. The runtime (src/node) calls Tick()
// at NextDeadline() and whenever the wakeup callback fires, and hands transport and log
// completions to its replication thread (SetExecutor); HTTP handlers call in from their own
// threads.
//
// Thread safety: a monitor; every public method may be called concurrently from any thread.
// Completion callbacks (`done`) are never invoked with the internal lock held.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dsm/clock.h"
#include "dsm/log_store.h"
#include "dsm/options.h"
#include "dsm/status.h"
#include "dsm/transport.h"

namespace dsm {

class MetricsWriter;

enum class EventLevel { kInfo, kWarning };

// Per-request acknowledgement override of /send ("ack": "local" | "quorum").
enum class AckMode { kDefault, kLocal, kQuorum };

struct SendResult {
  // OK; Unavailable (quorum refused up front: nothing was written); Timeout (written, quorum not
  // reached in time: the message stays and keeps replicating); IOError (the log refused writes).
  Status status;
  std::vector<WriteOutcome> outcomes;  // one per message whenever the write happened
};

struct ReplicateResult {
  std::vector<WriteOutcome> outcomes;  // one per message, in order
  // For a batch of one origin stream: how far this node now holds that stream.
  uint64_t high_water = 0;
  bool gap = false;  // some message was refused as a gap (see outcomes); answer 409
  // Some message was refused as a conflict: another msg_id holds its position (answer 409).
  // Then high_water stops before the first conflicting position of the pushed stream.
  bool conflict = false;
};

struct SyncPage {
  std::string stream;  // this node's stream id
  std::vector<Message> messages;
  bool more = false;
  // This node's last seq: read when the page began, raised to the highest seq the page looked
  // at (appends may land meanwhile). Never the request's `since`, however far beyond the log.
  uint64_t last_seq = 0;
  uint64_t next = 0;  // how far the page looked: the next one starts after this seq
  // SyncStream: the positions after `since` up to this one are no longer held (trimmed); the
  // messages follow it. 0 = none.
  uint64_t trimmed_through = 0;
};

// A member's part in the cluster (include/dsm/membership.h).
enum class MemberRole { kVoter, kLearner, kRemoved };
const char* MemberRoleName(MemberRole role);  // "voter" | "learner" | "removed"

struct PeerStatus {
  std::string url;
  MemberRole role = MemberRole::kVoter;
  bool alive = false;
  double last_ok = 0;  // wall seconds of the last success, 0 = never
  int consecutive_failures = 0;
  uint64_t push_cursor = 0;   // our stream's origin_seq the peer acknowledged
  uint64_t lag_messages = 0;  // own messages not yet acknowledged by the peer
  double lag_seconds = 0;     // age of the oldest of those, 0 when none
  PullCursor pull_cursor;     // where we are in the peer's log
  std::string stream;         // the peer's current stream id, "" until it told us
  // Why pushes to the peer make no progress (a message too large for it, a conflict, a refusal),
  // "" when they do.
  std::string push_problem;
  // Why pulls from the peer make no progress (a refused or unreadable answer, a failed apply),
  // "" when they do.
  std::string pull_problem;
  // Retention: positions of other streams this node skipped because the peer had trimmed them,
  // and positions of our stream the peer lacked when this node trimmed them.
  uint64_t trimmed_skipped = 0;
  uint64_t push_trimmed = 0;
};

struct NodeStatus {
  std::string node_id;
  std::string stream;
  ReplicationMode mode = ReplicationMode::kAsync;
  int quorum = 0;
  uint64_t last_seq = 0;
  uint64_t own_high_water = 0;
  uint64_t first_seq = 1;  // the log's first seq: retention trimmed everything below it
  // Why retention waits although a limit is passed ("" when it does not wait).
  std::string retention_waiting;
  std::vector<PeerStatus> peers;  // the members this node replicates with, in the order it met them
  Status write_health;
  MemberRole role = MemberRole::kVoter;  // this node's own
  uint64_t membership_version = 0;       // 0 until a membership change
};

// GET /cluster: the members as this node sees them, itself first.
struct MemberStatus {
  std::string id;   // node id, "" until it answered a heartbeat
  std::string url;  // "" for this node until it learned its own URL
  MemberRole role = MemberRole::kVoter;
  bool self = false;
  bool alive = false;
  // Messages this node holds that the member did not hold at its last heartbeat (0 for this node;
  // for a member never heard from, everything this node holds).
  uint64_t lag = 0;
};

struct ClusterStatus {
  uint64_t version = 0;  // the membership version (0: no change was ever made)
  std::vector<MemberStatus> members;
};

class Node {
 public:
  // `log`, `transport` and `clock` must outlive the Node.
  Node(NodeOptions options, LogStore* log, Transport* transport, Clock* clock);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Begins replication: the first heartbeats and catch-up pulls are due at once.
  void Start();
  // Fails every pending quorum wait with Unavailable("shutting down") and issues no further
  // requests. Idempotent.
  void Stop();

  // A client write of validated messages (msg_id, sender, recipient, ts filled in). Appends them
  // (one group-committed write), then acknowledges according to the mode: async/local after the
  // fsync; quorum once `quorum` nodes hold each message or the quorum timeout passes. `done` is
  // called exactly once, on this thread or later on another one.
  void Send(std::vector<Message> msgs, AckMode ack, std::function<void(SendResult)> done);

  // Serving POST /replicate. Every message has the same origin (or none: seed-style messages,
  // adopted into this node's stream); otherwise InvalidArgument and nothing is written.
  // `skip` (a push of a sender whose retention trimmed positions this node lacks) is applied
  // first (LogStore::SkipTrimmed).
  Result<ReplicateResult> Replicate(std::vector<Message> msgs, const PushSkip& skip = {});
  // Replicate without waiting for the batch's write (LogStore::ApplyAsync): `done` is called
  // exactly once, on this thread or later on the thread that leads the batch's group commit
  // (the log's commit thread, or a thread waiting for its own write), where it must neither wait
  // for a write nor throw. (A skip, rare, is still written before this returns.)
  void ReplicateAsync(std::vector<Message> msgs, const PushSkip& skip,
                      std::function<void(Result<ReplicateResult>)> done);
  // Serving POST /sync: entries with seq > since, at most `limit`, leaving out those `have`
  // covers (origin_seq at or below the puller's high water of their origin). A page looks at no
  // more than kSyncScanFactor * limit entries.
  static constexpr size_t kSyncScanFactor = 16;
  Result<SyncPage> Sync(uint64_t since, size_t limit,
                        const std::map<std::string, uint64_t>& have = {});
  // Serving POST /sync with an "origin": positions of that stream with origin_seq > since.
  Result<SyncPage> SyncStream(const std::string& origin, uint64_t since, size_t limit);
  // Serving GET /heartbeat, or POST /heartbeat with the caller's membership (`from_peer`), which
  // this node merges into its own (include/dsm/membership.h). `caller_stream`: the stream id a
  // peer's heartbeat names as its own (header X-Dsm-Stream; empty when none). A peer heard from
  // so is running and reaches this node: a push to it that backs off after failing to reach it
  // at once, and it is sent a heartbeat at once if it is not known to be alive. It is not
  // counted alive for that: only this node's own exchanges with it say so (a one-way cut shows).
  HeartbeatReply Heartbeat(const Membership* from_peer = nullptr, std::string caller_stream = {});

  // Does everything due at clock->Now(): heartbeats, push retries, catch-up pulls, quorum
  // timeouts.
  void Tick();
  // When Tick() should run next.
  MonoTime NextDeadline() const;
  // `wakeup` is called (without locks held) when NextDeadline() may have moved earlier.
  void SetWakeup(std::function<void()> wakeup);
  // Where the answers of peers (transport completions) and of the log (AppendAsync completions)
  // are handled: `executor(task)` must run `task` soon, on a thread of its choosing that is
  // neither the transport's event loop nor the log's commit thread (the runtime's replication
  // thread), so fsyncing applies never delay heartbeats and a group commit's leader only wakes
  // its writers. Without one (tests, the simulation) they are handled where they arrive, which
  // only a log that completes its writes on the caller's thread allows: on RocksLogStore a
  // completion could then run Tick on the log's commit thread and wait there for a write that
  // only that thread leads.
  // REQUIRES: called before Start().
  void SetExecutor(std::function<void(std::function<void()>)> executor);
  // Where replication's own log work runs: reading a push batch, writing a pulled or repaired
  // page (with its fsync), writing a push cursor. `executor(task)` must run tasks in the order
  // given, on a thread that is not the one of SetExecutor, so a slow disk never holds up
  // heartbeats or peer answers. Without one they run where they are issued.
  // REQUIRES: called before Start().
  void SetStorageExecutor(std::function<void(std::function<void()>)> executor);

  NodeStatus GetStatus() const;

  // Membership changes (include/dsm/membership.h), answered once the new membership is durable.
  // `url` is normalized ("http://host:port"). Adds a learner; Conflict when it is a member
  // already, InvalidArgument when it is this node.
  Result<MemberStatus> AddMember(const std::string& url);
  // `id` is a member's node id or its URL. NotFound when no member has it; Conflict when it is
  // this node, or when a sync_quorum node would be left with fewer voters than its --quorum.
  Result<MemberStatus> RemoveMember(const std::string& id);
  ClusterStatus GetCluster() const;
  // This node's own stream id (its data directory's incarnation).
  const std::string& stream_id() const;

  // Appends the core's metrics in the Prometheus text format (docs/operations.md lists them).
  void WriteMetrics(MetricsWriter& w) const;
  // `log` receives notable events: a peer turning dead or alive, catch-up progress, a push
  // rewound by a peer, a pull restarted or repaired. Called without locks held.
  void SetEventLog(std::function<void(EventLevel, const std::string&)> log);
  const NodeOptions& options() const { return options_; }

 private:
  struct Impl;
  NodeOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsm
