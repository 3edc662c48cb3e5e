#include "cleave/device/offload_policy.h"

#include <cmath>

namespace cleave::device {

double LatencyPolicy::PredictOffloadMs(const PolicyInput& input, size_t segment) {
  double device = 0;
  for (size_t i = 0; i < segment; ++i) device += input.device_segment_ms[i];
  return device + input.link.TransferMs(input.frame_bytes[segment] + input.response_bytes) +
         input.edge_queue_ms + input.edge_tail_ms[segment];
}

double LatencyPolicy::PredictLocalMs(const PolicyInput& input) {
  if (input.device_segments < input.device_segment_ms.size()) {
    return std::numeric_limits<double>::infinity();
  }
  double total = 0;
  for (double ms : input.device_segment_ms) total += ms;
  return total;
}

PolicyDecision LatencyPolicy::Decide(const PolicyInput& input) const {
  PolicyDecision best;
  best.predicted_ms = PredictLocalMs(input);
  if (!input.edge_available) return best;
  // The fastest prediction wins. The budget cannot change that choice (a candidate within it
  // is faster than any beyond it); what happens when none fits is the runtime's deadline.
  const size_t last = std::min(input.device_segments, input.edge_tail_ms.size() - 1);
  for (size_t segment = 0; segment <= last; ++segment) {
    const double predicted = PredictOffloadMs(input, segment);
    if (predicted < best.predicted_ms) {
      best.offload_segment = segment;
      best.predicted_ms = predicted;
    }
  }
  return best;
}

PolicyDecision FixedCutPolicy::Decide(const PolicyInput& input) const {
  PolicyDecision decision;
  if (!input.edge_available) return decision;
  const auto& segments = input.manifest->segments;
  for (size_t i = 0; i < segments.size() && i <= input.device_segments; ++i) {
    if (segments[i].begin_cut == cut_id_) {
      decision.offload_segment = i;
      decision.predicted_ms = LatencyPolicy::PredictOffloadMs(input, i);
    }
  }
  return decision;
}

}  // namespace cleave::device
