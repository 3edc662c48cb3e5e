// The cleave.v1.Inference service: resumes a bundle from the cut a device names. gRPC
// callback threads only look up the bundle and the cut and admit the request from its frame's
// header (the declared tensor against the cut, its bytes against the memory budget, its peer
// against its cap) and turn it into a job; the DynamicBatcher's workers decode and compute it
// (BatchRunner), so a slow forward never blocks the transport, and the service turns the job's
// result back into the answer. A stream holds at most `max_stream_inflight` requests
// read and not yet answered: beyond that it stops reading, and gRPC's flow control holds the
// device back.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_
#define CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "cleave/common/mutex.h"
#include "cleave/edge_server/admission_control.h"
#include "cleave/edge_server/batch_job.h"
#include "cleave/edge_server/bundle_registry.h"
#include "cleave/edge_server/dynamic_batcher.h"
#include "cleave/edge_server/edge_metrics.h"
#include "cleave/v1/inference.grpc.pb.h"

namespace cleave::edge_server {

// Both methods take raw bytes and parse them here, so a message that is not an InferRequest
// gets a precise INVALID_ARGUMENT rather than gRPC's generic deserialization failure.
using RawInferenceService = v1::Inference::WithRawCallbackMethod_Infer<
    v1::Inference::WithRawCallbackMethod_InferStream<v1::Inference::Service>>;

struct InferenceServiceOptions {
  common::DecodeLimits limits;
  // Requests a stream may have read and not yet answered (written) before it stops reading.
  size_t max_stream_inflight = 32;
};

// One request and its answer, from the read to the write. The reactors own it; its ticket
// holds the request's share of the memory budget and its peer's slot until the answer is
// written. `result` is what the runner wrote for it, moved into `response` when it is answered.
struct InferCall {
  v1::InferRequest request;
  v1::InferResponse response;
  JobResult result;
  AdmissionControl::Ticket ticket;
};

// A stream the service can ask to end once it has answered what it admitted (Drain).
class DrainableStream {
 public:
  virtual void Drain() = 0;

 protected:
  ~DrainableStream() = default;
};

class InferenceService final : public RawInferenceService {
 public:
  // REQUIRES: `registry`, `batcher` and `admission` (and `metrics`, which may be null) outlive
  // the service.
  InferenceService(InferenceServiceOptions options, const BundleRegistry* registry,
                   DynamicBatcher* batcher, AdmissionControl* admission, EdgeMetrics* metrics);
  // REQUIRES: the server has shut down (every stream's OnDone has run).
  ~InferenceService() override;

  grpc::ServerUnaryReactor* Infer(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* InferStream(
      grpc::CallbackServerContext* context) override;

  // Routes one request from `peer`, answering at once NOT_FOUND for an unknown bundle,
  // INVALID_ARGUMENT for a cut it cannot resume from or a frame whose header does not declare
  // what the cut takes (at most the bundle's max_request_batch samples), RESOURCE_EXHAUSTED
  // when the memory budget, the peer's cap or the queue is full, UNAVAILABLE when the edge is
  // shutting down. Otherwise charges call->ticket and queues the request for the batcher.
  // `done` is called exactly once, with call->response written (AnswerCall).
  void Submit(const std::shared_ptr<InferCall>& call,
              const std::shared_ptr<AdmissionControl::Peer>& peer, RequestContext context,
              std::function<void(absl::Status)> done) const;

  // The admission state of the client connection `context` arrived on.
  [[nodiscard]] std::shared_ptr<AdmissionControl::Peer> PeerOf(
      grpc::CallbackServerContext* context) const;

  const InferenceServiceOptions& options() const { return options_; }

  // Begins an orderly shutdown: new requests are answered UNAVAILABLE, and every stream stops
  // reading and ends once it has answered and written what it admitted, so a server Shutdown
  // need not wait its grace for idle device streams. Idempotent.
  void Drain();
  // Streams register for Drain while they live.
  void AddStream(DrainableStream* stream);
  void RemoveStream(DrainableStream* stream);

 private:
  // The request's bytes in flight: its frame, its declared decoded activation (twice: decoded
  // and batched), the forward's tensors as measured at load, and the outputs the bundle
  // declares for its batch.
  // INVALID_ARGUMENT when the frame's header is not one the cut accepts.
  absl::StatusOr<uint64_t> AdmissionBytes(const common::Bundle& bundle,
                                          const v1::InferRequest& request) const;

  const InferenceServiceOptions options_;
  const BundleRegistry* registry_;
  DynamicBatcher* batcher_;
  AdmissionControl* admission_;
  EdgeMetrics* metrics_;
  std::atomic<bool> draining_{false};
  common::RecursiveMutex streams_mutex_;
  std::set<DrainableStream*> streams_ ABSL_GUARDED_BY(streams_mutex_);
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_INFERENCE_SERVICE_H_
