#include "cleave/device/pipeline.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cleave/common/mutex.h"

namespace cleave::device {

Pipeline::Pipeline(Runtime* runtime, size_t max_in_flight, ResultCallback on_result)
    : Pipeline(
          [runtime](at::Tensor input, InferOptions options,
                    std::function<void(absl::StatusOr<Result>)> done) {
            runtime->InferAsync(std::move(input), std::move(options), std::move(done));
          },
          max_in_flight, std::move(on_result)) {}

Pipeline::Pipeline(StartFrame start, size_t max_in_flight, ResultCallback on_result)
    : start_(std::move(start)),
      max_in_flight_(std::max<size_t>(1, max_in_flight)),
      on_result_(std::move(on_result)) {}

Pipeline::~Pipeline() { Drain(); }

size_t Pipeline::in_flight() const {
  common::MutexLock lock(&mutex_);
  return next_sequence_ - next_delivery_;
}

absl::StatusOr<uint64_t> Pipeline::Submit(at::Tensor input, InferOptions options,
                                          std::chrono::milliseconds wait) {
  uint64_t sequence = 0;
  {
    common::MutexLock lock(&mutex_);
    const auto until = std::chrono::steady_clock::now() + wait;
    while (next_sequence_ - next_delivery_ >= max_in_flight_ &&
           slot_free_.WaitUntil(&mutex_, until)) {
    }
    if (next_sequence_ - next_delivery_ >= max_in_flight_) {
      return absl::ResourceExhaustedError(absl::StrCat("no pipeline slot freed within ",
                                                       wait.count(), " ms (", max_in_flight_,
                                                       " frames in flight)"));
    }
    sequence = next_sequence_++;
  }
  start_(std::move(input), std::move(options), [this, sequence](absl::StatusOr<Result> result) {
    OnResult(sequence, std::move(result));
  });
  return sequence;
}

void Pipeline::Drain() {
  common::MutexLock lock(&mutex_);
  while (next_delivery_ != next_sequence_) slot_free_.Wait(&mutex_);
}

bool Pipeline::DrainFor(std::chrono::milliseconds timeout) {
  common::MutexLock lock(&mutex_);
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (next_delivery_ != next_sequence_ && slot_free_.WaitUntil(&mutex_, until)) {
  }
  return next_delivery_ == next_sequence_;
}

uint64_t Pipeline::duplicate_results() const {
  common::MutexLock lock(&mutex_);
  return duplicates_;
}

void Pipeline::OnResult(uint64_t sequence, absl::StatusOr<Result> result) {
  common::MutexLock lock(&mutex_);
  // A second result for a frame: delivered already, being delivered (a delivering thread is
  // inside on_result_ for next_delivery_ whenever another holds the lock and sees
  // delivering_), or waiting for its turn.
  if (sequence < next_delivery_ || (delivering_ && sequence == next_delivery_) ||
      !finished_.emplace(sequence, std::move(result)).second) {
    ++duplicates_;
    return;
  }
  if (delivering_) return;  // the delivering thread will pick it up in order
  delivering_ = true;
  for (auto next = finished_.find(next_delivery_); next != finished_.end();
       next = finished_.find(next_delivery_)) {
    absl::StatusOr<Result> ready = std::move(next->second);
    finished_.erase(next);
    const uint64_t delivered = next_delivery_;  // only the delivering thread advances it
    lock.Unlock();
    on_result_(delivered, std::move(ready));
    lock.Lock();
    ++next_delivery_;
    slot_free_.SignalAll();
  }
  delivering_ = false;
}

}  // namespace cleave::device
