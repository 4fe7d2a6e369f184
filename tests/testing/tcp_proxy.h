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
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace dsm::testing {

class TcpProxy {
 public:
  enum class CutMode { kBlackhole, kReset };

  explicit TcpProxy(uint16_t target_port);
  ~TcpProxy();  // stops the thread and closes every socket
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  uint16_t port() const { return listen_port_; }

  void Cut(CutMode mode = CutMode::kBlackhole);
  void Heal();
  void SetDelay(std::chrono::milliseconds delay);
  bool IsCut() const;

  // Connections accepted so far (shows that traffic really goes through the proxy).
  uint64_t accepted() const;

 private:
  struct Loop;  // the poll loop's state, touched only by the proxy thread
  enum class State { kOpen, kBlackhole, kReset };

  void Run();
  // Asks the thread to apply the state and waits until it has.
  void Apply(State state);
  void Wake();

  uint16_t target_port_;
  uint16_t listen_port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd

  mutable std::mutex mu_;
  std::condition_variable applied_cv_;  // notified by the thread after each loop iteration
  State state_ = State::kOpen;          // GUARDED_BY(mu_)
  std::chrono::milliseconds delay_{0};  // GUARDED_BY(mu_)
  uint64_t requested_ = 0;              // GUARDED_BY(mu_): generation asked for
  uint64_t applied_ = 0;                // GUARDED_BY(mu_): generation the thread has applied
  uint64_t accepted_ = 0;               // GUARDED_BY(mu_)
  bool stop_ = false;                   // GUARDED_BY(mu_)

  std::thread thread_;
};

}  // namespace dsm::testing
