// A single thread that runs callbacks at their deadlines, for the runtime's per-request edge
// deadlines. Cheap on the common path, where the answer beats the deadline: scheduling wakes
// the thread only when the new deadline is the earliest pending one (with requests in flight
// one after another it is not), and a settled request is never cancelled — its callback runs
// at the deadline and finds nothing to do. A per-request asio timer costs two wake-ups instead.
//
// Thread-safety: Schedule may be called from any thread; callbacks run on the queue's thread
// and must not block. The destructor runs nothing still pending and joins the thread.
#ifndef CLEAVE_DEVICE_SRC_DEADLINE_QUEUE_H_
#define CLEAVE_DEVICE_SRC_DEADLINE_QUEUE_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace cleave::device {

class DeadlineQueue {
 public:
  using Clock = std::chrono::steady_clock;

  DeadlineQueue() : thread_([this] { Loop(); }) {}
  ~DeadlineQueue() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;

  // Runs `callback` at `deadline` (at once if it has passed).
  void Schedule(Clock::time_point deadline, std::function<void()> callback) {
    bool earliest = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      earliest = entries_.empty() || deadline < entries_.top().deadline;
      entries_.push({deadline, next_order_++, std::move(callback)});
    }
    if (earliest) wake_.notify_one();
  }

 private:
  struct Entry {
    Clock::time_point deadline;
    uint64_t order;  // keeps equal deadlines first-in, first-out
    std::function<void()> callback;
    bool operator>(const Entry& other) const {
      return deadline != other.deadline ? deadline > other.deadline : order > other.order;
    }
  };

  void Loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      if (entries_.empty()) {
        wake_.wait(lock);
        continue;
      }
      if (Clock::now() < entries_.top().deadline) {
        wake_.wait_until(lock, entries_.top().deadline);
        continue;
      }
      std::function<void()> callback = std::move(const_cast<Entry&>(entries_.top()).callback);
      entries_.pop();
      lock.unlock();
      callback();
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> entries_;
  uint64_t next_order_ = 0;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_SRC_DEADLINE_QUEUE_H_
