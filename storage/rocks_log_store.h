// RocksLogStore: the LogStore of a dsm node, one RocksDB database per data directory (key schema
// in storage/schema.h, layout and recovery rules in storage/format.md).
//
// Writes are group-committed LevelDB-style: each Append/Apply/AppendAsync/ApplyAsync call queues
// a writer; the group at the front of the queue is led by one thread, which takes the writers
// queued behind the front one (up to the group bounds), plans them with PlanWrites
// (storage/write_plan.h) outside the lock, writes ONE WriteBatch with sync = options.sync, then
// publishes the new state (last seq, high waters, pull cursors) and gives every writer of the
// group its own outcomes.
// Who leads: a waiting Append/Apply leads its group once its writer reaches the front of the
// queue (at once when the queue is empty: no thread hand-off); AppendAsync and ApplyAsync writers
// are always led by the store's commit thread, so their callers (the HTTP threads of /send and
// /replicate) never wait for the disk and go on reading requests, which join the next group.
// Their callbacks run after the group is published, outside the lock, on the leading thread. Only
// one group is led at a time, and the next starts after the previous one has published, so seqs
// are assigned in log order and nothing is visible in the published state before it is durable.
// A failed write is sticky:
// that group and every later write fail with the same IOError; reads keep working. The one
// exception is a full disk: below options.min_free_bytes of free space a group is refused with
// Unavailable("disk full: ...") before anything is written, and should RocksDB still run out of
// space (NoSpace) the group fails the same way and later writes too until a writer finds space
// again (DB::Resume). Either way writes resume by themselves; a failed group is never
// acknowledged nor published.
//
// Reads go straight to RocksDB and never lock against writers: Get and FindByMsgId read the
// latest durable data, Scan and ReadOrigin read a consistent view bounded by the published last
// seq / high water at their start. A Scan with a recipient filter walks that recipient's index
// (the "inbox" family), so it costs in proportion to that recipient's messages. ReadOrigin of the
// node's own stream (what pushes read) is served from memory when it starts within the newest
// records written (options.tail_cache_*), which are kept as written, under the writers' lock.
//
// Live readers: when options.notifier is set, each durable write that appended records is
// reported to it (AppendNotifier::Notify) inside the critical section that publishes it.
//
// The implementation is split by concern: rocks_open.cc (opening, checking and creating a
// directory, loading the published state), rocks_format_upgrade.cc (older formats),
// rocks_group_commit.cc (the write path, push cursors, recovery from a full disk),
// rocks_reads.cc (reads of the log and its indexes), rocks_own_tail.cc (the own-stream tail) and
// rocks_retention.cc (trimming the oldest records, skipped positions, msg_id expiry).
//
// Retention: Trim removes the oldest records with one DeleteRange of the log, point deletes of
// their recipient index entries and one DeleteRange per origin of the origin index, in one
// synced write queued like any other (so it is serialized with the group commits but never
// holds one up by more than that write). The new bounds (FirstSeq, TrimmedThrough) are
// published before that write, so a reader never reads a record that is being removed: reads
// check the bounds, not what RocksDB still holds. The msg_id entries of trimmed records stay
// until ExpireMsgIds forgets them; a compaction filter then drops them from the msgid family.
//
// Thread safety: every method may be called concurrently from any thread. The destructor waits
// for writers in flight (and the callbacks of the asynchronous writes the commit thread leads); no
// call may start once it has begun.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/thread_annotations.h"
#include "dsm/consumer_state.h"
#include "dsm/log_store.h"
#include "dsm/message.h"
#include "dsm/status.h"
#include "storage/append_notifier.h"
#include "storage/write_plan.h"

namespace rocksdb {
class Slice;
class Status;
class ColumnFamilyHandle;
class CompactionFilter;
class WriteBatch;
class DB;
class Env;
class Snapshot;
}  // namespace rocksdb

