// SerialExecutor: one thread that runs the tasks handed to it, one at a time, in the order they
// were handed over. The runtime runs the replication core's log work on one (reading push
// batches, writing pulled pages and push cursors: Node::SetStorageExecutor), so a slow disk never
// holds up the thread that handles peer answers and timers.
//
// Thread safety: Post() may be called from any thread, also from a task. Start() and Stop() are
// called by the owner. After Stop(), Post() runs the task at once on the calling thread, so work
// handed over during shutdown is never lost.
#pragma once

#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "common/thread_annotations.h"

namespace dsm {

class SerialExecutor {
 public:
  SerialExecutor() = default;
  ~SerialExecutor();  // Stop()
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  // Starts the thread. REQUIRES: called at most once.
  void Start() LOCKS_EXCLUDED(mu_);
  // Queues `task` (or runs it here once stopped).
  void Post(std::function<void()> task) LOCKS_EXCLUDED(mu_);
  // Runs what is still queued, then joins the thread. Idempotent.
  void Stop() LOCKS_EXCLUDED(mu_);

 private:
  void Loop() LOCKS_EXCLUDED(mu_);

  Mutex mu_;
  CondVar cv_;  // notified by Post() (a task is queued) and Stop()
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  // Between Start() and the thread's exit: Post() queues. Otherwise it runs the task itself.
  bool running_ GUARDED_BY(mu_) = false;
  std::thread thread_;  // written by Start(), joined by Stop(): the owner's thread only
};

}  // namespace dsm
