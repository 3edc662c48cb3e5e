// A single thread that runs callbacks at their deadlines, for the runtime's per-request edge
// deadlines. Cheap on the common path, where the answer beats the deadline: scheduling wakes
// the thread only when the new deadline is earlier than the one it already sleeps until (with
// requests in flight one after another it is not), and an answered request is never cancelled.
// Instead its entry names an owner (the request): once the owner is gone the entry is dropped
// unrun, in bulk with the others like it, whenever the thread wakes. With a 10 s deadline and a
// request every millisecond the thread wakes about once per 10 s, not once per request; a
// per-request asio timer costs two wake-ups per request instead.
//
// Thread-safety: Schedule may be called from any thread; callbacks run on the queue's thread
// and must not block. The destructor runs nothing still pending and joins the thread.
#ifndef CLEAVE_DEVICE_SRC_DEADLINE_QUEUE_H_
#define CLEAVE_DEVICE_SRC_DEADLINE_QUEUE_H_

#include <chrono>
#include <functional>
#include <memory>
#include <queue>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "cleave/common/mutex.h"

namespace cleave::device {

class DeadlineQueue {
 public:
  using Clock = std::chrono::steady_clock;

  DeadlineQueue() : thread_([this] { Loop(); }) {}
  ~DeadlineQueue() {
    {
      common::MutexLock lock(&mutex_);
      stopping_ = true;
    }
    wake_.SignalAll();
    thread_.join();
  }
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;

  // Runs `callback` at `deadline` (at once if it has passed).
  void Schedule(Clock::time_point deadline, std::function<void()> callback) {
    Push({deadline, 0, std::move(callback), {}, false});
  }

  // The same, unless `owner` has expired by then: the entry is then dropped unrun.
  void Schedule(Clock::time_point deadline, std::function<void()> callback,
                std::weak_ptr<const void> owner) {
    Push({deadline, 0, std::move(callback), std::move(owner), true});
  }

 private:
  struct Entry {
    Clock::time_point deadline;
    uint64_t order;  // keeps equal deadlines first-in, first-out
    std::function<void()> callback;
    std::weak_ptr<const void> owner;
    bool owned = false;
    bool Abandoned() const { return owned && owner.expired(); }
    bool operator>(const Entry& other) const {
      return deadline != other.deadline ? deadline > other.deadline : order > other.order;
    }
  };

  void Push(Entry entry) ABSL_LOCKS_EXCLUDED(mutex_) {
    bool sooner = false;
    {
      common::MutexLock lock(&mutex_);
      entry.order = next_order_++;
      // The thread re-plans by itself when it wakes or finishes running callbacks.
      sooner = entry.deadline < planned_;
      if (sooner) planned_ = entry.deadline;
      entries_.push(std::move(entry));
    }
    if (sooner) wake_.Signal();
  }

  void Loop() ABSL_LOCKS_EXCLUDED(mutex_) {
    common::MutexLock lock(&mutex_);
    while (!stopping_) {
      while (!entries_.empty() && entries_.top().Abandoned()) entries_.pop();
      if (entries_.empty()) {
        planned_ = Clock::time_point::max();
        wake_.Wait(&mutex_);
        continue;
      }
      if (Clock::now() < entries_.top().deadline) {
        planned_ = entries_.top().deadline;
        wake_.WaitUntil(&mutex_, planned_);
        continue;
      }
      planned_ = Clock::time_point::min();  // running: Schedule need not wake us
      std::function<void()> callback = std::move(const_cast<Entry&>(entries_.top()).callback);
      entries_.pop();
      lock.Unlock();
      callback();
      lock.Lock();
    }
  }

  common::Mutex mutex_;
  common::CondVar wake_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> entries_
      ABSL_GUARDED_BY(mutex_);
  uint64_t next_order_ ABSL_GUARDED_BY(mutex_) = 0;
  // When the thread will next look at the entries (max: only when woken; min: now).
  Clock::time_point planned_ ABSL_GUARDED_BY(mutex_) = Clock::time_point::max();
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_SRC_DEADLINE_QUEUE_H_
