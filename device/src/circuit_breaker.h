// When to try a failed edge again: after a failure it is skipped for a backoff that doubles per
// consecutive failure, with +-20% jitter drawn from a per-breaker random seed (a fleet that lost
// the same edge does not come back in lockstep); after `failure_threshold` consecutive failures
// the circuit opens for `open_for`. A success closes it.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_DEVICE_SRC_CIRCUIT_BREAKER_H_
#define CLEAVE_DEVICE_SRC_CIRCUIT_BREAKER_H_

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "cleave/common/mutex.h"
#include "cleave/device/edge_options.h"

namespace cleave::device {

class CircuitBreaker {
 public:
  using Clock = std::chrono::steady_clock;

  explicit CircuitBreaker(const EdgeClientOptions& options);

  // Outcomes of requests as the caller judged them (a late answer is a failure too).
  void ReportSuccess();
  void ReportFailure();

  // False while backing off or while the circuit is open.
  [[nodiscard]] bool Available() const { return Clock::now() >= available_at(); }
  // When the edge may be tried again: in the past unless it is backing off or the circuit is
  // open.
  [[nodiscard]] Clock::time_point available_at() const;
  // Consecutive failures so far (0 when healthy).
  [[nodiscard]] int consecutive_failures() const;
  // Why a request is refused now ("skipped for 80 ms more after 2 consecutive failures"), or ""
  // when the edge may be tried.
  [[nodiscard]] std::string Refusal() const;

 private:
  const std::chrono::milliseconds min_backoff_, max_backoff_, open_for_;
  const int failure_threshold_;

  mutable common::Mutex mutex_;
  int consecutive_failures_ ABSL_GUARDED_BY(mutex_) = 0;
  Clock::time_point blocked_until_ ABSL_GUARDED_BY(mutex_);
  uint64_t jitter_state_ ABSL_GUARDED_BY(mutex_);  // xorshift, never 0
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_SRC_CIRCUIT_BREAKER_H_
