// LogStore: a node's durable, sequence-numbered message log, with its msg_id index, per-origin
// high-water marks and per-peer replication cursors.
//
// Write rules (the same for every implementation, see storage/write_plan.h):
//  - Append(): client messages. A msg_id already in the log is a duplicate: nothing is written and
//    the outcome carries the stored seq/origin/origin_seq. Otherwise the message becomes the next
//    message of this node's own stream (origin = stream_id(), origin_seq = high water + 1).
//  - Apply(): messages from peers. A message with an empty origin is adopted like Append(). For a
//    message with an origin: a known msg_id is a duplicate; origin_seq <= the origin's high water
//    is a duplicate when the position holds that msg_id, and a conflict (kConflict, nothing
//    written) when it holds another one; origin_seq == high water + 1 is appended (or, if its
//    msg_id is already stored under another origin, only consumes the position, outcome
//    kDuplicate); origin_seq > high water + 1 is a gap: outcome kGap, nothing written for it nor
//    for any later message of that origin in the same call. When a call with a pull cursor meets
//    a gap, the cursor written is the one just before the refused message (its seq - 1).
//  - Messages of one call are applied in order; duplicates inside one call are detected.
//  - Every call is ONE atomic write (records, msg_id index, origin index, high waters and the
//    optional pull cursor), made durable (fsync) before it returns when the store was opened with
//    sync on. Concurrent calls are group-committed: they share one write and one fsync.
//  - seq is assigned under the same serialization as the write: log order == seq order, dense
//    from 1, never reused.
//  - A failed write is sticky: every later write fails with the same IOError (reads go on).
//
// Thread safety: all methods may be called concurrently from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dsm/message.h"
#include "dsm/status.h"

namespace dsm {

struct WriteOutcome {
  enum class Kind {
    kAppended,   // written now at `seq`
    kDuplicate,  // already stored (msg_id known, or its origin position holds that msg_id)
    kGap,        // refused: the origin's next expected origin_seq is `expected_origin_seq`
    kConflict,   // refused: (origin, origin_seq) is held by another msg_id, stored at `seq`
  };
  Kind kind = Kind::kAppended;
  uint64_t seq = 0;  // local seq of the stored message (0 for kGap, or when a duplicate
                     // position holds a msg_id stored under another origin: then the seq of that)
  std::string origin;       // stream the stored message belongs to
  uint64_t origin_seq = 0;  // its position in that stream
  uint64_t expected_origin_seq = 0;  // kGap only
};

// Where a node is in a peer's log when pulling (/sync): the peer's stream id (changes when the
// peer's data directory is replaced, which restarts its seq space) and the last peer seq applied.
struct PullCursor {
  std::string peer_stream;
  uint64_t seq = 0;
  bool operator==(const PullCursor&) const = default;
};

// How far a peer acknowledged this node's own stream (push replication), and which incarnation of
// the peer did: the peer's stream id at the time ("" when not known, e.g. a cursor written by an
// older version). Only an acknowledgement of the peer's current incarnation counts.
struct PushCursor {
  std::string peer_stream;
  uint64_t origin_seq = 0;
  bool operator==(const PushCursor&) const = default;
};

struct ScanOptions {
  uint64_t after = 0;                    // visit seq > after
  size_t limit = SIZE_MAX;               // at most this many matching messages
  std::optional<std::string> sender;     // only messages from this sender
  std::optional<std::string> recipient;  // only messages to this recipient
};

// Return false to stop the scan early.
using MessageVisitor = std::function<bool(const Message&)>;

// One step of retention (LogStore::Trim): removes the oldest records, in seq order, with every
// index entry that points at them except their msg_id entries (see LogStore::ExpireMsgIds).
struct TrimRequest {
  uint64_t before_seq = 0;  // only records with seq < before_seq...
  size_t max_records = 0;   // ...at most this many of them...
  // ...stopping at the first record for which `keep` returns true (empty: none is kept).
  std::function<bool(const Message&)> keep;
};

struct TrimResult {
  uint64_t trimmed = 0;    // records removed
  uint64_t bytes = 0;      // their stored size (record encoding)
  uint64_t first_seq = 0;  // FirstSeq() afterwards
  bool kept = false;       // the step stopped at a record `keep` kept
};

// The storage engine's memory now (LogStore::Memory()); all zero for a store without one.
struct StoreMemory {
  uint64_t budget_bytes = 0;          // the memory budget (--memory-mb)
  uint64_t block_cache_capacity = 0;  // RocksDB property rocksdb.block-cache-capacity
  uint64_t block_cache_usage = 0;     // rocksdb.block-cache-usage (blocks + charged memtables)
  uint64_t block_cache_pinned = 0;    // rocksdb.block-cache-pinned-usage (part of the usage)
  uint64_t write_buffer_limit = 0;    // the WriteBufferManager's buffer size
  uint64_t memtable_bytes = 0;        // rocksdb.size-all-mem-tables, summed over the families
  // rocksdb.estimate-table-readers-mem, summed: what open table files hold outside the cache.
  uint64_t table_readers_bytes = 0;
};

class LogStore {
 public:
  virtual ~LogStore() = default;

  virtual const std::string& node_id() const = 0;
  // "<node id>@<incarnation>": this data directory's own origin stream.
  virtual const std::string& stream_id() const = 0;

  // Client messages (origin, origin_seq and seq of the inputs are ignored). One outcome per
  // input, in order. A non-OK result means nothing of this call was written.
  virtual Result<std::vector<WriteOutcome>> Append(std::vector<Message> msgs) = 0;

