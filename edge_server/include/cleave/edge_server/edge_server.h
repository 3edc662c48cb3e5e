// Transport and operations for cleave-edge: binds the listening port, registers the inference
// service, the standard grpc.health.v1.Health service (overall and per bundle id and name) and
// server reflection, serves Prometheus metrics and health over HTTP, watches the bundle folder
// for new, changed and removed bundles, and shuts down in order (stop accepting, drain
// in-flight requests, stop the workers).
#ifndef CLEAVE_EDGE_SERVER_EDGE_SERVER_H_
#define CLEAVE_EDGE_SERVER_EDGE_SERVER_H_

#include <grpcpp/server.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/common/metrics.h"
#include "cleave/common/mutex.h"
#include "cleave/common/trust.h"
#include "cleave/edge_server/admission_control.h"
#include "cleave/edge_server/batch_runner.h"
#include "cleave/edge_server/bundle_registry.h"
#include "cleave/edge_server/dynamic_batcher.h"
#include "cleave/edge_server/edge_metrics.h"
#include "cleave/edge_server/inference_service.h"
#include "cleave/edge_server/metrics_http_server.h"

namespace cleave::edge_server {

struct EdgeServerOptions {
  std::string bundles_dir;
  // host:port; port 0 picks a free port (see EdgeServer::port()).
  std::string listen = "127.0.0.1:50051";
  // host:port of the HTTP endpoint (/metrics, /healthz, /readyz); empty: none.
  std::string metrics_listen;
  size_t workers = 2;      // compute threads (each runs one batch at a time)
  size_t max_queue = 256;  // waiting requests before RESOURCE_EXHAUSTED
  // How long a worker that ran out of work polls before sleeping (one worker at a time).
  std::chrono::microseconds idle_spin{200};
  int intra_op_threads = 1;  // LibTorch threads per forward (process-wide; set by main)
  // Optimize loaded segments for inference (conv-bn folding, oneDNN); verified on load.
  bool optimize_segments = true;
  // Which bundles to serve: with a trust folder, only signed ones that pass its checks
  // (common/trust.h) at load and at every rescan.
  common::TrustOptions trust;
  // Key file opening encrypted bundles in memory (common/bundle_crypto.h); empty: none.
  std::string bundle_key_file;
  // Early cuts of real models carry several MiB: gRPC's 4 MiB default is too small.
  int max_message_bytes = 64 << 20;
  common::DecodeLimits limits;
  // Bytes of requests in flight, server-wide (admission_control.h); 0: a quarter of the
  // memory this process may use (common::UsableMemoryBytes).
  uint64_t max_inflight_bytes = 0;
  size_t max_peer_inflight = 64;     // requests in flight per client connection; 0: no cap
  size_t max_stream_inflight = 32;   // requests read and not yet answered, per stream
  int max_connection_streams = 100;  // concurrent calls per client connection (HTTP/2)
  // How often the bundle folder is rescanned; 0 disables watching.
  std::chrono::milliseconds watch_interval{2000};
  BatchingOptions default_batching;
  std::map<std::string, BatchingOptions> batching_by_model;  // by bundle name
};

// Applies a JSON config file (docs/EDGE_SERVER.md) to `options`; keys it does not set keep
// their values. INVALID_ARGUMENT names an unknown key or a bad value.
[[nodiscard]] absl::Status ApplyConfigFile(const std::string& path, EdgeServerOptions* options);

class EdgeServer {
 public:
  // Loads the bundles and starts serving. Returns NOT_FOUND for a missing bundle folder and
  // UNAVAILABLE when an address cannot be bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EdgeServer>> Start(
      const EdgeServerOptions& options);

  // Shuts down (grace period 5 s) if still running.
  ~EdgeServer();

  // The bound ports (the chosen ones when listening on port 0; metrics 0 when disabled).
  int port() const { return port_; }
  int metrics_port() const;
  const BundleRegistry& registry() const { return *registry_; }
  const common::MetricsRegistry& metrics() const { return metrics_registry_; }

  // Rescans the bundle folder now (the watcher also does this periodically).
  BundleRegistry::Changes RescanBundles();

  // Drains and stops: health goes NOT_SERVING, new requests are answered UNAVAILABLE, the
  // requests already admitted are answered within `grace` (then the rest is cancelled), idle
  // streams and health watches end, and the workers stop. Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  EdgeServer() = default;

  // Publishes health status for every loaded bundle (by id and by name) and the bundle gauge.
  void PublishBundles();
  void Watch(std::chrono::milliseconds interval);

  common::MetricsRegistry metrics_registry_;
  std::unique_ptr<EdgeMetrics> metrics_;
  std::unique_ptr<BundleRegistry> registry_;
  std::unique_ptr<AdmissionControl> admission_;
  std::unique_ptr<BatchRunner> runner_;
  std::unique_ptr<DynamicBatcher> batcher_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsHttpServer> http_;
  int port_ = 0;

  common::Mutex mutex_;  // guards the fields below and serialises rescans
  common::CondVar stop_watching_;
  bool shutting_down_ ABSL_GUARDED_BY(mutex_) = false;
  // Health service names marked SERVING.
  std::set<std::string> published_ ABSL_GUARDED_BY(mutex_);
  std::thread watcher_;
  std::atomic<bool> ready_{false};
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_EDGE_SERVER_H_
