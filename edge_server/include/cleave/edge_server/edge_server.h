// Transport setup for cleave-edge: binds the listening port, registers the inference service,
// the standard grpc.health.v1.Health service and server reflection, and shuts down in order
// (stop accepting, drain in-flight requests, stop the workers).
#ifndef CLEAVE_EDGE_SERVER_EDGE_SERVER_H_
#define CLEAVE_EDGE_SERVER_EDGE_SERVER_H_

#include <grpcpp/server.h>

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cleave/edge_server/bundle_registry.h"
#include "cleave/edge_server/inference_service.h"
#include "cleave/edge_server/worker_pool.h"

namespace cleave::edge_server {

struct EdgeServerOptions {
  std::string bundles_dir;
  // host:port; port 0 picks a free port (see EdgeServer::port()).
  std::string listen = "127.0.0.1:50051";
  size_t workers = 2;
  size_t max_queue = 256;
  // Early cuts of real models carry several MiB: gRPC's 4 MiB default is too small.
  int max_message_bytes = 64 << 20;
};

class EdgeServer {
 public:
  // Loads the bundles and starts serving. Returns NOT_FOUND for a missing bundle folder and
  // UNAVAILABLE when the address cannot be bound.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<EdgeServer>> Start(
      const EdgeServerOptions& options);

  // Shuts down (grace period 5 s) if still running.
  ~EdgeServer();

  // The bound port (the chosen one when listening on port 0).
  int port() const { return port_; }
  const BundleRegistry& registry() const { return *registry_; }

  // Stops accepting calls, lets in-flight calls finish within `grace` (then cancels them), and
  // stops the workers. Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // Blocks until Shutdown has completed.
  void Wait();

 private:
  EdgeServer() = default;

  std::unique_ptr<BundleRegistry> registry_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_EDGE_SERVER_H_