namespace dsm {

struct RocksLogStoreOptions {
  std::string path;     // data directory; created with its parents when missing
  std::string node_id;  // must match the node id recorded in an existing directory
  bool sync = true;     // fsync every write; false only for benchmarks
  // Group commit bounds: a leader stops adding writers once the group holds this much (the
  // first writer is always taken, whatever its size).
  size_t max_group_bytes = 4 << 20;
  size_t max_group_messages = 4096;
  // Environment for all file I/O; nullptr = rocksdb::Env::Default(). Tests inject faults here.
  // Not owned; must outlive the store.
  rocksdb::Env* env = nullptr;
  // Told about every durable write that appended records; nullptr = nobody. Not owned; must
  // outlive the store.
  AppendNotifier* notifier = nullptr;
  // Receives one-line notes about notable events of Open (a format upgrade). May be empty.
  std::function<void(const std::string&)> info_log;
  // Read every table file at open and check its block checksums (a damaged directory is then
  // refused at open with Corruption instead of failing some later read).
  bool verify_checksums = true;
  // Flush the memtables when the store is closed (tests turn it off to leave data in the
  // write-ahead log, as a crash does).
  bool flush_on_close = true;
  // Writes are refused with Unavailable("disk full: ...") while the file system holding the
  // directory has less free space than this plus the write (0 = no check). RocksDB itself then
  // never runs out of space: its memtable flushes and compactions keep room, and writes resume
  // as soon as space returns.
  uint64_t min_free_bytes = uint64_t{256} << 20;
  // The most recent records of the node's own stream stay in memory (at most this many, and
  // about this many bytes), so a push reads them back without a RocksDB read; older positions
  // are read from the database.
  size_t tail_cache_records = 16384;
  size_t tail_cache_bytes = 16 << 20;
  // One memory budget for RocksDB: its block cache holds the table blocks read (with their index
  // and filter blocks) and is charged for every memtable (a WriteBufferManager flushes the
  // largest memtable once memtables take half of it), so RocksDB's memory stays near this
  // however large the log grows. At least kMinMemoryBudgetBytes.
  uint64_t memory_budget_bytes = uint64_t{256} << 20;
};

// The smallest RocksLogStoreOptions::memory_budget_bytes (Open refuses less).
inline constexpr uint64_t kMinMemoryBudgetBytes = uint64_t{32} << 20;


class RocksLogStore final : public LogStore {
 public:
  // Opens the data directory, creating it (and a new incarnation) when it is missing or empty.
  // Refuses, with a one-line error naming the directory: another node's directory
  // (InvalidArgument), a newer format version (InvalidArgument), a non-empty directory that is
  // not a dsm database (InvalidArgument), an uncreatable or unwritable directory (IOError), a
  // directory locked by a running process (IOError), a damaged database (Corruption). A
  // directory of format version 1 is upgraded in place first: its recipient index is built from
  // the log in batches, then the version is set to 2 (an interrupted upgrade is redone).
  static Result<std::unique_ptr<RocksLogStore>> Open(const RocksLogStoreOptions& options);

  ~RocksLogStore() override;
  RocksLogStore(const RocksLogStore&) = delete;
  RocksLogStore& operator=(const RocksLogStore&) = delete;

  const std::string& node_id() const override { return node_id_; }
  const std::string& stream_id() const override { return stream_id_; }
  // The random hex string created with the data directory.
  const std::string& incarnation() const { return incarnation_; }
  const std::string& path() const { return options_.path; }

  Result<std::vector<WriteOutcome>> Append(std::vector<Message> msgs) override LOCKS_EXCLUDED(mu_);
  void AppendAsync(std::vector<Message> msgs, AppendDone done) override LOCKS_EXCLUDED(mu_);
  void ApplyAsync(std::vector<Message> msgs, AppendDone done) override LOCKS_EXCLUDED(mu_);
  Result<std::vector<WriteOutcome>> Apply(std::vector<Message> msgs,
                                          const std::string& peer_url = {},
                                          const PullCursor* cursor = nullptr) override
      LOCKS_EXCLUDED(mu_);

