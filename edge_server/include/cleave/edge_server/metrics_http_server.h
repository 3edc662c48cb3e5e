// The operator's HTTP endpoint of cleave-edge, beside the gRPC port:
//   GET /metrics  200, the registry in the Prometheus text format 0.0.4
//   GET /healthz  200 "ok" while the process runs (liveness)
//   GET /readyz   200 when the readiness check passes, else 503 (readiness)
// Any other path is 404; another method on these paths is 405. Requests that are malformed
// get 400, oversized ones 413/431, and the connection is closed.
//
// Plain HTTP/1.1 with keep-alive on Boost.Beast, served by one I/O thread. It only ever
// answers small documents, so a client that stalls or sends garbage is cut off by a size
// limit and a deadline rather than waited for, and at most `max_connections` are served at
// once (further ones wait in the listen backlog until a slot frees).
//
// Thread-safety: every method is thread-safe. The registry and the readiness check are used
// on the server's I/O thread.
#ifndef CLEAVE_EDGE_SERVER_METRICS_HTTP_SERVER_H_
#define CLEAVE_EDGE_SERVER_METRICS_HTTP_SERVER_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cleave/common/metrics.h"

namespace cleave::edge_server {

struct MetricsHttpServerOptions {
  // host:port (IPv6 hosts in brackets, "[::1]:9464"); port 0 picks a free port (see
  // MetricsHttpServer::port()). 9464 is the conventional port of application exporters.
  std::string listen = "127.0.0.1:9464";
  // Connections served at once.
  size_t max_connections = 16;
  // Largest request head (request line and headers) and, separately, body accepted.
  size_t max_request_bytes = 8 << 10;
  // Deadline to receive a whole request (also how long an idle keep-alive connection is kept)
  // and to send a whole response.
  std::chrono::milliseconds io_timeout = std::chrono::seconds(10);
};

// Returns true when the server is ready for traffic. Called on the I/O thread for each
// GET /readyz: it must be fast and thread-safe. An exception counts as "not ready".
using ReadinessCheck = std::function<bool()>;

class MetricsHttpServer {
 public:
  // Binds `options.listen` and starts serving `registry` (which must outlive the server).
  // Without `is_ready`, /readyz answers 200 like /healthz. Returns INVALID_ARGUMENT for a
  // malformed address or limits, and UNAVAILABLE when the address cannot be bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const MetricsHttpServerOptions& options, const common::MetricsRegistry* registry,
      ReadinessCheck is_ready = nullptr);

  // Shuts down if still running.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // The bound port (the chosen one when listening on port 0).
  [[nodiscard]] int port() const { return port_; }

  // Stops accepting, closes every connection (a response being written is cut off) and joins
  // the I/O thread. Idempotent.
  void Shutdown();

 private:
  class Impl;
  MetricsHttpServer(std::unique_ptr<Impl> impl, int port);

  const std::unique_ptr<Impl> impl_;
  const int port_;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_METRICS_HTTP_SERVER_H_
