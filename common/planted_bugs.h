// Planted bugs: deliberate mutations of dsm's own rules, each breaking one promise of the
// contract (README.md, "The contract"), switched on only by tests. The simulation (tests/sim) runs
// with each of them in turn and must catch every one: a checker is only as good as the bugs it has
// caught.
//
// Production code asks `Planted(PlantedBug::kX)` at the one place the mutation lives; the switch
// is a process-wide atomic that nothing outside tests sets, so the cost in a real node is one
// relaxed load on those paths.
//
// Thread safety: SetPlantedBug and Planted may be called from any thread.
#pragma once

#include <atomic>
#include <string_view>

namespace dsm {

enum class PlantedBug {
  kNone = 0,
  kAckBeforeFsync,         // a write is acknowledged before its fsync completes
  kQuorumFromStaleCursor,  // a peer's push cursor counts toward a quorum after the peer was wiped
  kAcceptGap,              // a message past an origin's high water + 1 is stored (a hole)
  kSkipCursorWrite,        // a pulled page's cursor is written without the page's messages
  kReuseSeqAfterRestart,   // a restarted store hands out seqs it already used
  kConflictAsDuplicate,    // another msg_id at a held position is taken as a duplicate
  kAckBeforePeerFsync,     // /replicate answers before the messages are durable
  kSkipMsgIdIndex,         // a known msg_id is not recognised: a retry is stored twice
  kCount,
};

// Short stable name ("ack_before_fsync", ...), for test output.
constexpr std::string_view PlantedBugName(PlantedBug b) {
  switch (b) {
    case PlantedBug::kNone: return "none";
    case PlantedBug::kAckBeforeFsync: return "ack_before_fsync";
    case PlantedBug::kQuorumFromStaleCursor: return "quorum_from_stale_cursor";
    case PlantedBug::kAcceptGap: return "accept_gap";
    case PlantedBug::kSkipCursorWrite: return "skip_cursor_write";
    case PlantedBug::kReuseSeqAfterRestart: return "reuse_seq_after_restart";
    case PlantedBug::kConflictAsDuplicate: return "conflict_as_duplicate";
    case PlantedBug::kAckBeforePeerFsync: return "ack_before_peer_fsync";
    case PlantedBug::kSkipMsgIdIndex: return "skip_msg_id_index";
    case PlantedBug::kCount: break;
  }
  return "?";
}

namespace internal {
inline std::atomic<PlantedBug> planted_bug{PlantedBug::kNone};
}  // namespace internal

// Tests only: plants `b` (kNone removes it).
inline void SetPlantedBug(PlantedBug b) { internal::planted_bug.store(b); }

inline bool Planted(PlantedBug b) {
  return internal::planted_bug.load(std::memory_order_relaxed) == b;
}

}  // namespace dsm
