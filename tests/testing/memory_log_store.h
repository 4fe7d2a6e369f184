// MemoryLogStore: an in-memory LogStore for tests of the replication core and for simulation.
// It follows exactly the rules of RocksLogStore: writes are planned by the same PlanWrites
// (storage/write_plan.h), records are stored in the storage/record.h encoding, and Scan /
// ReadOrigin use the same read rules (storage/read_rules.h).
//
// Durability model (a simulated disk, crueller than the real one):
//  - What the store shows is what is durable: a write becomes visible (Get, Scan, LastSeq, high
//    waters, cursors) only once its simulated fsync has completed, as with RocksDB's sync writes.
//  - Without a sync scheduler (the default, for unit tests) every write is durable inside the
//    call and AppendAsync completes before it returns, as before.
//  - With a sync scheduler (SetSyncScheduler, the simulation), AppendAsync only queues the write:
//    its fsync completes as a scheduled event, which plans and publishes every queued write as
//    one group (seqs are assigned then, so a write lost in a crash never consumed a seq), and a
//    second scheduled event runs the callbacks. An Append or Apply made while writes are queued
//    commits them first, in queue order, in the same call (a later WAL sync covers the earlier
//    entries), and is durable when it returns; the queued writes' callbacks still run later.
//  - Push cursors are written without fsync (as RocksLogStore does): a crash reverts them to their
//    values at the last durable write that changed something.
//  - Crash() is a kill -9 / power cut: queued writes are lost, callbacks not yet run are never
//    run (they are handed back to the caller, whose process died with them), unsynced push cursor
//    updates are lost, scheduled events of the old process become no-ops.
//
// Planted bugs (common/planted_bugs.h) that live here:
//  - kAckBeforeFsync: AppendAsync writes and publishes at once and calls `done` before its fsync
//    (a scheduled event) completes; a crash before that event drops the write (RocksDB with
//    sync = false).
//  - kAckBeforePeerFsync: an Apply without a pull cursor (a /replicate push) is published and
//    answered without fsync; a crash drops it unless a later durable write covered it.
//  - kReuseSeqAfterRestart: after Crash(), the next write that appends records starts at the last
//    seq instead of after it, overwriting that record (a last seq recovered one too low).
// Writes made visible without fsync are kept in an undo log and rolled back by Crash().
//
// Other test controls:
//  - the constructor takes the incarnation, so a test can simulate a wiped data directory by
//    building a new store with another incarnation;
//  - FailWrites(s) makes every later write fail with s (a failed fsync: sticky until Crash(),
//    which models a restarted process; reads go on);
//  - SetDiskFull(true) refuses writes with Unavailable("disk full: ...") until SetDiskFull(false)
//    (not sticky, like RocksLogStore's full disk);
//  - TakeImage() / Restore() copy the durable content out and back (a data directory restored
//    from an older copy of itself: same incarnation, older content).
// Like RocksLogStore it keeps a recipient index (a Scan with a recipient visits only that
// recipient's messages) and reports durable writes to an AppendNotifier (SetAppendNotifier).
//
// Thread safety: all methods may be called concurrently; one mutex serializes them, so a run is
// deterministic given the order of calls. Scan visitors, `done` callbacks and the scheduler run
// without the lock held and may call back into the store.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "dsm/log_store.h"
#include "dsm/message.h"
#include "dsm/status.h"
#include "storage/append_notifier.h"
#include "storage/write_plan.h"

namespace dsm {

class MemoryLogStore final : public LogStore {
 public:
  // The durable content of a store: what a copy of its data directory holds.
  class Image {
   public:
    uint64_t last_seq() const { return records_.size(); }
    const HighWaterMap& high_waters() const { return high_waters_; }

   private:
    friend class MemoryLogStore;
    std::vector<std::string> records_;                      // seq - 1 -> record
    std::map<std::string, uint64_t, std::less<>> msg_ids_;  // msg_id -> seq
    // origin -> (origin_seq -> seq). Dense 1..high water unless a planted bug left a hole.
    std::map<std::string, std::map<uint64_t, uint64_t>, std::less<>> origins_;
    HighWaterMap high_waters_;
    // recipient -> seqs of its messages, ascending.
    std::map<std::string, std::vector<uint64_t>, std::less<>> inbox_;
    std::map<std::string, PullCursor, std::less<>> pull_cursors_;
    std::map<std::string, PushCursor> push_cursors_;
    // Retention: records below first_seq_ are trimmed (their slot in records_ is empty).
    uint64_t first_seq_ = 1;
    HighWaterMap trimmed_;    // origin -> TrimmedThrough
    uint64_t dedup_head_ = 0;  // msg_ids of seqs at or below it are forgotten
    std::vector<std::pair<uint64_t, double>> trim_marks_;  // (last seq trimmed, newest ts)
  };

