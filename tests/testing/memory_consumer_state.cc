#include "tests/testing/memory_consumer_state.h"

#include <algorithm>

namespace dsm {

Result<std::vector<StoredConsumer>> MemoryConsumerState::Load() const {
  MutexLock lock(&mu_);
  std::vector<StoredConsumer> out;
  for (const auto& [name, c] : stored_) out.push_back(c);
  return out;
}

void MemoryConsumerState::Apply(const ConsumerChange& c) {
  if (c.erase) stored_.erase(c.name);
  if (c.create) stored_[c.name] = *c.create;
  auto it = stored_.find(c.name);
  if (it == stored_.end()) return;
  StoredConsumer& s = it->second;
  if (c.floor) {
    s.floor = *c.floor;
    std::erase_if(s.acked, [&](uint64_t seq) { return seq <= s.floor; });
  }
  if (c.session) s.session = *c.session;
  for (uint64_t seq : c.acks) {
    if (seq > s.floor && std::find(s.acked.begin(), s.acked.end(), seq) == s.acked.end()) {
      s.acked.push_back(seq);
    }
  }
  std::sort(s.acked.begin(), s.acked.end());
  for (const DeadLetter& d : c.dead) {
    std::erase_if(s.dead, [&](const DeadLetter& e) { return e.seq == d.seq; });
    s.dead.push_back(d);
  }
  std::sort(s.dead.begin(), s.dead.end(),
            [](const DeadLetter& a, const DeadLetter& b) { return a.seq < b.seq; });
}

void MemoryConsumerState::Commit(std::vector<ConsumerChange> changes, CommitDone done) {
  Status outcome;
  {
    MutexLock lock(&mu_);
    if (hold_) {
      queued_.emplace_back(std::move(changes), std::move(done));
      return;
    }
    outcome = error_;
    if (outcome.ok()) {
      for (const ConsumerChange& c : changes) Apply(c);
      ++writes_;
    }
  }
  done(outcome);
}

void MemoryConsumerState::Hold(bool hold) {
  MutexLock lock(&mu_);
  hold_ = hold;
}

void MemoryConsumerState::Release() {
  std::vector<std::pair<std::vector<ConsumerChange>, CommitDone>> group;
  Status outcome;
  {
    MutexLock lock(&mu_);
    group.swap(queued_);
    outcome = error_;
    if (outcome.ok() && !group.empty()) {
      for (const auto& [changes, done] : group) {
        for (const ConsumerChange& c : changes) Apply(c);
      }
      ++writes_;
    }
  }
  for (auto& [changes, done] : group) done(outcome);
}

void MemoryConsumerState::Crash() {
  MutexLock lock(&mu_);
  queued_.clear();
}

void MemoryConsumerState::FailWrites(Status s) {
  MutexLock lock(&mu_);
  error_ = std::move(s);
}

size_t MemoryConsumerState::queued() const {
  MutexLock lock(&mu_);
  return queued_.size();
}

size_t MemoryConsumerState::writes() const {
  MutexLock lock(&mu_);
  return writes_;
}

}  // namespace dsm
