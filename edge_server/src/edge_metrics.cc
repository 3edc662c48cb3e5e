#include "cleave/edge_server/edge_metrics.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"

namespace cleave::edge_server {
namespace {

// absl::StatusCode values 0 (OK) to 16 (UNAUTHENTICATED); anything else counts as UNKNOWN.
constexpr size_t kCodes = 17;

size_t CodeIndex(absl::StatusCode code) {
  const auto index = static_cast<size_t>(code);
  return index < kCodes ? index : static_cast<size_t>(absl::StatusCode::kUnknown);
}

// The child of `family` for `labels`, or null. Metric updates never fail a request: a label
// problem is a programming error that the tests catch, so its updates are simply dropped.
template <typename Family>
typename Family::MetricType* Child(Family* family, std::vector<std::string> labels) {
  auto child = family->WithLabels(labels);
  return child.ok() ? *child : nullptr;
}

template <typename Metric, typename Change>
void Update(Metric* metric, Change change) {
  if (metric != nullptr) change(*metric);
}

}  // namespace

common::Counter* BundleMetrics::RequestCounter(int cut, absl::StatusCode code) const {
  const size_t slot =
      std::find(cuts_.begin(), cuts_.end(), cut) - cuts_.begin();  // cuts_.size(): other
  std::atomic<common::Counter*>& entry = request_children_[slot * kCodes + CodeIndex(code)];
  common::Counter* counter = entry.load(std::memory_order_acquire);
  if (counter == nullptr) {  // first use: the family's lock, once (racing threads get the same)
    counter = Child(requests_, {model_, slot < cuts_.size() ? absl::StrCat(cut) : "other",
                                absl::StatusCodeToString(code)});
    entry.store(counter, std::memory_order_release);
  }
  return counter;
}

void BundleMetrics::RecordRequest(int cut, absl::StatusCode code, double total_seconds) const {
  Update(RequestCounter(cut, code), [](auto& c) { c.Increment(); });
  Update(total_seconds_, [&](auto& h) { h.Observe(total_seconds); });
}

void BundleMetrics::RecordComputed(double queue_seconds, double compute_seconds) const {
  Update(queue_seconds_, [&](auto& h) { h.Observe(queue_seconds); });
  Update(compute_seconds_, [&](auto& h) { h.Observe(compute_seconds); });
}

void BundleMetrics::RecordBatch(int batch_size) const {
  Update(batch_size_, [&](auto& h) { h.Observe(batch_size); });
}

void BundleMetrics::RecordBytes(double frame_bytes, double decoded_bytes) const {
  Update(received_bytes_, [&](auto& c) { c.Add(frame_bytes); });
  Update(decoded_bytes_, [&](auto& c) { c.Add(decoded_bytes); });
}

absl::StatusOr<std::unique_ptr<EdgeMetrics>> EdgeMetrics::Create(
    common::MetricsRegistry* registry) {
  std::unique_ptr<EdgeMetrics> metrics(new EdgeMetrics(registry));
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->requests_,
      registry->AddCounter("cleave_edge_requests_total",
                           "Inference requests answered, by model, cut and gRPC status.",
                           {"model", "cut", "status"}));
  const std::vector<double> latency = common::ServingLatencyBuckets();
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->queue_seconds_,
      registry->AddHistogram("cleave_edge_queue_seconds",
                             "Time from arrival until the request's forward started.", latency,
                             {"model"}));
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->compute_seconds_,
      registry->AddHistogram("cleave_edge_compute_seconds",
                             "Forward time of the batch the request ran in.", latency, {"model"}));
  CLEAVE_ASSIGN_OR_RETURN(metrics->total_seconds_,
                          registry->AddHistogram("cleave_edge_request_seconds",
                                                 "Time from arrival until the response was ready.",
                                                 latency, {"model"}));
  CLEAVE_ASSIGN_OR_RETURN(metrics->batch_size_,
                          registry->AddHistogram("cleave_edge_batch_size", "Requests per forward.",
                                                 common::BatchSizeBuckets(), {"model"}));
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->received_bytes_,
      registry->AddCounter("cleave_edge_received_bytes_total",
                           "Activation bytes received, as encoded frames.", {"model"}));
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->decoded_bytes_,
      registry->AddCounter("cleave_edge_decoded_bytes_total",
                           "Activation bytes after decoding (tensor memory).", {"model"}));
  CLEAVE_ASSIGN_OR_RETURN(common::CounterFamily * refusals,
                          registry->AddCounter("cleave_edge_admission_refusals_total",
                                               "Requests refused at admission, by the limit they "
                                               "met: memory_budget, peer_cap or queue_full.",
                                               {"reason"}));
  const struct {
    const char* name;
    const char* help;
    common::Gauge** child;
  } gauges[] = {
      {"cleave_edge_loaded_bundles", "Bundles currently served.", &metrics->loaded_bundles_},
      {"cleave_edge_inflight_bytes",
       "Bytes charged to requests in flight (frames, decoded activations, outputs).",
       &metrics->inflight_bytes_},
      {"cleave_edge_inflight_requests", "Requests admitted and not yet answered.",
       &metrics->inflight_requests_},
      {"cleave_edge_inflight_budget_bytes", "The budget for bytes in flight (max_inflight_mb).",
       &metrics->inflight_budget_},
  };
  for (const auto& gauge : gauges) {
    CLEAVE_ASSIGN_OR_RETURN(common::GaugeFamily * family,
                            registry->AddGauge(gauge.name, gauge.help));
    CLEAVE_ASSIGN_OR_RETURN(*gauge.child, family->WithLabels({}));
  }
  const char* const reasons[] = {"memory_budget", "peer_cap", "queue_full"};  // by Refusal
  for (size_t i = 0; i < std::size(reasons); ++i) {
    CLEAVE_ASSIGN_OR_RETURN(metrics->refusals_[i], refusals->WithLabels({reasons[i]}));
  }
  // Requests for an unknown bundle are only ever refused: no queue, compute or byte series.
  metrics->unknown_ = metrics->AnsweredMetrics("unknown", {});
  return metrics;
}

