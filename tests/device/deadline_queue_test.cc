#include "device/src/deadline_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

namespace cleave::device {
namespace {

using Clock = DeadlineQueue::Clock;
using std::chrono::milliseconds;

TEST(DeadlineQueueTest, RunsCallbacksInDeadlineOrderIncludingOnesSoonerThanItsPlan) {
  DeadlineQueue queue;
  std::mutex mutex;
  std::vector<int> order;
  std::promise<void> all_ran;
  auto record = [&](int id) {
    return [&, id] {
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(id);
      if (order.size() == 3) all_ran.set_value();
    };
  };
  const Clock::time_point now = Clock::now();
  // The thread first plans to wake for the 300 ms entry; the later ones are sooner.
  queue.Schedule(now + milliseconds(300), record(3));
  queue.Schedule(now + milliseconds(200), record(2));
  queue.Schedule(now + milliseconds(100), record(1));
  ASSERT_EQ(all_ran.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

TEST(DeadlineQueueTest, AnEntryWhoseOwnerIsGoneIsDroppedUnrun) {
  DeadlineQueue queue;
  std::atomic<int> abandoned_runs{0};
  std::promise<void> live_ran;
  const Clock::time_point now = Clock::now();
  {
    // Many answered requests ahead of a pending one: their owners go away at once.
    for (int i = 0; i < 100; ++i) {
      auto owner = std::make_shared<int>(i);
      queue.Schedule(
          now + milliseconds(10 + i), [&] { ++abandoned_runs; }, owner);
    }
  }
  auto pending = std::make_shared<int>(0);
  queue.Schedule(
      now + milliseconds(200), [&] { live_ran.set_value(); }, pending);
  ASSERT_EQ(live_ran.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(abandoned_runs.load(), 0);
}

TEST(DeadlineQueueTest, EntriesWithoutAnOwnerAlwaysRun) {
  DeadlineQueue queue;
  std::promise<void> ran;
  queue.Schedule(Clock::now() - milliseconds(1), [&] { ran.set_value(); });
  EXPECT_EQ(ran.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
}

}  // namespace
}  // namespace cleave::device
