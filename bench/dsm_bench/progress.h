// Progress: the one-line progress report dsm-bench keeps on stderr while it runs - the phase, the
// time spent in it and its planned length, messages done, the current rate and errors. On a
// terminal the line is redrawn twice a second; otherwise a line is printed every few seconds and
// at the end of each phase.
//
// Thread safety: Add*/counters from any thread; Begin/End/Note from the orchestrating thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "common/thread_annotations.h"

namespace dsm::bench {

class Progress {
 public:
  // `enabled` false prints nothing (--no-progress).
  explicit Progress(bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Starts a phase; `planned_s` <= 0 when its length is unknown.
  void Begin(const std::string& phase, double planned_s) LOCKS_EXCLUDED(mu_);
  // Ends the phase with a closing line (`summary` appended).
  void End(const std::string& summary) LOCKS_EXCLUDED(mu_);
  // A line of its own (e.g. a warning), without disturbing the progress line.
  void Note(const std::string& line) LOCKS_EXCLUDED(mu_);

  void AddMessages(uint64_t n) { messages_.fetch_add(n, std::memory_order_relaxed); }
  void AddError() { errors_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void Run() LOCKS_EXCLUDED(mu_);
  std::string Line() EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Print(const std::string& line, bool final) EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const bool enabled_;
  const bool tty_;
  const int64_t start_ns_;

  Mutex mu_;
  // Notified by the destructor.
  CondVar cv_;
  bool stop_ GUARDED_BY(mu_) = false;
  std::string phase_ GUARDED_BY(mu_);
  double planned_s_ GUARDED_BY(mu_) = 0;
  int64_t phase_start_ns_ GUARDED_BY(mu_) = 0;
  int64_t last_print_ns_ GUARDED_BY(mu_) = 0;
  uint64_t rate_mark_messages_ GUARDED_BY(mu_) = 0;
  int64_t rate_mark_ns_ GUARDED_BY(mu_) = 0;
  double rate_ GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> errors_{0};
  std::thread thread_;
};

}  // namespace dsm::bench
