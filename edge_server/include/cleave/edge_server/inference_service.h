// The cleave.v1.Inference service: resumes a bundle from the cut a device names. gRPC
// callback threads only look up the bundle and the cut; decoding and compute run on the
// DynamicBatcher's workers, so a slow forward never blocks the transport.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_
#define CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_

#include <functional>

#include "absl/status/status.h"
#include "cleave/edge_server/bundle_registry.h"
#include "cleave/edge_server/dynamic_batcher.h"
#include "cleave/edge_server/edge_metrics.h"
#include "cleave/v1/inference.grpc.pb.h"

namespace cleave::edge_server {

// Both methods take raw bytes and parse them here, so a message that is not an InferRequest
// gets a precise INVALID_ARGUMENT rather than gRPC's generic deserialization failure.
using RawInferenceService = v1::Inference::WithRawCallbackMethod_Infer<
    v1::Inference::WithRawCallbackMethod_InferStream<v1::Inference::Service>>;

class InferenceService final : public RawInferenceService {
 public:
  // REQUIRES: `registry` and `batcher` (and `metrics`, which may be null) outlive the service.
  InferenceService(const BundleRegistry* registry, DynamicBatcher* batcher, EdgeMetrics* metrics);

  grpc::ServerUnaryReactor* Infer(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* InferStream(
      grpc::CallbackServerContext* context) override;

  // Routes one request: NOT_FOUND for an unknown bundle and INVALID_ARGUMENT for a cut it
  // cannot resume from are answered at once; otherwise the request is queued for the batcher
  // (RESOURCE_EXHAUSTED at once when the queue is full). `done` is called exactly once.
  void Submit(const v1::InferRequest* request, RequestContext context, v1::InferResponse* response,
              std::function<void(absl::Status)> done) const;

 private:
  const BundleRegistry* registry_;
  DynamicBatcher* batcher_;
  EdgeMetrics* metrics_;
};

// Maps an absl status to the gRPC status with the same code and message.
[[nodiscard]] grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_
