// The edge server's Prometheus metrics (docs/METRICS.md lists them): requests by model, cut
// and status; queue, compute and total latency; batch sizes; bytes received compressed and
// decoded; loaded bundles. Labels carry names and numbers only, never request data.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_EDGE_METRICS_H_
#define CLEAVE_EDGE_SERVER_EDGE_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/common/metrics.h"

namespace cleave::edge_server {

class EdgeMetrics {
 public:
  // Registers the edge's metric families in `registry`. REQUIRES: `registry` outlives this.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EdgeMetrics>> Create(
      common::MetricsRegistry* registry);

  // One request answered with `status` ("OK", "NOT_FOUND", ...), for bundle `model`.
  void RecordRequest(const std::string& model, int cut, const std::string& status,
                     double total_seconds);
  // One request computed: its time queued and in the forward.
  void RecordComputed(const std::string& model, double queue_seconds, double compute_seconds);
  // One forward over `batch_size` requests.
  void RecordBatch(const std::string& model, int batch_size);
  // Bytes of one activation as received (frame) and decoded (tensor).
  void RecordBytes(const std::string& model, double frame_bytes, double decoded_bytes);
  void SetLoadedBundles(int count);
  // What admission control holds: bytes and requests in flight, and the budget for bytes.
  void SetInflight(uint64_t bytes, size_t requests);
  void SetInflightBudget(uint64_t bytes);
  // One request refused at admission, for `reason`: "memory_budget", "peer_cap" or
  // "queue_full".
  void RecordRefusal(const std::string& reason);

  const common::MetricsRegistry& registry() const { return *registry_; }

 private:
  explicit EdgeMetrics(common::MetricsRegistry* registry) : registry_(registry) {}

  common::MetricsRegistry* registry_;
  common::CounterFamily* requests_ = nullptr;
  common::HistogramFamily* queue_seconds_ = nullptr;
  common::HistogramFamily* compute_seconds_ = nullptr;
  common::HistogramFamily* total_seconds_ = nullptr;
  common::HistogramFamily* batch_size_ = nullptr;
  common::CounterFamily* received_bytes_ = nullptr;
  common::CounterFamily* decoded_bytes_ = nullptr;
  common::GaugeFamily* loaded_bundles_ = nullptr;
  common::Gauge* inflight_bytes_ = nullptr;  // children of unlabelled families, looked up once
  common::Gauge* inflight_requests_ = nullptr;
  common::Gauge* inflight_budget_ = nullptr;
  common::CounterFamily* refusals_ = nullptr;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_EDGE_METRICS_H_
