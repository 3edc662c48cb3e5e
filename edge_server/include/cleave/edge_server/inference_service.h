// The cleave.v1.Inference service: resumes a bundle from the cut a device names. gRPC
// callback threads only parse and route; decoding and compute run on the WorkerPool so a slow
// forward never blocks the transport.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_
#define CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_

#include <chrono>
#include <functional>

#include "absl/status/status.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/edge_server/bundle_registry.h"
#include "cleave/edge_server/worker_pool.h"
#include "cleave/v1/inference.grpc.pb.h"

namespace cleave::edge_server {

// What a request carries besides its message: when it arrived, when it must have started
// computing, and whether its caller has gone away.
struct RequestContext {
  using Clock = std::chrono::steady_clock;
  Clock::time_point arrival = Clock::now();
  Clock::time_point deadline = Clock::time_point::max();
  std::function<bool()> cancelled = [] { return false; };
};

class InferenceService final : public v1::Inference::CallbackService {
 public:
  // REQUIRES: `registry` and `pool` outlive the service.
  InferenceService(const BundleRegistry* registry, WorkerPool* pool,
                   common::DecodeLimits limits = {});

  grpc::ServerUnaryReactor* Infer(grpc::CallbackServerContext* context,
                                  const v1::InferRequest* request,
                                  v1::InferResponse* response) override;

  grpc::ServerBidiReactor<v1::InferRequest, v1::InferResponse>* InferStream(
      grpc::CallbackServerContext* context) override;

  // Runs one request to completion on the calling thread: looks up the bundle (NOT_FOUND),
  // the cut and the frame (INVALID_ARGUMENT), skips expired or cancelled requests
  // (DEADLINE_EXCEEDED, CANCELLED), runs the remaining segments and fills `response`.
  [[nodiscard]] absl::Status Process(const v1::InferRequest& request, const RequestContext& context,
                                     v1::InferResponse* response) const;

  // Queues Process on the worker pool and calls `done` with its status; returns false without
  // calling `done` when the queue is full.
  [[nodiscard]] bool Submit(const v1::InferRequest* request, RequestContext context,
                            v1::InferResponse* response,
                            std::function<void(absl::Status)> done) const;

 private:
  const BundleRegistry* registry_;
  WorkerPool* pool_;
  common::DecodeLimits limits_;
};

// Maps an absl status to the gRPC status with the same code and message.
[[nodiscard]] grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_
