// Mutexes that clang's thread-safety analysis understands (-Wthread-safety; LevelDB's
// port::Mutex is the model): the standard ones carry no capability annotations, so members
// marked ABSL_GUARDED_BY(a std::mutex) would go unchecked. These are thin wrappers over
// std::mutex and std::condition_variable with the same behaviour and cost.
//
//   Mutex mutex_;
//   int count_ ABSL_GUARDED_BY(mutex_);
//   void Add() ABSL_LOCKS_EXCLUDED(mutex_) {
//     MutexLock lock(&mutex_);
//     ++count_;  // checked at compile time: reading count_ without mutex_ is an error
//   }
//
// A function that must be called with a mutex held says so with
// ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_). scripts/thread_safety.sh runs the analysis.
//
// Thread-safety: these are the primitives; every method is thread-safe as its std one is.
#ifndef CLEAVE_COMMON_MUTEX_H_
#define CLEAVE_COMMON_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace cleave::common {

class CondVar;

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mutex_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mutex_.unlock(); }
  // Tells the analysis the caller holds this (where it cannot see so, e.g. in a callback the
  // holder runs). No run-time check.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {}

 private:
  friend class CondVar;
  std::mutex mutex_;
};

// A mutex its holder may lock again (the standard recursive_mutex, annotated). The analysis
// sees each scope's own Lock and Unlock; re-entry happens through calls it does not follow.
class ABSL_LOCKABLE RecursiveMutex {
 public:
  RecursiveMutex() = default;
  RecursiveMutex(const RecursiveMutex&) = delete;
  RecursiveMutex& operator=(const RecursiveMutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mutex_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mutex_.unlock(); }

 private:
  std::recursive_mutex mutex_;
};

// Holds `mutex` for its scope. Unlock() and Lock() let a scope release it for a while (say,
// to call out) and take it back; the destructor releases it only when held.
template <typename M>
class ABSL_SCOPED_LOCKABLE BasicMutexLock {
 public:
  explicit BasicMutexLock(M* mutex) ABSL_EXCLUSIVE_LOCK_FUNCTION(mutex) : mutex_(mutex) {
    mutex_->Lock();
  }
  ~BasicMutexLock() ABSL_UNLOCK_FUNCTION() {
    if (held_) mutex_->Unlock();
  }
  BasicMutexLock(const BasicMutexLock&) = delete;
  BasicMutexLock& operator=(const BasicMutexLock&) = delete;

  void Unlock() ABSL_UNLOCK_FUNCTION() {
    held_ = false;
    mutex_->Unlock();
  }
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mutex_->Lock();
    held_ = true;
  }

 private:
  M* const mutex_;
  bool held_ = true;
};

using MutexLock = BasicMutexLock<Mutex>;
using RecursiveMutexLock = BasicMutexLock<RecursiveMutex>;

// A condition variable for Mutex. Every wait names the mutex it requires held (the same one
// each time), so the analysis checks the caller holds it. Waits may wake spuriously: wait in a
// loop on the condition.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void Wait(Mutex* mutex) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    condition_.wait(lock);
    lock.release();
  }
  // Returns false when `deadline` passed.
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mutex, std::chrono::time_point<Clock, Duration> deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) {
    std::unique_lock<std::mutex> lock(mutex->mutex_, std::adopt_lock);
    const bool woken = condition_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return woken;
  }
  void Signal() { condition_.notify_one(); }
  void SignalAll() { condition_.notify_all(); }

 private:
  std::condition_variable condition_;
};

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_MUTEX_H_
