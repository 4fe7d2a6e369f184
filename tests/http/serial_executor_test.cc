// SerialExecutor (src/node): tasks run one at a time, in order, on one thread that is not the
// caller's; Stop() runs what is queued; a task handed over after Stop() runs at once.
#include "src/node/serial_executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace dsm {
namespace {

TEST(SerialExecutorTest, RunsTasksInOrderOnOneOtherThread) {
  SerialExecutor e;
  e.Start();
  std::mutex mu;
  std::vector<int> order;
  std::set<std::thread::id> threads;
  for (int i = 0; i < 1000; ++i) {
    e.Post([&, i] {
      std::lock_guard lock(mu);
      order.push_back(i);
      threads.insert(std::this_thread::get_id());
    });
  }
  e.Stop();  // runs everything queued first
  ASSERT_EQ(order.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(order[i], i);
  ASSERT_EQ(threads.size(), 1u);
  EXPECT_NE(*threads.begin(), std::this_thread::get_id());
}

TEST(SerialExecutorTest, ATaskMayPostAnother) {
  SerialExecutor e;
  e.Start();
  std::atomic<int> ran{0};
  e.Post([&] {
    ++ran;
    e.Post([&] { ++ran; });
  });
  e.Stop();
  EXPECT_EQ(ran.load(), 2);
}

TEST(SerialExecutorTest, AfterStopTasksRunOnTheCaller) {
  SerialExecutor e;
  e.Start();
  e.Stop();
  std::thread::id where;
  e.Post([&] { where = std::this_thread::get_id(); });
  EXPECT_EQ(where, std::this_thread::get_id());
  SerialExecutor never_started;
  bool ran = false;
  never_started.Post([&] { ran = true; });
  EXPECT_TRUE(ran);
}

// With a tick: it runs when no task is queued, again at the time it returned, after each task,
// and at once after a Wakeup().
TEST(SerialExecutorTest, TickRunsWhenIdleAfterTasksAndOnWakeup) {
  SerialExecutor e;
  std::mutex mu;
  std::condition_variable cv;
  int ticks = 0;
  auto wait_ticks = [&](int n) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(30), [&] { return ticks >= n; });
  };
  e.Start([&] {
    std::lock_guard lock(mu);
    ++ticks;
    cv.notify_all();
    // Far away: only a task or a wakeup brings the next tick.
    return std::chrono::steady_clock::now() + std::chrono::hours(24);
  });
  ASSERT_TRUE(wait_ticks(1));
  e.Wakeup();
  ASSERT_TRUE(wait_ticks(2));
  e.Post([] {});
  ASSERT_TRUE(wait_ticks(3));
  e.Stop();
}

}  // namespace
}  // namespace dsm
