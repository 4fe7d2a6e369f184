#include "src/node/serial_executor.h"

#include <utility>

namespace dsm {

SerialExecutor::~SerialExecutor() { Stop(); }

void SerialExecutor::Start() {
  {
    MutexLock lock(&mu_);
    running_ = true;
  }
  thread_ = std::thread([this] { Loop(); });
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

void SerialExecutor::Loop() {
  MutexLock lock(&mu_);
  while (true) {
    while (tasks_.empty() && !stopping_) cv_.Wait(&mu_);
    if (tasks_.empty()) break;  // stopping, and nothing left
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.Unlock();
    task();
    lock.Lock();
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
