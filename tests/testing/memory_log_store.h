// MemoryLogStore: an in-memory LogStore for tests of the replication core and for simulation.
// It follows exactly the rules of RocksLogStore: writes are planned by the same PlanWrites
// (storage/write_plan.h), records are stored in the storage/record.h encoding, and Scan /
// ReadOrigin use the same read rules (storage/read_rules.h).
//
// Every call is one atomic, immediately "durable" write. Test controls:
//  - the constructor takes the incarnation, so a test can simulate a wiped data directory by
//    building a new store with another incarnation;
//  - FailWrites(s) makes every later write fail with s (a failed fsync: sticky, reads go on);
//  - DropUnsyncedWrites() simulates a crash's loss of the push cursors written since the last
//    synced write (RocksDB writes them without fsync; a later synced write makes them durable).
// Like RocksLogStore it keeps a recipient index (a Scan with a recipient visits only that
// recipient's messages) and reports durable writes to an AppendNotifier (SetAppendNotifier).
//
// Thread safety: all methods may be called concurrently; one mutex serializes them, so a run is
// deterministic given the order of calls. Scan visitors run without the lock held and may call
// back into the store.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dsm/log_store.h"
#include "dsm/message.h"
#include "dsm/status.h"
#include "storage/append_notifier.h"
#include "storage/write_plan.h"

namespace dsm {

class MemoryLogStore final : public LogStore {
 public:
  // stream_id() is "<node_id>@<incarnation>".
  MemoryLogStore(std::string node_id, std::string incarnation);
  MemoryLogStore(const MemoryLogStore&) = delete;
  MemoryLogStore& operator=(const MemoryLogStore&) = delete;

  const std::string& node_id() const override { return node_id_; }
  const std::string& stream_id() const override { return stream_id_; }

  Result<std::vector<WriteOutcome>> Append(std::vector<Message> msgs) override;
  Result<std::vector<WriteOutcome>> Apply(std::vector<Message> msgs,
                                          const std::string& peer_url = {},
                                          const PullCursor* cursor = nullptr) override;

  Result<std::optional<Message>> Get(uint64_t seq) const override;
  Result<std::optional<Message>> FindByMsgId(const std::string& msg_id) const override;
  Status Scan(const ScanOptions& opts, const MessageVisitor& visit) const override;
  Result<std::vector<Message>> ReadOrigin(const std::string& origin, uint64_t after, size_t limit,
                                          size_t max_bytes) const override;

  uint64_t LastSeq() const override;
  uint64_t HighWater(const std::string& origin) const override;
  std::map<std::string, uint64_t> HighWaters() const override;

  uint64_t PushCursor(const std::string& peer_url) const override;
  Status SetPushCursor(const std::string& peer_url, uint64_t origin_seq) override;
  PullCursor GetPullCursor(const std::string& peer_url) const override;

  Status WriteHealth() const override;

  // Every later write (Append, Apply, SetPushCursor) fails with `s`. REQUIRES: !s.ok().
  void FailWrites(Status s);
  // Reverts the push cursors to their values at the last synced write.
  void DropUnsyncedWrites();
  // Later writes that append records are reported to `notifier` (nullptr: to nobody), inside
  // the write's critical section as RocksLogStore does. It must outlive its use.
  void SetAppendNotifier(AppendNotifier* notifier);

 private:
  Result<std::vector<WriteOutcome>> Write(const WriteRequest& req);
  // REQUIRES: mu_ held.
  Result<std::optional<Message>> GetLocked(uint64_t seq) const;
  // Scan with a recipient filter, through inbox_, up to seq `bound`. REQUIRES: opts.recipient.
  Status ScanInbox(const ScanOptions& opts, uint64_t bound, const MessageVisitor& visit) const;

  const std::string node_id_;
  const std::string stream_id_;
  WritePlanLookups lookups_;  // called by PlanWrites with mu_ held

  mutable std::mutex mu_;
  std::vector<std::string> records_;                      // guarded by mu_; seq - 1 -> record
  std::map<std::string, uint64_t, std::less<>> msg_ids_;  // guarded by mu_
  // origin -> seqs of its positions 1..n (index origin_seq - 1).
  std::map<std::string, std::vector<uint64_t>, std::less<>> origins_;  // guarded by mu_
  HighWaterMap high_waters_;                                           // guarded by mu_
  // recipient -> seqs of its messages, ascending.
  std::map<std::string, std::vector<uint64_t>, std::less<>> inbox_;    // guarded by mu_
  AppendNotifier* notifier_ = nullptr;                                 // guarded by mu_
  std::map<std::string, PullCursor, std::less<>> pull_cursors_;        // guarded by mu_
  std::map<std::string, uint64_t> push_cursors_;                       // guarded by mu_
  std::map<std::string, uint64_t> synced_push_cursors_;                // guarded by mu_
  Status write_error_;                                                 // guarded by mu_; sticky
};

}  // namespace dsm
