#include "src/node/serial_executor.h"

#include <algorithm>
#include <utility>

namespace dsm {

SerialExecutor::~SerialExecutor() { Stop(); }

void SerialExecutor::Start(std::function<TimePoint()> tick) {
  {
    MutexLock lock(&mu_);
    running_ = true;
  }
  thread_ = std::thread([this, tick = std::move(tick)] { Loop(tick); });
}

void SerialExecutor::Post(std::function<void()> task) {
  {
    MutexLock lock(&mu_);
    if (running_) {
      tasks_.push_back(std::move(task));
      cv_.NotifyOne();
      return;
    }
  }
  task();
}

void SerialExecutor::Wakeup() {
  MutexLock lock(&mu_);
  wakeup_ = true;
  cv_.NotifyOne();
}

void SerialExecutor::Loop(const std::function<TimePoint()>& tick) {
  MutexLock lock(&mu_);
  while (true) {
    // Tasks first (they may make the tick's work due), then the tick.
    while (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.Unlock();
      task();
      lock.Lock();
    }
    if (stopping_) break;
    if (!tick) {
      while (tasks_.empty() && !stopping_) cv_.Wait(&mu_);
      continue;
    }
    wakeup_ = false;
    lock.Unlock();
    const TimePoint next = tick();
    lock.Lock();
    // A wakeup or a task that arrived while the tick ran: go round again.
    if (wakeup_ || stopping_ || !tasks_.empty()) continue;
    // Bounded so that a far-off (or "never") time does not overflow the wait.
    const TimePoint until =
        std::min(next, std::chrono::steady_clock::now() + std::chrono::hours(1));
    while (!wakeup_ && !stopping_ && tasks_.empty()) {
      if (!cv_.WaitUntil(&mu_, until)) break;
    }
  }
  running_ = false;
}

void SerialExecutor::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    cv_.NotifyOne();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace dsm