  Result<std::optional<Message>> Get(uint64_t seq) const override;
  Result<std::optional<Message>> FindByMsgId(const std::string& msg_id) const override;
  Status Scan(const ScanOptions& opts, const MessageVisitor& visit) const override;
  Result<std::vector<Message>> ReadOrigin(const std::string& origin, uint64_t after, size_t limit,
                                          size_t max_bytes) const override;
  std::optional<Result<std::vector<Message>>> ReadOwnRecent(uint64_t after, size_t limit,
                                                            size_t max_bytes) const override;

  uint64_t LastSeq() const override LOCKS_EXCLUDED(mu_);
  uint64_t HighWater(const std::string& origin) const override LOCKS_EXCLUDED(mu_);
  std::map<std::string, uint64_t> HighWaters() const override LOCKS_EXCLUDED(mu_);

  PushCursor GetPushCursor(const std::string& peer_url) const override LOCKS_EXCLUDED(mu_);
  Status SetPushCursor(const std::string& peer_url, const PushCursor& cursor) override
      LOCKS_EXCLUDED(push_mu_, mu_);
  PullCursor GetPullCursor(const std::string& peer_url) const override LOCKS_EXCLUDED(mu_);
  Result<std::string> GetMembership() const override LOCKS_EXCLUDED(mu_);
  Status SetMembership(const std::string& document) override LOCKS_EXCLUDED(mu_);

  uint64_t FirstSeq() const override LOCKS_EXCLUDED(mu_);
  uint64_t TrimmedThrough(const std::string& origin) const override LOCKS_EXCLUDED(mu_);
  Result<uint64_t> TrimmedRun(const std::string& origin, uint64_t after) const override;
  Result<TrimResult> Trim(const TrimRequest& req) override LOCKS_EXCLUDED(trim_mu_, mu_);
  Result<uint64_t> SkipTrimmed(const std::string& origin, uint64_t through) override
      LOCKS_EXCLUDED(mu_);
  Status ExpireMsgIds(double ts) override LOCKS_EXCLUDED(trim_mu_, mu_);
  uint64_t StoredBytes() const override;

  Status WriteHealth() const override LOCKS_EXCLUDED(mu_);

  // RocksDB's memory against its budget, read from RocksDB's properties.
  StoreMemory Memory() const override;
  // Flushes the memtables and compacts every family down to its bottommost level (which is
  // compressed with zstd). Blocks while it runs; reads and writes go on meanwhile.
  Status CompactAll();
  // The durable consumers' state, in the "consumers" family of this database
  // (storage/rocks_consumer_state.h). Valid as long as the store.
  ConsumerStateStore* consumer_state() const;

 private:
  struct Writer;
  struct Families {
    rocksdb::ColumnFamilyHandle* log = nullptr;
    rocksdb::ColumnFamilyHandle* msgid = nullptr;
    rocksdb::ColumnFamilyHandle* origin = nullptr;
    rocksdb::ColumnFamilyHandle* meta = nullptr;
    rocksdb::ColumnFamilyHandle* inbox = nullptr;
    rocksdb::ColumnFamilyHandle* consumers = nullptr;
  };

  // Forgets the msg_id entries of seqs <= *head when their files are compacted.
  class MsgIdExpiry;

  RocksLogStore(RocksLogStoreOptions options, std::shared_ptr<MsgIdExpiry> msgid_expiry,
                std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> handles,
                Families families);