  // Runs `event` later, on the simulation's thread, with no lock of the store held.
  using SyncScheduler = std::function<void(std::function<void()> event)>;

  // stream_id() is "<node_id>@<incarnation>".
  MemoryLogStore(std::string node_id, std::string incarnation);
  MemoryLogStore(const MemoryLogStore&) = delete;
  MemoryLogStore& operator=(const MemoryLogStore&) = delete;

  const std::string& node_id() const override { return node_id_; }
  const std::string& stream_id() const override { return stream_id_; }

  Result<std::vector<WriteOutcome>> Append(std::vector<Message> msgs) override;
  void AppendAsync(std::vector<Message> msgs, AppendDone done) override;
  Result<std::vector<WriteOutcome>> Apply(std::vector<Message> msgs,
                                          const std::string& peer_url = {},
                                          const PullCursor* cursor = nullptr) override;

  Result<std::optional<Message>> Get(uint64_t seq) const override;
  Result<std::optional<Message>> FindByMsgId(const std::string& msg_id) const override;
  Status Scan(const ScanOptions& opts, const MessageVisitor& visit) const override;
  // With a hole in the origin index (only a planted bug makes one), the positions around it are
  // returned with their own origin_seq, as a read of RocksDB's origin index would.
  Result<std::vector<Message>> ReadOrigin(const std::string& origin, uint64_t after, size_t limit,
                                          size_t max_bytes) const override;
  // Everything is in memory: always answered, as ReadOrigin of the own stream.
  std::optional<Result<std::vector<Message>>> ReadOwnRecent(uint64_t after, size_t limit,
                                                            size_t max_bytes) const override {
    return ReadOrigin(stream_id(), after, limit, max_bytes);
  }

  uint64_t LastSeq() const override;
  uint64_t HighWater(const std::string& origin) const override;
  std::map<std::string, uint64_t> HighWaters() const override;

  PushCursor GetPushCursor(const std::string& peer_url) const override;
  Status SetPushCursor(const std::string& peer_url, const PushCursor& cursor) override;
  PullCursor GetPullCursor(const std::string& peer_url) const override;

  uint64_t FirstSeq() const override;
  uint64_t TrimmedThrough(const std::string& origin) const override;
  Result<uint64_t> TrimmedRun(const std::string& origin, uint64_t after) const override;
  Result<TrimResult> Trim(const TrimRequest& req) override;
  Result<uint64_t> SkipTrimmed(const std::string& origin, uint64_t through) override;
  Status ExpireMsgIds(double ts) override;
  uint64_t StoredBytes() const override;

  Status WriteHealth() const override;

  // ---- Test and simulation controls ----

  // From now on AppendAsync is asynchronous and its fsync completes as an event run through
  // `schedule` (see the header comment). An empty function restores synchronous completion.
  // REQUIRES: no AppendAsync write in flight.
  void SetSyncScheduler(SyncScheduler schedule);

  // A kill -9 or power cut of the process using the store: drops every write whose fsync has not
  // completed and the unsynced push cursor updates, cancels the scheduled events, clears a
  // FailWrites error (a new process starts), and returns the `done` callbacks that will now never
  // be called (queued writes, and durable writes whose callbacks had not run yet). The caller
  // disposes of them; the store never calls them.
  std::vector<AppendDone> Crash();
  // Crash() for stores without AppendAsync writes in flight (their callbacks are destroyed).
  void DropUnsyncedWrites();

  // Every later write (Append, Apply, AppendAsync, SetPushCursor) fails with `s` until Crash().
  // REQUIRES: !s.ok().
  void FailWrites(Status s);
  // While full, writes fail with Unavailable("disk full: ...") and change nothing.
  void SetDiskFull(bool full);
  bool disk_full() const;

  // Writes not durable yet: queued AppendAsync writes, durable ones whose callbacks have not run,
  // and writes a planted bug published without fsync.
  size_t PendingWrites() const;

  // Changes whenever what the store shows changes (a write, a crash, a restore): lets a checker
  // skip a store that did not change since it last looked.
  uint64_t version() const;

  // A copy of the durable content (without the writes a planted bug published unsynced).
  std::shared_ptr<const Image> TakeImage() const;
  // Replaces the content with `image` (taken from this store earlier, or from another store of
  // the same stream id). REQUIRES: no write in flight (call Crash() first).
  void Restore(const Image& image);

