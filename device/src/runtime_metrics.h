// The device runtime's telemetry (docs/DEVICE_RUNTIME.md lists the families): requests by
// placement, exits and offloads by cut, edge failures by edge, probes by outcome, bytes sent,
// latency, device compute and network time, and the link estimate. Labels carry names and
// numbers only, never an input, activation or output value. The request path touches only
// children looked up once (an atomic load and a relaxed add per count): no label strings and
// no family lock per request.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_DEVICE_SRC_RUNTIME_METRICS_H_
#define CLEAVE_DEVICE_SRC_RUNTIME_METRICS_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cleave/common/metrics.h"
#include "cleave/device/link_estimator.h"
#include "cleave/device/runtime.h"

namespace cleave::device {

class RuntimeMetrics {
 public:
  // Registers the families; cut ids up to `max_cut` get children looked up once.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<RuntimeMetrics>> Create(int max_cut);
  ~RuntimeMetrics();

  // One request answered (or failed): its placement, exit, latency and device compute.
  void RecordAnswer(const absl::StatusOr<Result>& result);
  // One activation of `bytes` sent to an edge at cut `cut`.
  void RecordOffload(int cut, size_t bytes);
  // One edge attempt that failed or came too late.
  void RecordEdgeFailure(const std::string& edge);
  // One background probe: "ok", "failed", "late" or "no-edge".
  void RecordProbe(const char* outcome);
  void ObserveNetworkMs(double ms);

  // The registry rendered, with the link gauges set from `link` first (fitting the link costs
  // more than the rest of an answer's bookkeeping: it is read when telemetry is, not per
  // answer).
  [[nodiscard]] std::string Json(const LinkEstimate& link) const;
  [[nodiscard]] std::string Prometheus(const LinkEstimate& link) const;

 private:
  class CounterSlots;
  RuntimeMetrics();
  void SetLink(const LinkEstimate& link) const;

  mutable common::MetricsRegistry registry_;
  common::CounterFamily* requests_ = nullptr;
  common::CounterFamily* exits_ = nullptr;
  common::CounterFamily* offloads_ = nullptr;
  common::CounterFamily* edge_failures_ = nullptr;
  common::CounterFamily* probes_ = nullptr;
  common::Counter* bytes_sent_ = nullptr;
  common::Histogram* latency_ = nullptr;
  common::Histogram* device_compute_ = nullptr;
  common::Histogram* network_ = nullptr;
  common::Gauge* rtt_ = nullptr;
  common::Gauge* bandwidth_ = nullptr;
  std::unique_ptr<CounterSlots> requests_by_placement_;  // by Placement
  std::unique_ptr<CounterSlots> offloads_by_cut_;        // by cut id
  std::unique_ptr<CounterSlots> exits_by_cut_;           // by cut id
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_SRC_RUNTIME_METRICS_H_