  // The seq a msg_id index read found for `msg_id` (its status and value): none when it is absent
  // or forgotten (ExpireMsgIds).
  Result<std::optional<uint64_t>> MsgIdSeq(std::string_view msg_id, const rocksdb::Status& s,
                                           const rocksdb::Slice& value) const;
  // The msg_id lookups of a group's plan: lookups_ for a small group; for a large one its
  // msg_ids are looked up at once into `found` (one MultiGet, which visits each table file once
  // for all of them, instead of a Get each) and `batched` (returned) answers from there, other ids
  // from lookups_. The result is valid while `found`, `batched` and the group are.
  using MsgIdsFound = std::unordered_map<std::string_view, Result<std::optional<uint64_t>>>;
  const WritePlanLookups& PrefetchMsgIds(const std::vector<Writer*>& group, MsgIdsFound* found,
                                         WritePlanLookups* batched) const;
  // Loads the published state from the database. Called once by Open.
  Status Recover() LOCKS_EXCLUDED(mu_);
  // Queues `req` and returns its outcomes once its group is durable (or failed).
  Result<std::vector<WriteOutcome>> Write(const WriteRequest& req) LOCKS_EXCLUDED(mu_);
  // Queues `w` (which lives on the caller's stack), leads its group when it reaches the front
  // with nobody leading, and returns its result.
  Result<std::vector<WriteOutcome>> Wait(Writer* w) LOCKS_EXCLUDED(mu_);
  // Queues `w` (an AppendAsync or ApplyAsync writer, owned by the queue from now on) for the
  // commit thread.
  void WriteAsync(Writer* w) LOCKS_EXCLUDED(mu_);
  // Commits the group at the front of writers_ and hands the lead on. Returns the asynchronous
  // writers of the group, whose callbacks the caller runs (RunCallbacks) once it has released
  // mu_. mu_ is released while the group is planned and written (and around a resume after a
  // full disk), and held again on return. REQUIRES: writers_ is not empty, nobody leads.
  std::vector<std::unique_ptr<Writer>> LeadGroup() EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls each asynchronous writer's callback with its result. REQUIRES: mu_ not held.
  static void RunCallbacks(std::vector<std::unique_ptr<Writer>> finished);
  // The commit thread: leads every group whose front writer is an asynchronous one (AppendAsync,
  // ApplyAsync) that no caller leads.
  void CommitLoop() LOCKS_EXCLUDED(mu_);
  // Plans and writes `group` (the front of writers_). Called by the leader without mu_ held.
  Result<WritePlan> PlanAndWrite(const std::vector<Writer*>& group, const WritePlanState& state,
                                 Status* write_status) LOCKS_EXCLUDED(mu_);
  // Scan with a recipient filter, through the recipient index. REQUIRES: opts.recipient.
  Status ScanInbox(const ScanOptions& opts, const MessageVisitor& visit) const;
  // The message at `seq` as of `snapshot` (nullptr = latest).
  Result<std::optional<Message>> GetAt(uint64_t seq, const rocksdb::Snapshot* snapshot) const;
  // Clears RocksDB's background error after a full disk. OK, Unavailable (still full) or
  // IOError (another failure: sticky). Called without mu_ held, by a group leader.
  Status ResumeAfterDiskFull() LOCKS_EXCLUDED(mu_);
  // Records a failed write: a full disk (Unavailable) until a writer resumes, anything else
  // sticky.
  void NoteWriteFailure(const Status& failure) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes a written plan.
  void Publish(const WritePlan& plan) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes a batch of retention's in the writers' queue, as a group of its own: `before` runs
  // under mu_ when the group is led (it may publish and add to the batch), `after` under mu_
  // once the batch is durable. Returns the write's status.
  Status Maintain(rocksdb::WriteBatch* batch, std::function<void()> before,
                  std::function<void()> after) LOCKS_EXCLUDED(mu_);
  // Whether position `origin_seq` of `origin`, which the origin index maps to `seq`, is no
  // longer held here.
  bool TrimmedPosition(const std::string& origin, uint64_t origin_seq, uint64_t seq) const
      LOCKS_EXCLUDED(mu_);
  // Trimmed("position after + 1 of origin was trimmed ...").
  Status TrimmedError(const std::string& origin, uint64_t after) const LOCKS_EXCLUDED(mu_);
  // The last position R such that the origin index maps positions after + 1..R of `origin` to
  // seqs below `first` (after itself when position after + 1 is not such a position).
  Result<uint64_t> PositionsBelow(const std::string& origin, uint64_t after, uint64_t first) const;
  // Moves the plan's records of our own stream into tail_. REQUIRES: plan published.
  void RememberOwnRecords(WritePlan* plan) EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ReadOrigin of our own stream from tail_: false when tail_ does not hold position after + 1.
  bool ReadOwnTail(uint64_t after, size_t limit, size_t max_bytes, std::vector<Message>* out,
                   Status* status) const LOCKS_EXCLUDED(mu_);

