// ManualClock: a Clock that only moves when a test tells it to. Thread-safe.
#pragma once

#include <mutex>

#include "dsm/clock.h"

namespace dsm {

class ManualClock final : public Clock {
 public:
  MonoTime Now() const override {
    std::lock_guard lock(mu_);
    return now_;
  }
  // Wall time moves with monotonic time, from a fixed 2026 epoch.
  double WallSeconds() const override {
    std::lock_guard lock(mu_);
    return 1.79e9 + std::chrono::duration<double>(now_.time_since_epoch()).count();
  }
  void Advance(std::chrono::nanoseconds d) {
    std::lock_guard lock(mu_);
    now_ += d;
  }
  // Moves to `t` if it is later than now.
  void AdvanceTo(MonoTime t) {
    std::lock_guard lock(mu_);
    if (t > now_) now_ = t;
  }

 private:
  mutable std::mutex mu_;
  MonoTime now_ = MonoTime(std::chrono::seconds(1000));
};

}  // namespace dsm
