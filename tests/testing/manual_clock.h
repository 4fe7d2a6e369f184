// ManualClock: a Clock that only moves when a test tells it to. NodeClock: one simulated node's
// view of a shared ManualClock, whose monotonic time can jump ahead of the others' (never back)
// and whose wall time can be set off either way (a clock that jumps on one machine).
//
// Thread safety: both are thread-safe (one mutex each).
#pragma once

#include <chrono>

#include "common/thread_annotations.h"
#include "dsm/clock.h"

namespace dsm {

class ManualClock final : public Clock {
 public:
  MonoTime Now() const override {
    MutexLock lock(&mu_);
    return now_;
  }
  // Wall time moves with monotonic time, from a fixed 2026 epoch.
  double WallSeconds() const override {
    MutexLock lock(&mu_);
    return 1.79e9 + std::chrono::duration<double>(now_.time_since_epoch()).count();
  }
  void Advance(std::chrono::nanoseconds d) {
    MutexLock lock(&mu_);
    now_ += d;
  }
  // Moves to `t` if it is later than now.
  void AdvanceTo(MonoTime t) {
    MutexLock lock(&mu_);
    if (t > now_) now_ = t;
  }

 private:
  mutable Mutex mu_;
  MonoTime now_ GUARDED_BY(mu_) = MonoTime(std::chrono::seconds(1000));
};

class NodeClock final : public Clock {
 public:
  // `base` must outlive the NodeClock.
  explicit NodeClock(const Clock* base) : base_(base) {}

  MonoTime Now() const override {
    MutexLock lock(&mu_);
    return base_->Now() + mono_ahead_;
  }
  double WallSeconds() const override {
    MutexLock lock(&mu_);
    return base_->WallSeconds() + wall_offset_;
  }
  // Monotonic time jumps forward by `d` on this node only. REQUIRES: d >= 0.
  void JumpAhead(std::chrono::nanoseconds d) {
    MutexLock lock(&mu_);
    if (d > std::chrono::nanoseconds::zero()) mono_ahead_ += d;
  }
  // Wall time is set off by `seconds` more (either sign).
  void ShiftWall(double seconds) {
    MutexLock lock(&mu_);
    wall_offset_ += seconds;
  }
  // How far this node's monotonic time runs ahead of the base clock.
  std::chrono::nanoseconds ahead() const {
    MutexLock lock(&mu_);
    return mono_ahead_;
  }

 private:
  const Clock* const base_;
  mutable Mutex mu_;
  std::chrono::nanoseconds mono_ahead_ GUARDED_BY(mu_){0};
  double wall_offset_ GUARDED_BY(mu_) = 0;
};

}  // namespace dsm
