#include "cleave/device/pipeline.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

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
  std::lock_guard<std::mutex> lock(mutex_);
  return next_sequence_ - next_delivery_;
}

absl::StatusOr<uint64_t> Pipeline::Submit(at::Tensor input, InferOptions options,
                                          std::chrono::milliseconds wait) {
  uint64_t sequence = 0;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!slot_free_.wait_for(lock, wait,
                             [&] { return next_sequence_ - next_delivery_ < max_in_flight_; })) {
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
  std::unique_lock<std::mutex> lock(mutex_);
  slot_free_.wait(lock, [&] { return next_delivery_ == next_sequence_; });
}

bool Pipeline::DrainFor(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return slot_free_.wait_for(lock, timeout, [&] { return next_delivery_ == next_sequence_; });
}

uint64_t Pipeline::duplicate_results() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return duplicates_;
}

void Pipeline::OnResult(uint64_t sequence, absl::StatusOr<Result> result) {
  std::unique_lock<std::mutex> lock(mutex_);
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
    lock.unlock();
    on_result_(next_delivery_, std::move(ready));
    lock.lock();
    ++next_delivery_;
    slot_free_.notify_all();
  }
  delivering_ = false;
}

}  // namespace cleave::device
