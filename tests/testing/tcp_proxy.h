// TcpProxy: a fault-injecting TCP forwarder for real-process tests. It listens on
// 127.0.0.1:<ephemeral> and forwards every accepted connection to 127.0.0.1:<target port>, with
// one thread running a poll() loop. A node started with a peer URL pointing at a proxy can have
// that one link (its requests to that peer, and their answers) cut, healed or slowed down.
//
//  - Cut(kBlackhole): like a network partition. Established connections freeze (nothing is
//    forwarded either way, nothing is closed), new connections are accepted and held silent, so
//    clients run into their timeouts.
//  - Cut(kReset): established connections are reset (RST) and new ones are accepted and reset at
//    once, like a peer whose port refuses.
//  - Heal(): forwarding resumes. Connections accepted while cut are reset so that clients
//    reconnect; connections frozen by a blackhole resume where they stopped.
//  - SetDelay(d): every chunk is held for `d` before it is forwarded (both directions).
// Cut() and Heal() take effect before they return: once Cut() returns, no byte crosses.
//
// Thread safety: all public methods may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>

#include "common/thread_annotations.h"

namespace dsm::testing {

class TcpProxy {
 public:
  enum class CutMode { kBlackhole, kReset };

  explicit TcpProxy(uint16_t target_port);
  ~TcpProxy();  // stops the thread and closes every socket
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  uint16_t port() const { return listen_port_; }

  void Cut(CutMode mode = CutMode::kBlackhole) LOCKS_EXCLUDED(mu_);
  void Heal() LOCKS_EXCLUDED(mu_);
  void SetDelay(std::chrono::milliseconds delay) LOCKS_EXCLUDED(mu_);
  bool IsCut() const LOCKS_EXCLUDED(mu_);

  // Connections accepted so far (shows that traffic really goes through the proxy).
  uint64_t accepted() const LOCKS_EXCLUDED(mu_);

 private:
  struct Loop;  // the poll loop's state, touched only by the proxy thread
  enum class State { kOpen, kBlackhole, kReset };

  void Run() LOCKS_EXCLUDED(mu_);
  // Asks the thread to apply the state and waits until it has.
  void Apply(State state) LOCKS_EXCLUDED(mu_);
  void Wake();

  uint16_t target_port_;
  uint16_t listen_port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd

  mutable Mutex mu_;
  // Notified by the thread after each loop iteration (applied_ caught up with requested_) and
  // when it ends.
  CondVar applied_cv_;
  State state_ GUARDED_BY(mu_) = State::kOpen;
  std::chrono::milliseconds delay_ GUARDED_BY(mu_) = std::chrono::milliseconds(0);
  uint64_t requested_ GUARDED_BY(mu_) = 0;  // generation asked for
  uint64_t applied_ GUARDED_BY(mu_) = 0;    // generation the thread has applied
  uint64_t accepted_ GUARDED_BY(mu_) = 0;
  bool stop_ GUARDED_BY(mu_) = false;

  std::thread thread_;
};

}  // namespace dsm::testing
