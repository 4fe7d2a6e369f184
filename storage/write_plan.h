// WritePlan: the write rules of dsm/log_store.h, in one place. Given a group of queued Append /
// Apply calls and the store's published state, PlanWrites() decides, without touching the store,
// what one atomic write must contain (records with their seqs, msg_id, origin and recipient
// index entries, high-water and pull-cursor updates) and what each call answers. RocksLogStore
// turns the plan into one WriteBatch; MemoryLogStore applies it to its maps. Neither store has
// rule code of its own.
//
// Rules, per message, in call order and across the calls of the group in queue order (a message
// sees everything planned before it, so duplicates inside one call and across calls of one
// group are detected):
//  - Append(), and Apply() of a message with an empty origin ("adopt"): if the msg_id is stored
//    (or planned), kDuplicate carrying the stored message's seq/origin/origin_seq. Otherwise the
//    next seq, as the next position of this node's own stream (origin = stream id,
//    origin_seq = its high water + 1).
//  - Apply() of a message with an origin, against that origin's high water H:
//      origin already stopped by a gap in this call -> kGap (expected H + 1), nothing planned;
//      origin_seq > H + 1  -> kGap (expected H + 1); the origin is stopped for the rest of the
//                             call (other origins go on);
//      origin_seq <= H     -> kDuplicate when the position holds this msg_id (the msg_id
//                             index points at the position's seq); otherwise kConflict (seq =
//                             the position's seq): another message holds it, nothing planned;
//      origin_seq == H + 1 -> if the msg_id is unknown: appended at the next seq. If it is
//                             already stored (under another origin): kDuplicate, the position
//                             is consumed (H advances, the origin index entry of the position
//                             points at the existing seq), no record is written.
//    The outcome of an Apply() duplicate describes the position: seq = the local seq the
//    origin index holds for it, origin/origin_seq = the message's.
//  - Retention: a position that is no longer held (trimmed, or skipped) is a duplicate whatever
//    its msg_id (what it held cannot be compared any more; outcome seq 0 when the position's
//    entry is gone). A msg_id whose record was trimmed is still a duplicate while its index
//    entry lasts: Append and adopt answer kDuplicate with its old seq and an empty origin.
//  - A call with a pull cursor sets it (even when every message was a duplicate); when several
//    calls of a group set the same peer's cursor, the last one wins. When a message of such a call
//    is refused as a gap, the cursor written is the one just before that message (its seq - 1,
//    the pulled peer's seq space), in the same write: the pull resumes at the gap, and no crash
//    can leave the cursor past positions that were not stored.
//  - A call whose input is invalid (empty msg_id; an origin with origin_seq 0 or containing
//    '\0'; a cursor without a peer url) fails alone with InvalidArgument and contributes
//    nothing; the other calls of the group are planned as if it were absent.
//
// Thread safety: PlanWrites is a pure function of its arguments (it calls the lookups on the
// calling thread); the caller serializes plans with the writes that carry them out.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dsm/log_store.h"
#include "dsm/message.h"
#include "dsm/status.h"
#include "storage/append_notifier.h"

namespace dsm {

// One queued LogStore::Append or LogStore::Apply call. Does not own what it points to.
struct WriteRequest {
  enum class Kind { kAppend, kApply };
  Kind kind = Kind::kAppend;
  const std::vector<Message>* msgs = nullptr;  // REQUIRES: not null
  std::string_view peer_url;                   // Apply with a cursor only
  const PullCursor* cursor = nullptr;          // Apply only; null = leave the cursor alone

  // The request of LogStore::Append(msgs) / LogStore::Apply(msgs, peer_url, cursor).
  static WriteRequest Append(const std::vector<Message>& msgs) {
    return WriteRequest{Kind::kAppend, &msgs, {}, nullptr};
  }
  static WriteRequest Apply(const std::vector<Message>& msgs, std::string_view peer_url,
                            const PullCursor* cursor) {
    return WriteRequest{Kind::kApply, &msgs, peer_url, cursor};
  }
};

// Origin and position of a stored message.
struct StoredPosition {
  std::string origin;
  uint64_t origin_seq = 0;
};

// Read access to what the store holds durably (never to anything planned but not written).
// Errors fail the whole group (they are not sticky).
struct WritePlanLookups {
  // The seq stored under `msg_id` in the msg_id index.
  std::function<Result<std::optional<uint64_t>>(std::string_view msg_id)> find_msg_id;
  // Origin and origin_seq of the record stored at `seq`. REQUIRES: seq is stored.
  std::function<Result<StoredPosition>(uint64_t seq)> stored_position;
  // The seq the origin index holds for (origin, origin_seq).
  std::function<Result<std::optional<uint64_t>>(std::string_view origin, uint64_t origin_seq)>
      find_origin_seq;
};

using HighWaterMap = std::map<std::string, uint64_t, std::less<>>;

// The store's published state a plan starts from.
struct WritePlanState {
  std::string_view stream_id;                 // this data directory's own stream
  uint64_t last_seq = 0;                      // highest seq written, 0 when empty
  const HighWaterMap* high_waters = nullptr;  // REQUIRES: not null; absent origin = 0
  // Retention: records below first_seq were trimmed; positions of an origin at or below
  // (*trimmed)[origin] are no longer held (LogStore::TrimmedThrough). nullptr = none.
  uint64_t first_seq = 1;
  const HighWaterMap* trimmed = nullptr;
};

// What one atomic write must contain. string_views point into the requests' messages, their
// peer urls or WritePlanState::stream_id: the plan is valid while those are.
struct WritePlan {
  struct Record {
    uint64_t seq = 0;
    std::string value;  // storage/record.h encoding
    uint64_t origin_seq = 0;
    bool own = false;  // a position of state.stream_id (what pushes read back)
  };
  struct MsgIdEntry {
    std::string_view msg_id;
    uint64_t seq = 0;
  };
  struct OriginEntry {
    std::string_view origin;
    uint64_t origin_seq = 0;
    uint64_t seq = 0;
  };
  struct CursorUpdate {
    std::string_view peer_url;
    const PullCursor* cursor = nullptr;
  };

  std::vector<Record> records;       // seq ascending, dense from state.last_seq + 1
  std::vector<MsgIdEntry> msg_ids;   // one per record
  std::vector<OriginEntry> origins;  // one per record and one per consumed position
  // One per record, in seq order: the recipient index entries (recipient, seq), and what live
  // readers are matched against once the write is durable (AppendNotifier).
  std::vector<AppendedMessage> appended;
  std::vector<std::pair<std::string_view, uint64_t>> high_waters;  // new values, one per origin
  std::vector<CursorUpdate> pull_cursors;  // in queue order (last one per peer wins)
  std::deque<PullCursor> adjusted_cursors;  // what CursorUpdates point at when a gap moved them
  uint64_t last_seq = 0;                   // after the write
  std::vector<Result<std::vector<WriteOutcome>>> results;  // one per request, in order

  // True when the plan changes nothing durable (every message a duplicate or a gap, no cursor).
  bool empty() const {
    return records.empty() && origins.empty() && high_waters.empty() && pull_cursors.empty();
  }
};

// Plans `requests` (in queue order) against `state`. Fails only when a lookup fails or the
// store's indexes contradict each other (Corruption); then nothing may be written.
Result<WritePlan> PlanWrites(std::span<const WriteRequest* const> requests,
                             const WritePlanState& state, const WritePlanLookups& lookups);

}  // namespace dsm