  const RocksLogStoreOptions options_;
  const std::shared_ptr<MsgIdExpiry> msgid_expiry_;  // used by the database: outlives it
  std::string node_id_;
  std::string incarnation_;
  std::string stream_id_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // all open families, destroyed at close
  Families cf_;
  WritePlanLookups lookups_;  // reads of durable data for PlanWrites

  mutable Mutex mu_;
  // Writers waiting for or inside a group commit, in arrival order; the group being committed is
  // at the front. Asynchronous writers are owned by the queue until their group is done.
  std::deque<Writer*> writers_ GUARDED_BY(mu_);
  bool leading_ GUARDED_BY(mu_) = false;   // a thread is committing the front group
  bool stopping_ GUARDED_BY(mu_) = false;  // the destructor has begun
  // Notified by a leader when its group leaves writers_ empty (the destructor waits for it).
  CondVar idle_cv_;
  // Notified by a leader when the front writer is an asynchronous one (the commit thread leads
  // it), and by the destructor (stop).
  CondVar commit_cv_;
  std::thread commit_thread_;        // runs CommitLoop
  Status bg_error_ GUARDED_BY(mu_);  // sticky
  // Unavailable("disk full: ...") while the last write failed for lack of space (not sticky:
  // the next writer retries with ResumeAfterDiskFull, at most every 500 ms).
  Status disk_full_ GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_resume_ GUARDED_BY(mu_);
  // Unavailable("disk full: ...") while the last group was refused for lack of free space
  // (options_.min_free_bytes); cleared by the next group that finds enough.
  Status low_space_ GUARDED_BY(mu_);
  uint64_t last_seq_ GUARDED_BY(mu_) = 0;                                        // published
  HighWaterMap high_waters_ GUARDED_BY(mu_);                                     // published
  std::map<std::string, PullCursor, std::less<>> pull_cursors_ GUARDED_BY(mu_);  // published
  std::map<std::string, PushCursor, std::less<>> push_cursors_ GUARDED_BY(mu_);
  // The last records of our own stream, positions tail_.front().origin_seq.. contiguous up to
  // the published high water (see RocksLogStoreOptions::tail_cache_records).
  struct TailRecord {
    uint64_t origin_seq;
    uint64_t seq;
    std::string value;  // storage/record.h encoding
  };
  std::deque<TailRecord> tail_ GUARDED_BY(mu_);
  size_t tail_bytes_ GUARDED_BY(mu_) = 0;  // the values' sizes

  // Retention bounds (published; see the header comment).
  uint64_t first_seq_ GUARDED_BY(mu_) = 1;
  HighWaterMap trimmed_ GUARDED_BY(mu_);  // origin -> TrimmedThrough
  // Serializes Trim and ExpireMsgIds (each reads what the previous one left).
  Mutex trim_mu_ ACQUIRED_BEFORE(mu_);
  std::unique_ptr<ConsumerStateStore> consumer_state_;  // set by Open

  // Serializes SetPushCursor so the stored and the published cursor agree.
  Mutex push_mu_ ACQUIRED_BEFORE(mu_);
};

}  // namespace dsm
