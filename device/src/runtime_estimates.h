// The running estimates the runtime's policy decides on: each segment's time on the device,
// the edge's compute from each segment to the end (measured, or scaled from its measured speed
// per MAC, or from the device's own times and an assumed speedup), the request size at each
// cut, the response size and the edge's queueing. Sizes start from the manifest, device times
// from the warm-up; every answer refines them (exponential smoothing, weight 0.2 per sample).
// The link itself is LinkEstimator's.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_DEVICE_SRC_RUNTIME_ESTIMATES_H_
#define CLEAVE_DEVICE_SRC_RUNTIME_ESTIMATES_H_

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/manifest.h"
#include "cleave/common/mutex.h"
#include "cleave/device/offload_policy.h"

namespace cleave::device {

// What a good edge answer says about the round trip.
struct RoundTrip {
  double edge_queue_ms = 0, edge_compute_ms = 0, network_ms = 0;
  double frame_bytes = 0;  // sent
  double bytes = 0;        // sent and received
};

class RuntimeEstimates {
 public:
  // Sizes from `manifest`, request frames as `codec_at(cut)` would encode them; nothing known
  // of the device or the edge yet (the edge is assumed `edge_speedup` times the device).
  RuntimeEstimates(const common::BundleManifest& manifest,
                   absl::FunctionRef<const common::CodecSpec&(int cut_id)> codec_at,
                   double edge_speedup);

  // Sets segment `segment`'s device time as measured, without smoothing (the warm-up).
  void SetDeviceMs(size_t segment, double ms);
  // Feeds the time of segments [first, last] run as one call: one segment's sample is that
  // time; several share it in proportion to their estimates.
  void LearnDeviceTime(size_t first, size_t last, double elapsed_ms);
  // Whether every segment of [first, last] has a known, nonzero device time, so a run of them
  // as one call can be apportioned.
  [[nodiscard]] bool DeviceTimesKnown(size_t first, size_t last) const;
  // The device's estimated time for segments `first` to the end.
  [[nodiscard]] double DeviceMsFrom(size_t first) const;

  // Feeds a round trip that the edge resumed at segment `split`.
  void LearnRoundTrip(size_t split, const RoundTrip& trip);

  // Fills the policy's device, edge, size and queueing estimates.
  void Fill(PolicyInput* input) const;

 private:
  const double edge_speedup_;
  std::vector<double> tail_macs_;  // manifest MACs from segment i to the end

  mutable common::Mutex mutex_;
  std::vector<double> device_ms_ ABSL_GUARDED_BY(mutex_);  // per segment
  std::vector<bool> device_known_ ABSL_GUARDED_BY(mutex_);
  std::vector<double> edge_tail_ms_ ABSL_GUARDED_BY(mutex_);  // edge compute, i to the end
  std::vector<bool> edge_tail_known_ ABSL_GUARDED_BY(mutex_);
  std::vector<double> frame_bytes_ ABSL_GUARDED_BY(mutex_);  // request, offloading before i
  std::vector<bool> frame_known_ ABSL_GUARDED_BY(mutex_);
  double edge_ms_per_mac_ ABSL_GUARDED_BY(mutex_) = 0;
  bool edge_speed_known_ ABSL_GUARDED_BY(mutex_) = false;
  double response_bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  double edge_queue_ms_ ABSL_GUARDED_BY(mutex_) = 0;
  bool queue_known_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_SRC_RUNTIME_ESTIMATES_H_