  // Later writes that append records are reported to `notifier` (nullptr: to nobody), inside
  // the write's critical section as RocksLogStore does. It must outlive its use.
  void SetAppendNotifier(AppendNotifier* notifier);

 private:
  // An AppendAsync write waiting for its fsync.
  struct QueuedWrite {
    std::vector<Message> msgs;
    AppendDone done;
  };
  // A committed group's callbacks with their results, waiting for their completion event.
  using Completions = std::vector<std::pair<AppendDone, Result<std::vector<WriteOutcome>>>>;
  // How to undo one write published without fsync (planted bugs only).
  struct Undo {
    uint64_t id = 0;
    size_t records_before = 0;
    std::vector<std::pair<uint64_t, std::string>> overwritten;  // seq, previous record
    std::vector<std::pair<std::string, std::optional<uint64_t>>> msg_ids;  // previous values
    std::vector<std::tuple<std::string, uint64_t, std::optional<uint64_t>>> origins;
    std::vector<std::string> inbox;  // recipients whose list got one seq more
    std::vector<std::pair<std::string, std::optional<uint64_t>>> high_waters;
    std::vector<std::pair<std::string, std::optional<PullCursor>>> pull_cursors;
  };

  // Plans `requests` as one group against the published state and applies the plan. A synced
  // group is durable at once; an `unsynced` one (planted bugs) is published with an undo entry
  // whose id is stored in *undo_id. A refused group (disk error, full disk, failed plan) fails
  // every request with the same status and changes nothing.
  std::vector<Result<std::vector<WriteOutcome>>> CommitLocked(
      const std::vector<const WriteRequest*>& requests, bool unsynced, uint64_t* undo_id)
      EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyPlanLocked(WritePlan& plan, Undo* undo) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Everything published so far is durable (a synced write that changed something).
  void SyncedLocked() EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void UndoOn(Image* image, const Undo& undo);
  // Commits the queued AppendAsync writes as one group; returns the id of their completions
  // (0: nothing queued). REQUIRES: a scheduler is set.
  uint64_t CommitQueuedLocked() EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Scheduled events of generation `generation` (stale after a Crash()).
  void OnFsyncDue(uint64_t generation) LOCKS_EXCLUDED(mu_);
  void OnCompletionsDue(uint64_t generation, uint64_t id) LOCKS_EXCLUDED(mu_);
  void OnUnsyncedFsync(uint64_t generation, uint64_t undo_id) LOCKS_EXCLUDED(mu_);
  void ScheduleCompletions(uint64_t generation, uint64_t id) LOCKS_EXCLUDED(mu_);
  Result<std::vector<WriteOutcome>> Write(const WriteRequest& req) LOCKS_EXCLUDED(mu_);
  Result<std::optional<Message>> GetLocked(uint64_t seq) const EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Scan with a recipient filter, through the inbox, up to seq `bound`. REQUIRES: opts.recipient.
  Status ScanInbox(const ScanOptions& opts, uint64_t bound, const MessageVisitor& visit) const
      LOCKS_EXCLUDED(mu_);
  Status RefusalLocked() const EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t TrimmedThroughLocked(std::string_view origin) const EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // See RocksLogStore::PositionsBelow.
  uint64_t PositionsBelowLocked(std::string_view origin, uint64_t after, uint64_t first) const
      EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Commits queued AppendAsync writes before a retention write (which is synced like them).
  // Returns the id of their completions (0: none).
  uint64_t BeforeMaintenanceLocked() EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string node_id_;
  const std::string stream_id_;
  WritePlanLookups lookups_;  // called by PlanWrites with mu_ held

  mutable Mutex mu_;
  Image state_ GUARDED_BY(mu_);  // published content (push cursors: as last written)
  std::map<std::string, PushCursor> synced_push_cursors_ GUARDED_BY(mu_);
  AppendNotifier* notifier_ GUARDED_BY(mu_) = nullptr;
  Status write_error_ GUARDED_BY(mu_);  // sticky until Crash()
  bool disk_full_ GUARDED_BY(mu_) = false;

  SyncScheduler schedule_ GUARDED_BY(mu_);
  uint64_t generation_ GUARDED_BY(mu_) = 0;  // bumped by Crash()
  std::vector<QueuedWrite> queue_ GUARDED_BY(mu_);
  bool fsync_scheduled_ GUARDED_BY(mu_) = false;
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Completions> completions_ GUARDED_BY(mu_);
  std::vector<Undo> undo_ GUARDED_BY(mu_);  // oldest first
  bool reuse_seq_ GUARDED_BY(mu_) = false;  // kReuseSeqAfterRestart armed by Crash()
  uint64_t version_ GUARDED_BY(mu_) = 0;
};

}  // namespace dsm
