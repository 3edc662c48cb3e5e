// cleave::device::Pipeline — the front door for a continuous sensing loop. Frames go in in
// order and their results come out in the same order, while up to `max_in_flight` frames are
// being processed at once: the device segments of the next frame run while the previous
// frame's activation is on the network, and a slow link holds at most `max_in_flight` frames
// back instead of queueing without bound.
//
// Thread-safety: Submit and Drain may be called from many threads; results are delivered one
// at a time, in submission order, on runtime or gRPC threads.
#ifndef CLEAVE_DEVICE_PIPELINE_H_
#define CLEAVE_DEVICE_PIPELINE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "cleave/common/mutex.h"
#include "cleave/device/runtime.h"

namespace cleave::device {

class Pipeline {
 public:
  // Called once per submitted frame, in submission order; `sequence` counts from 0. Later
  // results wait for it: it must not call Submit or Drain (they may wait on deliveries).
  using ResultCallback = std::function<void(uint64_t sequence, absl::StatusOr<Result> result)>;

  // How a frame is started: `done` must be called once with its result (Runtime::InferAsync).
  using StartFrame = std::function<void(at::Tensor input, InferOptions options,
                                        std::function<void(absl::StatusOr<Result>)> done)>;

  // REQUIRES: `runtime` outlives the pipeline; max_in_flight >= 1.
  Pipeline(Runtime* runtime, size_t max_in_flight, ResultCallback on_result);
  // Frames started by `start` instead of a runtime (for a caller with its own executor, and
  // for tests that answer frames late, out of order or twice).
  Pipeline(StartFrame start, size_t max_in_flight, ResultCallback on_result);
  // Waits for every submitted frame (each ends by its own deadline).
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Starts `input` and returns its sequence number. Blocks while `max_in_flight` frames are
  // outstanding; RESOURCE_EXHAUSTED when no slot frees up within `wait` (the frame is dropped,
  // which is what a sensing loop wants when it is falling behind).
  [[nodiscard]] absl::StatusOr<uint64_t> Submit(
      at::Tensor input, InferOptions options = {},
      std::chrono::milliseconds wait = std::chrono::milliseconds(60000));

  // Waits until every submitted frame's result has been delivered.
  void Drain();
  // The same, for at most `timeout`; false when results are still missing then.
  [[nodiscard]] bool DrainFor(std::chrono::milliseconds timeout);

  // Frames submitted and not yet delivered.
  [[nodiscard]] size_t in_flight() const;
  // Results that arrived for a frame that already had one: rejected (never delivered), and
  // counted because the runtime answers each frame exactly once, so any is a defect.
  [[nodiscard]] uint64_t duplicate_results() const;

 private:
  void OnResult(uint64_t sequence, absl::StatusOr<Result> result);

  const StartFrame start_;
  const size_t max_in_flight_;
  const ResultCallback on_result_;

  mutable common::Mutex mutex_;
  common::CondVar slot_free_;
  // Given to the next submitted frame.
  uint64_t next_sequence_ ABSL_GUARDED_BY(mutex_) = 0;
  // The frame whose result is delivered next.
  uint64_t next_delivery_ ABSL_GUARDED_BY(mutex_) = 0;
  // Out of order, awaiting delivery.
  std::map<uint64_t, absl::StatusOr<Result>> finished_ ABSL_GUARDED_BY(mutex_);
  // One thread delivers at a time, in order.
  bool delivering_ ABSL_GUARDED_BY(mutex_) = false;
  uint64_t duplicates_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_PIPELINE_H_
