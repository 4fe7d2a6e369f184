// FakeTransport: a Transport that records every request and lets the test answer each one by
// hand, in any order. Thread-safe (a mutex), though tests normally drive it from one thread.
#pragma once

#include <deque>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

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
  };
  struct SyncCall {
    size_t peer;
    uint64_t since;
    size_t limit;
    std::map<std::string, uint64_t> have;
    std::function<void(Result<SyncReply>)> done;
  };

  void Heartbeat(size_t peer, std::function<void(Result<HeartbeatReply>)> done) override {
    std::lock_guard lock(mu_);
    heartbeats_.push_back({peer, std::move(done)});
  }
  void Replicate(size_t peer, std::vector<Message> msgs,
                 std::function<void(Result<ReplicateReply>)> done) override {
    std::lock_guard lock(mu_);
    replicates_.push_back({peer, std::move(msgs), std::move(done)});
  }
  void Sync(size_t peer, uint64_t since, size_t limit, std::map<std::string, uint64_t> have,
            std::function<void(Result<SyncReply>)> done) override {
    std::lock_guard lock(mu_);
    syncs_.push_back({peer, since, limit, std::move(have), std::move(done)});
  }

  void SyncStream(size_t peer, std::string origin, uint64_t since, size_t limit,
                  std::function<void(Result<SyncReply>)> done) override {
    std::lock_guard lock(mu_);
    stream_syncs_.push_back({peer, std::move(origin), since, limit, std::move(done)});
  }
  struct StreamSyncCall {
    size_t peer;
    std::string origin;
    uint64_t since;
    size_t limit;
    std::function<void(Result<SyncReply>)> done;
  };
  StreamSyncCall TakeStreamSync() { return Take(stream_syncs_); }
  size_t pending_stream_syncs() const { return Size(stream_syncs_); }

  // Removes and returns the oldest pending call of a kind (REQUIRES: one is pending).
  HeartbeatCall TakeHeartbeat() { return Take(heartbeats_); }
  ReplicateCall TakeReplicate() { return Take(replicates_); }
  SyncCall TakeSync() { return Take(syncs_); }

  size_t pending_heartbeats() const { return Size(heartbeats_); }
  size_t pending_replicates() const { return Size(replicates_); }
  size_t pending_syncs() const { return Size(syncs_); }

  // Answers every pending heartbeat of `peer` (all peers when peer == SIZE_MAX).
  void AnswerHeartbeats(Result<HeartbeatReply> reply, size_t peer = SIZE_MAX) {
    for (auto& c : TakeAll(heartbeats_, peer)) c.done(reply);
  }
  void AnswerSyncs(Result<SyncReply> reply, size_t peer = SIZE_MAX) {
    for (auto& c : TakeAll(syncs_, peer)) c.done(reply);
  }

 private:
  template <typename T>
  T Take(std::deque<T>& q) {
    std::lock_guard lock(mu_);
    T c = std::move(q.front());
    q.pop_front();
    return c;
  }
  template <typename T>
  std::vector<T> TakeAll(std::deque<T>& q, size_t peer) {
    std::lock_guard lock(mu_);
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
  template <typename T>
  size_t Size(const std::deque<T>& q) const {
    std::lock_guard lock(mu_);
    return q.size();
  }

  mutable std::mutex mu_;
  std::deque<HeartbeatCall> heartbeats_;
  std::deque<ReplicateCall> replicates_;
  std::deque<SyncCall> syncs_;
  std::deque<StreamSyncCall> stream_syncs_;
};

}  // namespace dsm
