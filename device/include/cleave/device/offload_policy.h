// Where to split a request: the replaceable decision at the heart of the device runtime. The
// runtime hands the policy what it knows — per-segment device and edge times, the expected
// frame size at each cut, the link estimate, the edge's queueing and health, how many
// segments the device holds, the time left — and the policy picks the cut to offload at, or
// to finish on the device.
//
// Thread-safety: Decide may be called from many threads at once; implementations must be
// thread-safe (the built-in ones are stateless).
#ifndef CLEAVE_DEVICE_OFFLOAD_POLICY_H_
#define CLEAVE_DEVICE_OFFLOAD_POLICY_H_

#include <limits>
#include <optional>
#include <vector>

#include "cleave/common/manifest.h"
#include "cleave/device/link_estimator.h"

namespace cleave::device {

struct PolicyInput {
  const common::BundleManifest* manifest = nullptr;
  size_t device_segments = 0;             // segments the device holds (a prefix)
  std::vector<double> device_segment_ms;  // estimated time of each segment on the device
  std::vector<double> edge_tail_ms;       // estimated edge compute from segment i to the end
  std::vector<double> frame_bytes;        // expected request size when offloading at segment i
  double response_bytes = 0;              // expected response size
  LinkEstimate link;
  double edge_queue_ms = 0;
  bool edge_available = false;  // some edge is connected and not blocked by its circuit breaker
  double budget_ms = std::numeric_limits<double>::infinity();  // time left for the request
};

struct PolicyDecision {
  std::optional<size_t> offload_segment;  // offload before this segment; empty: stay local
  double predicted_ms = 0;
};

class OffloadPolicy {
 public:
  virtual ~OffloadPolicy() = default;
  [[nodiscard]] virtual PolicyDecision Decide(const PolicyInput& input) const = 0;
};

// The default: a Neurosurgeon-style latency model. For each cut the device can offload at,
// predicted time = device segments before it + transfer of the request and response over the
// estimated link + edge queueing + edge segments after it; finishing on the device is the
// other candidate. Picks the fastest that fits the budget (the fastest overall otherwise).
// `cleave plan` (partitioner/split_planner.h) evaluates the same sum offline, from profiles,
// with encode and decode as terms of their own and weighed by the exits' answer rates; here
// encode and decode are folded into the measured device and edge times, per request.
class LatencyPolicy final : public OffloadPolicy {
 public:
  [[nodiscard]] PolicyDecision Decide(const PolicyInput& input) const override;

  // The predicted time of offloading before segment `segment` (exposed for tests and plans).
  [[nodiscard]] static double PredictOffloadMs(const PolicyInput& input, size_t segment);
  // The predicted time of finishing on the device, or infinity when it holds too few segments.
  [[nodiscard]] static double PredictLocalMs(const PolicyInput& input);
};

// Always offloads at one cut (when the edge is available), for baselines and integrations
// that plan offline.
class FixedCutPolicy final : public OffloadPolicy {
 public:
  explicit FixedCutPolicy(int cut_id) : cut_id_(cut_id) {}
  [[nodiscard]] PolicyDecision Decide(const PolicyInput& input) const override;

 private:
  const int cut_id_;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_OFFLOAD_POLICY_H_
