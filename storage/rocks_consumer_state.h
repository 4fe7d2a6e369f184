// RocksConsumerState: the ConsumerStateStore of a node, kept in the "consumers" column family of
// the node's RocksDB database (key schema in storage/consumer_schema.h). Owned by RocksLogStore,
// which opens the family with the others.
//
// Commits are group-committed by one commit thread: it takes every commit queued while the
// previous write was being made, writes them as ONE WriteBatch (sync = the store's sync option),
// then calls their callbacks in order. A failed write is sticky. The log's writes and these are
// independent (RocksDB orders them in its own write-ahead log).
//
// Thread safety: all methods may be called from any thread. The destructor writes what is queued
// and joins the commit thread; no call may start once it has begun.
#pragma once

#include <deque>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"
#include "dsm/consumer_state.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace dsm {

class RocksConsumerState final : public ConsumerStateStore {
 public:
  // `db` and `family` must outlive the store.
  RocksConsumerState(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family, bool sync);
  ~RocksConsumerState() override;
  RocksConsumerState(const RocksConsumerState&) = delete;
  RocksConsumerState& operator=(const RocksConsumerState&) = delete;

  Result<std::vector<StoredConsumer>> Load() const override;
  void Commit(std::vector<ConsumerChange> changes, CommitDone done) override LOCKS_EXCLUDED(mu_);

  // Synced writes made so far (each carries one or more commits).
  uint64_t writes() const LOCKS_EXCLUDED(mu_);

 private:
  struct Pending {
    std::vector<ConsumerChange> changes;
    CommitDone done;
  };
  void Run() LOCKS_EXCLUDED(mu_);  // the commit thread

  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const family_;
  const bool sync_;

  mutable Mutex mu_;
  // Notified by Commit() and by the destructor.
  CondVar cv_;
  std::deque<Pending> queue_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  Status error_ GUARDED_BY(mu_);  // sticky
  uint64_t writes_ GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace dsm