std::unique_ptr<BundleMetrics> EdgeMetrics::AnsweredMetrics(const std::string& model,
                                                            std::vector<int> cuts) const {
  std::unique_ptr<BundleMetrics> metrics(new BundleMetrics());
  metrics->model_ = model;
  metrics->cuts_ = std::move(cuts);
  metrics->requests_ = requests_;
  metrics->request_children_ =
      std::vector<std::atomic<common::Counter*>>((metrics->cuts_.size() + 1) * kCodes);
  metrics->total_seconds_ = Child(total_seconds_, {model});
  return metrics;
}

std::unique_ptr<BundleMetrics> EdgeMetrics::ForBundle(const std::string& model,
                                                      std::vector<int> cuts) const {
  std::unique_ptr<BundleMetrics> metrics = AnsweredMetrics(model, std::move(cuts));
  metrics->queue_seconds_ = Child(queue_seconds_, {model});
  metrics->compute_seconds_ = Child(compute_seconds_, {model});
  metrics->batch_size_ = Child(batch_size_, {model});
  metrics->received_bytes_ = Child(received_bytes_, {model});
  metrics->decoded_bytes_ = Child(decoded_bytes_, {model});
  return metrics;
}

void EdgeMetrics::SetLoadedBundles(int count) { loaded_bundles_->Set(count); }

void EdgeMetrics::SetInflight(uint64_t bytes, size_t requests) {
  inflight_bytes_->Set(static_cast<double>(bytes));
  inflight_requests_->Set(static_cast<double>(requests));
}

void EdgeMetrics::SetInflightBudget(uint64_t bytes) {
  inflight_budget_->Set(static_cast<double>(bytes));
}

void EdgeMetrics::RecordRefusal(Refusal reason) {
  refusals_[static_cast<size_t>(reason)]->Increment();
}

}  // namespace cleave::edge_server
