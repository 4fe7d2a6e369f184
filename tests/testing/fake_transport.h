// FakeTransport: a Transport that records every request and lets the test answer each one by
// hand, in any order. Thread-safe (a mutex), though tests normally drive it from one thread.
#pragma once

#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "common/thread_annotations.h"
#include "dsm/transport.h"

namespace dsm {

class FakeTransport final : public Transport {
 public:
  struct HeartbeatCall {
    size_t peer;
    std::function<void(Result<HeartbeatReply>)> done;
  };
  struct ReplicateCall {
    size_t peer;
    std::vector<Message> msgs;
    std::function<void(Result<ReplicateReply>)> done;
    PushSkip skip;
  };
  struct SyncCall {
    size_t peer;
    uint64_t since;
    size_t limit;
    std::map<std::string, uint64_t> have;
    std::function<void(Result<SyncReply>)> done;
  };

  void Heartbeat(size_t peer, std::function<void(Result<HeartbeatReply>)> done) override
      LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    heartbeats_.push_back({peer, std::move(done)});
  }
  void Replicate(size_t peer, std::vector<Message> msgs, PushSkip skip,
                 std::function<void(Result<ReplicateReply>)> done) override LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    replicates_.push_back({peer, std::move(msgs), std::move(done), std::move(skip)});
  }
  void Sync(size_t peer, uint64_t since, size_t limit, std::map<std::string, uint64_t> have,
            std::function<void(Result<SyncReply>)> done) override LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    syncs_.push_back({peer, since, limit, std::move(have), std::move(done)});
  }

  void SyncStream(size_t peer, std::string origin, uint64_t since, size_t limit,
                  std::function<void(Result<SyncReply>)> done) override LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    stream_syncs_.push_back({peer, std::move(origin), since, limit, std::move(done)});
  }
  struct StreamSyncCall {
    size_t peer;
    std::string origin;
    uint64_t since;
    size_t limit;
    std::function<void(Result<SyncReply>)> done;
  };
  StreamSyncCall TakeStreamSync() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return Take(stream_syncs_);
  }
  size_t pending_stream_syncs() const LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return stream_syncs_.size();
  }

  // Removes and returns the oldest pending call of a kind (REQUIRES: one is pending).
  HeartbeatCall TakeHeartbeat() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return Take(heartbeats_);
  }
  ReplicateCall TakeReplicate() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return Take(replicates_);
  }
  SyncCall TakeSync() LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return Take(syncs_);
  }

  size_t pending_heartbeats() const LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return heartbeats_.size();
  }
  size_t pending_replicates() const LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return replicates_.size();
  }
  size_t pending_syncs() const LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    return syncs_.size();
  }

  // Answers every pending heartbeat of `peer` (all peers when peer == SIZE_MAX). The answers
  // are given without the lock (a completion may issue new calls).
  void AnswerHeartbeats(Result<HeartbeatReply> reply, size_t peer = SIZE_MAX) LOCKS_EXCLUDED(mu_) {
    std::vector<HeartbeatCall> calls;
    {
      MutexLock lock(&mu_);
      calls = TakeAll(heartbeats_, peer);
    }
    for (auto& c : calls) c.done(reply);
  }
  void AnswerSyncs(Result<SyncReply> reply, size_t peer = SIZE_MAX) LOCKS_EXCLUDED(mu_) {
    std::vector<SyncCall> calls;
    {
      MutexLock lock(&mu_);
      calls = TakeAll(syncs_, peer);
    }
    for (auto& c : calls) c.done(reply);
  }

 private:
  // The oldest call of queue `q`. The caller holds mu_ (q is one of the guarded queues).
  template <typename T>
  static T Take(std::deque<T>& q) {
    T c = std::move(q.front());
    q.pop_front();
    return c;
  }
  // The calls of `peer` (all when SIZE_MAX) in queue `q`. The caller holds mu_.
  template <typename T>
  static std::vector<T> TakeAll(std::deque<T>& q, size_t peer) {
    std::vector<T> out;
    for (auto it = q.begin(); it != q.end();) {
      if (peer == SIZE_MAX || it->peer == peer) {
        out.push_back(std::move(*it));
        it = q.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  mutable Mutex mu_;
  std::deque<HeartbeatCall> heartbeats_ GUARDED_BY(mu_);
  std::deque<ReplicateCall> replicates_ GUARDED_BY(mu_);
  std::deque<SyncCall> syncs_ GUARDED_BY(mu_);
  std::deque<StreamSyncCall> stream_syncs_ GUARDED_BY(mu_);
};

}  // namespace dsm
