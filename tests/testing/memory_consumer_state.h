// MemoryConsumerState: an in-memory ConsumerStateStore for unit tests of durable consumers. What
// Load() returns is what was committed (the durable state).
//
// Test controls:
//  - Hold(true): commits are queued, not written, until Release() writes them all as one group
//    (so a test can look at a consumer while its acknowledgements are not yet durable);
//  - Crash(): queued commits are lost and their callbacks never run (a kill -9 before the fsync);
//  - FailWrites(s): every later commit fails with s (sticky, like a failed fsync).
//
// Thread safety: all methods may be called from any thread; callbacks run without the lock.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "dsm/consumer_state.h"

namespace dsm {

class MemoryConsumerState final : public ConsumerStateStore {
 public:
  Result<std::vector<StoredConsumer>> Load() const override LOCKS_EXCLUDED(mu_);
  void Commit(std::vector<ConsumerChange> changes, CommitDone done) override LOCKS_EXCLUDED(mu_);

  void Hold(bool hold) LOCKS_EXCLUDED(mu_);
  // Writes the queued commits (one group) and runs their callbacks.
  void Release() LOCKS_EXCLUDED(mu_);
  void Crash() LOCKS_EXCLUDED(mu_);
  void FailWrites(Status s) LOCKS_EXCLUDED(mu_);

  size_t queued() const LOCKS_EXCLUDED(mu_);
  // Groups written so far.
  size_t writes() const LOCKS_EXCLUDED(mu_);

 private:
  void Apply(const ConsumerChange& c) EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  std::map<std::string, StoredConsumer> stored_ GUARDED_BY(mu_);
  bool hold_ GUARDED_BY(mu_) = false;
  std::vector<std::pair<std::vector<ConsumerChange>, CommitDone>> queued_ GUARDED_BY(mu_);
  Status error_ GUARDED_BY(mu_);
  size_t writes_ GUARDED_BY(mu_) = 0;
};

}  // namespace dsm
