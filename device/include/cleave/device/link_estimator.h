// The device's estimate of its link to the edge: round-trip time and bandwidth, learned from
// the requests it sends. Each sample is one round trip's network time (client round trip minus
// the edge's own time) and the bytes it moved; a least-squares line network = rtt + bytes / bw
// over a sliding window separates the two once requests of different sizes have been seen
// (the runtime's probes make sure they are), and a prior fills in until then. Three samples
// in a row that the fit mispredicts by more than 2x replace the window: the link changed.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_DEVICE_LINK_ESTIMATOR_H_
#define CLEAVE_DEVICE_LINK_ESTIMATOR_H_

#include <cstdint>
#include <deque>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "cleave/common/mutex.h"

namespace cleave::device {

struct LinkEstimate {
  double rtt_ms = 0;
  double bytes_per_ms = 0;  // bandwidth
  int samples = 0;          // in the window

  // Predicted network time for a round trip moving `bytes` in total.
  double TransferMs(double bytes) const { return rtt_ms + bytes / bytes_per_ms; }
};

class LinkEstimator {
 public:
  // `prior` is used until measurements say otherwise; `window` samples are kept.
  explicit LinkEstimator(LinkEstimate prior, size_t window = 64);

  // Records one round trip that moved `bytes` (both directions) in `network_ms`.
  void Record(double bytes, double network_ms);

  [[nodiscard]] LinkEstimate Current() const;

 private:
  struct Sample {
    double bytes;
    double network_ms;
  };

  const LinkEstimate prior_;
  const size_t window_;
  // The fit over the window is redone only after a new sample: the policy asks per request.
  LinkEstimate FitLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  mutable common::Mutex mutex_;
  std::deque<Sample> samples_ ABSL_GUARDED_BY(mutex_);
  mutable std::optional<LinkEstimate> cached_ ABSL_GUARDED_BY(mutex_);
  // Consecutive samples the fit mispredicted by more than 2x.
  size_t surprises_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_LINK_ESTIMATOR_H_