  // Append without waiting for the write: `done` is called exactly once with what Append would
  // have returned, either before AppendAsync returns (on the calling thread) or later on another
  // thread, never with a lock of the store held. `done` must not wait for another write of this
  // store (Append, Apply), nor throw: it may run on the thread that commits the writes queued
  // behind it.
  // This default writes synchronously.
  using AppendDone = std::function<void(Result<std::vector<WriteOutcome>>)>;
  virtual void AppendAsync(std::vector<Message> msgs, AppendDone done) {
    done(Append(std::move(msgs)));
  }

  // Peer messages (see the rules above). When `cursor` is given, the pull cursor of `peer_url`
  // is set to it in the same atomic write (even if every message was a duplicate).
  virtual Result<std::vector<WriteOutcome>> Apply(std::vector<Message> msgs,
                                                  const std::string& peer_url = {},
                                                  const PullCursor* cursor = nullptr) = 0;
  // Apply(msgs) (no cursor) without waiting for the write: `done` is called as AppendAsync's.
  // This default writes synchronously.
  virtual void ApplyAsync(std::vector<Message> msgs, AppendDone done) {
    done(Apply(std::move(msgs)));
  }

  virtual Result<std::optional<Message>> Get(uint64_t seq) const = 0;
  virtual Result<std::optional<Message>> FindByMsgId(const std::string& msg_id) const = 0;

  // Visits matching messages with seq > opts.after in seq order. Reads a consistent snapshot.
  virtual Status Scan(const ScanOptions& opts, const MessageVisitor& visit) const = 0;

  // Messages of stream `origin` with origin_seq > after, in order, at most `limit` of them and
  // (except that at least one is returned) at most about `max_bytes` of payload.
  virtual Result<std::vector<Message>> ReadOrigin(const std::string& origin, uint64_t after,
                                                  size_t limit, size_t max_bytes) const = 0;
  // ReadOrigin of this node's own stream, answered only when that needs no disk read (the
  // newest records, kept in memory): nullopt when it would need one. Cheap enough for any thread.
  virtual std::optional<Result<std::vector<Message>>> ReadOwnRecent(uint64_t after, size_t limit,
                                                                    size_t max_bytes) const {
    (void)after, (void)limit, (void)max_bytes;
    return std::nullopt;
  }

  // ---- Retention ----
  // Every seq below FirstSeq() was trimmed (1 when nothing was; LastSeq() + 1 when every record
  // was). Get, Scan and FindByMsgId simply do not find trimmed records.
  virtual uint64_t FirstSeq() const = 0;
  // Positions of `origin` at or below this are no longer held here: they were trimmed, or
  // skipped because the node they would have come from had trimmed them (0 = none). ReadOrigin
  // from such a position fails with OutOfRange; TrimmedRun says how far the hole goes.
  virtual uint64_t TrimmedThrough(const std::string& origin) const = 0;
  // When position after + 1 of `origin` is no longer held here: the last position R of the run
  // of positions after + 1..R that are not (ReadOrigin(origin, R, ...) then reads on). 0 when
  // position after + 1 is held or not reached yet.
  virtual Result<uint64_t> TrimmedRun(const std::string& origin, uint64_t after) const = 0;
  // Removes the oldest records (see TrimRequest) in one durable write. Serialized with the
  // other writes; a write failure is sticky as for them.
  virtual Result<TrimResult> Trim(const TrimRequest& req) = 0;
  // Positions 1..through of `origin` will never come here (the node they would come from trimmed
  // them): the origin's high water and TrimmedThrough() become at least `through`, durably.
  // Returns how many positions this skipped (0 when the origin's high water was already there).
  virtual Result<uint64_t> SkipTrimmed(const std::string& origin, uint64_t through) = 0;
  // The msg_id entries of trimmed records stay (a retry of a trimmed message is still a
  // duplicate, outcome seq = its old seq, origin empty) until this forgets those of the records
  // trimmed by steps whose newest record is older than `ts` (wall seconds). Durable.
  virtual Status ExpireMsgIds(double ts) = 0;
  // About how many bytes the retained records take as stored (the log without its indexes).
  virtual uint64_t StoredBytes() const = 0;
  // What the storage engine's memory holds now (for /metrics).
  virtual StoreMemory Memory() const { return {}; }

  virtual uint64_t LastSeq() const = 0;                        // 0 when empty
  virtual uint64_t HighWater(const std::string& origin) const = 0;  // 0 when unknown
  virtual std::map<std::string, uint64_t> HighWaters() const = 0;

  // Push cursor: the highest origin_seq of our own stream that `peer_url` acknowledged, with the
  // peer's incarnation. Persisted without fsync: losing an update only causes a resend, which
  // peers deduplicate.
  virtual PushCursor GetPushCursor(const std::string& peer_url) const = 0;
  virtual Status SetPushCursor(const std::string& peer_url, const PushCursor& cursor) = 0;

  virtual PullCursor GetPullCursor(const std::string& peer_url) const = 0;

  // The cluster membership as the replication core last stored it (an opaque document, see
  // include/dsm/membership.h), "" when none was ever stored. SetMembership writes with fsync: a
  // membership change is answered only once it is durable.
  virtual Result<std::string> GetMembership() const = 0;
  virtual Status SetMembership(const std::string& document) = 0;

  // OK, or the sticky IOError that stopped writes.
  virtual Status WriteHealth() const = 0;
};

}  // namespace dsm
