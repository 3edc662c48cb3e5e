#include "cleave/device/link_estimator.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cleave/common/mutex.h"

namespace cleave::device {
namespace {

constexpr double kMinRttMs = 0.01;
constexpr double kMinBytesPerMs = 1.0;  // 8 kbit/s: below that the edge is as good as gone
constexpr size_t kSurprises = 3;        // mispredicted samples in a row that mean a new link

double Median(std::vector<double> values) {
  std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
  return values[values.size() / 2];
}

}  // namespace

LinkEstimator::LinkEstimator(LinkEstimate prior, size_t window) : prior_(prior), window_(window) {}

void LinkEstimator::Record(double bytes, double network_ms) {
  if (!(bytes >= 0) || !(network_ms >= 0) || !std::isfinite(network_ms)) return;
  common::MutexLock lock(&mutex_);
  // A link that changes (a hand-over, a radio shadow) shows as samples the fit keeps
  // mispredicting. After kSurprises of them in a row only those speak for the link: waiting
  // for them to outvote a whole window of history would keep the old split for seconds.
  if (samples_.size() >= kSurprises) {
    if (!cached_.has_value()) cached_ = FitLocked();
    const double predicted = cached_->TransferMs(bytes);
    const bool surprising = network_ms > 2 * predicted + 1 || network_ms < 0.5 * predicted - 1;
    surprises_ = surprising ? surprises_ + 1 : 0;
  }
  samples_.push_back({bytes, network_ms});
  if (surprises_ >= kSurprises) {
    while (samples_.size() > kSurprises) samples_.pop_front();
    surprises_ = 0;
  }
  while (samples_.size() > window_) samples_.pop_front();
  cached_.reset();
}

LinkEstimate LinkEstimator::Current() const {
  common::MutexLock lock(&mutex_);
  if (!cached_.has_value()) cached_ = FitLocked();
  return *cached_;
}

LinkEstimate LinkEstimator::FitLocked() const {
  LinkEstimate estimate = prior_;
  estimate.samples = static_cast<int>(samples_.size());
  if (samples_.empty()) return estimate;
  // Only the recent half of the window speaks for the present when the link changes; the
  // fit uses the newest samples first.
  const size_t recent = std::max<size_t>(4, samples_.size() / 2);
  const size_t begin = samples_.size() > recent ? samples_.size() - recent : 0;
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0, min_x = INFINITY, max_x = 0;
  for (size_t i = begin; i < samples_.size(); ++i) {
    const double x = samples_[i].bytes, y = samples_[i].network_ms;
    n += 1;
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
    min_x = std::min(min_x, x);
    max_x = std::max(max_x, x);
  }
  const double denominator = n * sxx - sx * sx;
  if (n >= 4 && max_x >= 1.5 * min_x && denominator > 0) {
    const double slope = (n * sxy - sx * sy) / denominator;  // ms per byte
    const double intercept = (sy - slope * sx) / n;
    if (slope > 0) {
      estimate.bytes_per_ms = std::max(kMinBytesPerMs, 1.0 / slope);
      estimate.rtt_ms = std::max(kMinRttMs, intercept);
      return estimate;
    }
  }
  // All samples about the same size: keep the prior's RTT (or less, if a sample was faster
  // than it) and attribute the rest of each round trip to bandwidth.
  std::vector<double> rates;
  for (size_t i = begin; i < samples_.size(); ++i) {
    estimate.rtt_ms = std::min(estimate.rtt_ms, samples_[i].network_ms);
  }
  for (size_t i = begin; i < samples_.size(); ++i) {
    const double transfer = samples_[i].network_ms - estimate.rtt_ms;
    if (transfer > 0.001) rates.push_back(samples_[i].bytes / transfer);
  }
  if (!rates.empty()) estimate.bytes_per_ms = std::max(kMinBytesPerMs, Median(rates));
  estimate.rtt_ms = std::max(kMinRttMs, estimate.rtt_ms);
  return estimate;
}

}  // namespace cleave::device
