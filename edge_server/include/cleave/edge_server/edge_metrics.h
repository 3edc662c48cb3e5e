// The edge server's Prometheus metrics (docs/METRICS.md lists them): requests by model, cut
// and status; queue, compute and total latency; batch sizes; bytes received compressed and
// decoded; loaded bundles; admission. Labels carry names and numbers only, never request data,
// and only values the edge chose: a cut a bundle does not resume from is counted as "other",
// so a caller cannot multiply series. The children a request updates are looked up once, when
// its bundle is loaded (BundleMetrics), not per request.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_EDGE_METRICS_H_
#define CLEAVE_EDGE_SERVER_EDGE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/common/metrics.h"

namespace cleave::edge_server {

// The metric children of one bundle: recording a request takes no lock and no lookup.
class BundleMetrics {
 public:
  BundleMetrics(const BundleMetrics&) = delete;
  BundleMetrics& operator=(const BundleMetrics&) = delete;

  // One request answered with `code`, at `cut` ("other" unless the bundle resumes from it).
  void RecordRequest(int cut, absl::StatusCode code, double total_seconds) const;
  // One request computed: its time queued and in the forward.
  void RecordComputed(double queue_seconds, double compute_seconds) const;
  // One forward over `batch_size` requests.
  void RecordBatch(int batch_size) const;
  // Bytes of one activation as received (frame) and decoded (tensor).
  void RecordBytes(double frame_bytes, double decoded_bytes) const;

 private:
  friend class EdgeMetrics;
  BundleMetrics() = default;

  // The requests counter for (cut, code), created on its first use.
  common::Counter* RequestCounter(int cut, absl::StatusCode code) const;

  std::string model_;
  std::vector<int> cuts_;  // the cuts the bundle resumes from
  common::CounterFamily* requests_ = nullptr;
  // Children of requests_ by [slot * kCodes + code], where slot i < cuts_.size() is cuts_[i]
  // and the last slot every other cut; null until first used.
  mutable std::vector<std::atomic<common::Counter*>> request_children_;
  common::Histogram* queue_seconds_ = nullptr;
  common::Histogram* compute_seconds_ = nullptr;
  common::Histogram* total_seconds_ = nullptr;
  common::Histogram* batch_size_ = nullptr;
  common::Counter* received_bytes_ = nullptr;
  common::Counter* decoded_bytes_ = nullptr;
};

class EdgeMetrics {
 public:
  // The limits admission control refuses a request for.
  enum class Refusal { kMemoryBudget, kPeerCap, kQueueFull };

  // Registers the edge's metric families in `registry`. REQUIRES: `registry` outlives this.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EdgeMetrics>> Create(
      common::MetricsRegistry* registry);

  // The children for bundle `model` resuming from `cuts` (model = the bundle's name: versions
  // of one model share them).
  [[nodiscard]] std::unique_ptr<BundleMetrics> ForBundle(const std::string& model,
                                                         std::vector<int> cuts) const;
  // What requests naming a bundle the edge does not serve are counted under (model "unknown").
  const BundleMetrics& unknown_bundle() const { return *unknown_; }

  void SetLoadedBundles(int count);
  // What admission control holds: bytes and requests in flight, and the budget for bytes.
  void SetInflight(uint64_t bytes, size_t requests);
  void SetInflightBudget(uint64_t bytes);
  // One request refused at admission, for `reason`.
  void RecordRefusal(Refusal reason);

  const common::MetricsRegistry& registry() const { return *registry_; }

 private:
  explicit EdgeMetrics(common::MetricsRegistry* registry) : registry_(registry) {}
  // The children every answered request updates (requests and total time) for `model`: all an
  // unknown bundle's refusals need; ForBundle adds the rest.
  [[nodiscard]] std::unique_ptr<BundleMetrics> AnsweredMetrics(const std::string& model,
                                                               std::vector<int> cuts) const;

  common::MetricsRegistry* registry_;
  common::CounterFamily* requests_ = nullptr;
  common::HistogramFamily* queue_seconds_ = nullptr;
  common::HistogramFamily* compute_seconds_ = nullptr;
  common::HistogramFamily* total_seconds_ = nullptr;
  common::HistogramFamily* batch_size_ = nullptr;
  common::CounterFamily* received_bytes_ = nullptr;
  common::CounterFamily* decoded_bytes_ = nullptr;
  std::unique_ptr<BundleMetrics> unknown_;
  // Children of unlabelled families and of the refusal reasons, looked up once.
  common::Gauge* loaded_bundles_ = nullptr;
  common::Gauge* inflight_bytes_ = nullptr;
  common::Gauge* inflight_requests_ = nullptr;
  common::Gauge* inflight_budget_ = nullptr;
  common::Counter* refusals_[3] = {};  // by Refusal
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_EDGE_METRICS_H_
