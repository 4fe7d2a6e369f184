// SerialExecutor: one thread that runs the tasks handed to it, one at a time, in the order they
// were handed over. The runtime has two: the replication thread, which takes the Node's events
// (peer answers, log completions: Node::SetExecutor) and, given a `tick`, runs it whenever no
// task is queued and waits until the time it returns (Node::Tick / NextDeadline); and the
// storage thread for the core's log work (Node::SetStorageExecutor), so a slow disk never holds
// up the replication thread.
//
// Thread safety: Post() and Wakeup() may be called from any thread, also from a task. Start()
// and Stop() are called by the owner. Before Start() and after Stop(), Post() runs the task at
// once on the calling thread, so work handed over during shutdown is never lost.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <thread>

#include "common/thread_annotations.h"

namespace dsm {

class SerialExecutor {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  SerialExecutor() = default;
  ~SerialExecutor();  // Stop()
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  // Starts the thread. `tick`, if given, runs whenever the queue is empty and returns when it
  // wants to run again; a Post() or a Wakeup() cuts that wait short.
  // REQUIRES: called at most once.
  void Start(std::function<TimePoint()> tick = nullptr) LOCKS_EXCLUDED(mu_);
  // Queues `task` (or runs it here when the thread is not running).
  void Post(std::function<void()> task) LOCKS_EXCLUDED(mu_);
  // Makes the thread run `tick` again soon (its next time may have moved earlier).
  void Wakeup() LOCKS_EXCLUDED(mu_);
  // Runs what is still queued, then joins the thread. Idempotent.
  void Stop() LOCKS_EXCLUDED(mu_);

 private:
  void Loop(const std::function<TimePoint()>& tick) LOCKS_EXCLUDED(mu_);

  Mutex mu_;
  CondVar cv_;  // notified by Post() (a task is queued), Wakeup() and Stop()
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  bool wakeup_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  // Between Start() and the thread's exit: Post() queues. Otherwise it runs the task itself.
  bool running_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // written by Start(), joined by Stop(): the owner's thread only
};

}  // namespace dsm
