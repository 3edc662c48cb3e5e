#include "cleave/edge_server/edge_metrics.h"

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"

namespace cleave::edge_server {
namespace {

// Metric updates never fail a request: a label problem is a programming error that the tests
// catch, so the value is simply dropped here.
template <typename Family, typename Update>
void WithChild(Family* family, std::vector<std::string> labels, Update update) {
  auto child = family->WithLabels(std::move(labels));
  if (child.ok()) update(**child);
}

}  // namespace

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
  CLEAVE_ASSIGN_OR_RETURN(
      metrics->loaded_bundles_,
      registry->AddGauge("cleave_edge_loaded_bundles", "Bundles currently served."));
  CLEAVE_ASSIGN_OR_RETURN(metrics->refusals_,
                          registry->AddCounter("cleave_edge_admission_refusals_total",
                                               "Requests refused at admission, by the limit they "
                                               "met: memory_budget, peer_cap or queue_full.",
                                               {"reason"}));
  const struct {
    const char* name;
    const char* help;
    common::Gauge** child;
  } gauges[] = {
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
  return metrics;
}

void EdgeMetrics::RecordRequest(const std::string& model, int cut, const std::string& status,
                                double total_seconds) {
  WithChild(requests_, {model, absl::StrCat(cut), status}, [](auto& c) { c.Increment(); });
  WithChild(total_seconds_, {model}, [&](auto& h) { h.Observe(total_seconds); });
}

void EdgeMetrics::RecordComputed(const std::string& model, double queue_seconds,
                                 double compute_seconds) {
  WithChild(queue_seconds_, {model}, [&](auto& h) { h.Observe(queue_seconds); });
  WithChild(compute_seconds_, {model}, [&](auto& h) { h.Observe(compute_seconds); });
}

void EdgeMetrics::RecordBatch(const std::string& model, int batch_size) {
  WithChild(batch_size_, {model}, [&](auto& h) { h.Observe(batch_size); });
}

void EdgeMetrics::RecordBytes(const std::string& model, double frame_bytes, double decoded_bytes) {
  WithChild(received_bytes_, {model}, [&](auto& c) { c.Add(frame_bytes); });
  WithChild(decoded_bytes_, {model}, [&](auto& c) { c.Add(decoded_bytes); });
}

void EdgeMetrics::SetLoadedBundles(int count) {
  WithChild(loaded_bundles_, {}, [&](auto& g) { g.Set(count); });
}

void EdgeMetrics::SetInflight(uint64_t bytes, size_t requests) {
  inflight_bytes_->Set(static_cast<double>(bytes));
  inflight_requests_->Set(static_cast<double>(requests));
}

void EdgeMetrics::SetInflightBudget(uint64_t bytes) {
  inflight_budget_->Set(static_cast<double>(bytes));
}

void EdgeMetrics::RecordRefusal(const std::string& reason) {
  WithChild(refusals_, {reason}, [](auto& c) { c.Increment(); });
}

}  // namespace cleave::edge_server
