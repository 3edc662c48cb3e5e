#include "device/src/runtime_estimates.h"

#include "cleave/common/mutex.h"
#include "cleave/common/tensor_spec.h"

namespace cleave::device {
namespace {

constexpr double kSmoothing = 0.2;  // weight of a new sample in the running estimates

void Smooth(double* estimate, double sample, bool* known) {
  *estimate = *known ? (1 - kSmoothing) * *estimate + kSmoothing * sample : sample;
  *known = true;
}

// The same for element `i` of a per-segment estimate and its known flags.
void Smooth(std::vector<double>* estimates, std::vector<bool>* known, size_t i, double sample) {
  bool was_known = (*known)[i];
  Smooth(&(*estimates)[i], sample, &was_known);
  (*known)[i] = was_known;
}

}  // namespace

RuntimeEstimates::RuntimeEstimates(const common::BundleManifest& manifest,
                                   absl::FunctionRef<const common::CodecSpec&(int)> codec_at,
                                   double edge_speedup)
    : edge_speedup_(edge_speedup) {
  const size_t segments = manifest.segments.size();
  tail_macs_.assign(segments + 1, 0);
  for (size_t i = segments; i-- > 0;) {
    tail_macs_[i] = tail_macs_[i + 1] + static_cast<double>(manifest.segments[i].macs);
  }
  common::MutexLock lock(&mutex_);
  device_ms_.assign(segments, 0);
  device_known_.assign(segments, false);
  edge_tail_ms_.assign(segments, 0);
  edge_tail_known_.assign(segments, false);
  frame_known_.assign(segments, false);
  for (const common::SegmentInfo& segment : manifest.segments) {
    const common::TensorSpec& in = segment.inputs.at(0);
    frame_bytes_.push_back(common::EstimateFrameBytes(
        static_cast<double>(common::NumElements(in.shape)), codec_at(segment.begin_cut)));
  }
  for (const common::TensorSpec& out : manifest.segments.back().outputs) {
    // Outputs come back raw.
    response_bytes_ += common::EstimateFrameBytes(
        static_cast<double>(common::NumElements(out.shape)), common::CodecSpec{});
  }
}

void RuntimeEstimates::SetDeviceMs(size_t segment, double ms) {
  common::MutexLock lock(&mutex_);
  device_ms_[segment] = ms;
  device_known_[segment] = true;
}

void RuntimeEstimates::LearnDeviceTime(size_t first, size_t last, double elapsed_ms) {
  common::MutexLock lock(&mutex_);
  double estimated = 0;
  for (size_t segment = first; segment <= last; ++segment) estimated += device_ms_[segment];
  for (size_t segment = first; segment <= last; ++segment) {
    const double sample = first == last ? elapsed_ms : device_ms_[segment] * elapsed_ms / estimated;
    Smooth(&device_ms_, &device_known_, segment, sample);
  }
}

bool RuntimeEstimates::DeviceTimesKnown(size_t first, size_t last) const {
  common::MutexLock lock(&mutex_);
  double estimated = 0;
  for (size_t segment = first; segment <= last; ++segment) {
    if (!device_known_[segment]) return false;
    estimated += device_ms_[segment];
  }
  return estimated > 0;
}

double RuntimeEstimates::DeviceMsFrom(size_t first) const {
  common::MutexLock lock(&mutex_);
  double ms = 0;
  for (size_t i = first; i < device_ms_.size(); ++i) ms += device_ms_[i];
  return ms;
}

void RuntimeEstimates::LearnRoundTrip(size_t split, const RoundTrip& trip) {
  common::MutexLock lock(&mutex_);
  Smooth(&edge_tail_ms_, &edge_tail_known_, split, trip.edge_compute_ms);
  if (tail_macs_[split] > 0) {
    Smooth(&edge_ms_per_mac_, trip.edge_compute_ms / tail_macs_[split], &edge_speed_known_);
  }
  Smooth(&edge_queue_ms_, trip.edge_queue_ms, &queue_known_);
  Smooth(&frame_bytes_, &frame_known_, split, trip.frame_bytes);
}

void RuntimeEstimates::Fill(PolicyInput* input) const {
  common::MutexLock lock(&mutex_);
  const size_t segments = device_ms_.size();
  // Device times of segments the device does not hold (it cannot run them) stay as measured
  // or zero; the policy never uses them because it cannot finish locally.
  input->device_segment_ms = device_ms_;
  double device_tail = 0;
  input->edge_tail_ms.assign(segments, 0);
  for (size_t i = segments; i-- > 0;) {
    device_tail += device_ms_[i];
    if (edge_tail_known_[i]) {
      input->edge_tail_ms[i] = edge_tail_ms_[i];
    } else if (edge_speed_known_ && tail_macs_[i] > 0) {
      input->edge_tail_ms[i] = tail_macs_[i] * edge_ms_per_mac_;
    } else {
      input->edge_tail_ms[i] = device_tail / edge_speedup_;
    }
  }
  input->frame_bytes = frame_bytes_;
  input->response_bytes = response_bytes_;
  input->edge_queue_ms = edge_queue_ms_;
}

}  // namespace cleave::device
