#include "device/src/runtime_metrics.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"

namespace cleave::device {
namespace {

constexpr size_t kPlacements = 5;  // Placement's values

// Telemetry never fails a request: label lists here are fixed and valid.
void Count(common::CounterFamily* family, std::vector<std::string> labels) {
  if (auto child = family->WithLabels(std::move(labels)); child.ok()) (*child)->Increment();
}

}  // namespace

// The children of a one-label counter family for small integer keys (placements, cut ids),
// looked up once each: after that, counting is an atomic load and a relaxed add.
class RuntimeMetrics::CounterSlots {
 public:
  CounterSlots(common::CounterFamily* family, size_t keys)
      : family_(family),
        slots_(std::make_unique<std::atomic<common::Counter*>[]>(keys)),
        keys_(keys) {}

  // `label()` names key `key` the first time it is counted.
  template <typename Label>
  void Increment(size_t key, Label label) {
    if (key >= keys_) return Count(family_, {label()});
    common::Counter* counter = slots_[key].load(std::memory_order_acquire);
    if (counter == nullptr) {
      auto child = family_->WithLabels({label()});
      if (!child.ok()) return;
      counter = *child;
      slots_[key].store(counter, std::memory_order_release);
    }
    counter->Increment();
  }

 private:
  common::CounterFamily* family_;
  std::unique_ptr<std::atomic<common::Counter*>[]> slots_;
  size_t keys_;
};

RuntimeMetrics::RuntimeMetrics() = default;
RuntimeMetrics::~RuntimeMetrics() = default;

absl::StatusOr<std::unique_ptr<RuntimeMetrics>> RuntimeMetrics::Create(int max_cut) {
  std::unique_ptr<RuntimeMetrics> metrics(new RuntimeMetrics());
  common::MetricsRegistry& m = metrics->registry_;
  CLEAVE_ASSIGN_OR_RETURN(metrics->requests_,
                          m.AddCounter("cleave_device_requests_total",
                                       "Requests answered, by where they ran.", {"placement"}));
  CLEAVE_ASSIGN_OR_RETURN(metrics->exits_,
                          m.AddCounter("cleave_device_exits_total",
                                       "Requests answered by an exit head, by cut.", {"cut"}));
  CLEAVE_ASSIGN_OR_RETURN(metrics->offloads_,
                          m.AddCounter("cleave_device_offloads_total",
                                       "Activations sent to an edge, by cut.", {"cut"}));
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->edge_failures_,
      m.AddCounter("cleave_device_edge_failures_total",
                   "Edge attempts that failed or came too late, by edge.", {"edge"}));
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->probes_,
      m.AddCounter("cleave_device_probes_total",
                   "Background requests sent to keep estimates fresh.", {"outcome"}));
  CLEAVE_ASSIGN_OR_RETURN(auto* bytes, m.AddCounter("cleave_device_sent_bytes_total",
                                                    "Activation bytes sent to edges."));
  CLEAVE_ASSIGN_OR_RETURN(metrics->bytes_sent_, bytes->WithLabels({}));
  const std::vector<double> buckets = common::ServingLatencyBuckets();
  CLEAVE_ASSIGN_OR_RETURN(auto* latency, m.AddHistogram("cleave_device_request_seconds",
                                                        "Time to answer a request.", buckets));
  CLEAVE_ASSIGN_OR_RETURN(metrics->latency_, latency->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* compute, m.AddHistogram("cleave_device_compute_seconds",
                                                        "Device compute per request.", buckets));
  CLEAVE_ASSIGN_OR_RETURN(metrics->device_compute_, compute->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* network,
                          m.AddHistogram("cleave_device_network_seconds",
                                         "Network time of edge round trips.", buckets));
  CLEAVE_ASSIGN_OR_RETURN(metrics->network_, network->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* rtt, m.AddGauge("cleave_device_link_rtt_seconds",
                                                "Estimated round-trip time to the edge."));
  CLEAVE_ASSIGN_OR_RETURN(metrics->rtt_, rtt->WithLabels({}));
  CLEAVE_ASSIGN_OR_RETURN(auto* bandwidth,
                          m.AddGauge("cleave_device_link_bandwidth_bytes_per_second",
                                     "Estimated bandwidth to the edge."));
  CLEAVE_ASSIGN_OR_RETURN(metrics->bandwidth_, bandwidth->WithLabels({}));
  const auto cut_keys = static_cast<size_t>(std::max(max_cut, 0)) + 1;
  metrics->requests_by_placement_ = std::make_unique<CounterSlots>(metrics->requests_, kPlacements);
  metrics->offloads_by_cut_ = std::make_unique<CounterSlots>(metrics->offloads_, cut_keys);
  metrics->exits_by_cut_ = std::make_unique<CounterSlots>(metrics->exits_, cut_keys);
  return metrics;
}

void RuntimeMetrics::RecordAnswer(const absl::StatusOr<Result>& result) {
  if (!result.ok()) return Count(requests_, {"error"});
  const Placement placement = result->placement;
  requests_by_placement_->Increment(static_cast<size_t>(placement),
                                    [placement] { return std::string(PlacementName(placement)); });
  if (placement == Placement::kDeviceExit && result->exit_cut) {
    const int cut = *result->exit_cut;
    exits_by_cut_->Increment(static_cast<size_t>(cut), [cut] { return absl::StrCat(cut); });
  }
  latency_->Observe(result->timings.total_ms / 1000.0);
  device_compute_->Observe(result->timings.device_compute_ms / 1000.0);
}

void RuntimeMetrics::RecordOffload(int cut, size_t bytes) {
  offloads_by_cut_->Increment(static_cast<size_t>(cut), [cut] { return absl::StrCat(cut); });
  bytes_sent_->Add(static_cast<double>(bytes));
}

void RuntimeMetrics::RecordEdgeFailure(const std::string& edge) { Count(edge_failures_, {edge}); }

void RuntimeMetrics::RecordProbe(const char* outcome) { Count(probes_, {outcome}); }

void RuntimeMetrics::ObserveNetworkMs(double ms) { network_->Observe(ms / 1000.0); }

void RuntimeMetrics::SetLink(const LinkEstimate& link) const {
  rtt_->Set(link.rtt_ms / 1000.0);
  bandwidth_->Set(link.bytes_per_ms * 1000.0);
}

std::string RuntimeMetrics::Json(const LinkEstimate& link) const {
  SetLink(link);
  return registry_.RenderJson();
}

std::string RuntimeMetrics::Prometheus(const LinkEstimate& link) const {
  SetLink(link);
  return registry_.RenderPrometheusText();
}

}  // namespace cleave::device
