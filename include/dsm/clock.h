// Clock: monotonic time for every timeout and deadline, wall time only for display and `ts`.
// SystemClock is the real one; tests use ManualClock (dsm_testing), which only moves when told.
// Implementations are thread-safe.
#pragma once

#include <chrono>

namespace dsm {

using MonoTime = std::chrono::steady_clock::time_point;
using Millis = std::chrono::milliseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime Now() const = 0;
  // Seconds since the Unix epoch.
  virtual double WallSeconds() const = 0;
};

class SystemClock final : public Clock {
 public:
  MonoTime Now() const override { return std::chrono::steady_clock::now(); }
  double WallSeconds() const override {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace dsm
