#include "cleave/edge_server/inference_service.h"

#include <deque>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"

namespace cleave::edge_server {
namespace {

using Clock = RequestContext::Clock;

uint64_t MicrosSince(Clock::time_point start) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count());
}

absl::Status ResourceExhausted(const v1::InferRequest& request) {
  return absl::ResourceExhaustedError(
      absl::StrCat("request ", request.request_id(), " refused: the edge's queue is full"));
}

// The stream of one device. Reads are always outstanding; each request is processed on the
// worker pool and its response queued for writing (one write in flight at a time, as gRPC
// requires). The reactor finishes once the client has half-closed, every accepted request has
// been answered and every write has completed; only then is it deleted (OnDone).
class StreamReactor final : public grpc::ServerBidiReactor<v1::InferRequest, v1::InferResponse> {
 public:
  StreamReactor(const InferenceService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::unique_lock<std::mutex> lock(mutex_);
      reads_done_ = true;
      MaybeFinish(lock);
      return;
    }
    auto request = std::make_shared<v1::InferRequest>(std::move(request_));
    request_.Clear();
    auto response = std::make_shared<v1::InferResponse>();
    RequestContext context;
    if (request->timeout_us() > 0) {
      context.deadline = context.arrival + std::chrono::microseconds(request->timeout_us());
    }
    context.cancelled = [this] { return context_->IsCancelled(); };
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++in_flight_;
    }
    const bool queued = service_->Submit(
        request.get(), std::move(context), response.get(),
        [this, request, response](absl::Status status) { Complete(*request, *response, status); });
    if (!queued) Complete(*request, *response, ResourceExhausted(*request));
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mutex_);
    writes_.pop_front();
    if (!ok) broken_ = true;  // the client is gone; drop what is left
    if (broken_) writes_.clear();
    if (!writes_.empty()) {
      StartWrite(&writes_.front());
    } else {
      writing_ = false;
      MaybeFinish(lock);
    }
  }

  void OnDone() override { delete this; }

 private:
  void Complete(const v1::InferRequest& request, v1::InferResponse& response,
                const absl::Status& status) {
    response.set_request_id(request.request_id());
    if (!status.ok()) {
      response.clear_outputs();
      response.set_status_code(static_cast<int>(status.code()));
      response.set_status_message(std::string(status.message()));
    }
    std::unique_lock<std::mutex> lock(mutex_);
    --in_flight_;
    if (!broken_) {
      writes_.push_back(std::move(response));
      if (!writing_) {
        writing_ = true;
        StartWrite(&writes_.front());
      }
    }
    MaybeFinish(lock);
  }

  // Finishes the call once nothing is left to do. Finish runs after unlocking: from a worker
  // thread it may let gRPC run OnDone, which deletes this reactor and its mutex.
  void MaybeFinish(std::unique_lock<std::mutex>& lock) {
    if (!reads_done_ || in_flight_ > 0 || writing_ || finished_) return;
    finished_ = true;
    lock.unlock();
    Finish(grpc::Status::OK);
  }

  const InferenceService* service_;
  grpc::CallbackServerContext* context_;
  v1::InferRequest request_;  // owned by the outstanding read

  std::mutex mutex_;
  std::deque<v1::InferResponse> writes_;  // front() is being written while writing_
  int in_flight_ = 0;
  bool writing_ = false;
  bool reads_done_ = false;
  bool broken_ = false;
  bool finished_ = false;
};

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

InferenceService::InferenceService(const BundleRegistry* registry, WorkerPool* pool,
                                   common::DecodeLimits limits)
    : registry_(registry), pool_(pool), limits_(limits) {}

grpc::ServerUnaryReactor* InferenceService::Infer(grpc::CallbackServerContext* context,
                                                  const v1::InferRequest* request,
                                                  v1::InferResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  RequestContext request_context;
  request_context.deadline =
      context->deadline() == std::chrono::system_clock::time_point::max()
          ? Clock::time_point::max()
          : request_context.arrival + (context->deadline() - std::chrono::system_clock::now());
  if (request->timeout_us() > 0) {
    request_context.deadline =
        std::min(request_context.deadline,
                 request_context.arrival + std::chrono::microseconds(request->timeout_us()));
  }
  request_context.cancelled = [context] { return context->IsCancelled(); };
  const bool queued = Submit(request, std::move(request_context), response,
                             [reactor, response, request](absl::Status status) {
                               response->set_request_id(request->request_id());
                               reactor->Finish(ToGrpcStatus(status));
                             });
  if (!queued) reactor->Finish(ToGrpcStatus(ResourceExhausted(*request)));
  return reactor;
}

grpc::ServerBidiReactor<v1::InferRequest, v1::InferResponse>* InferenceService::InferStream(
    grpc::CallbackServerContext* context) {
  return new StreamReactor(this, context);
}

bool InferenceService::Submit(const v1::InferRequest* request, RequestContext context,
                              v1::InferResponse* response,
                              std::function<void(absl::Status)> done) const {
  return pool_->TrySubmit([this, request, response, context = std::move(context),
                           done = std::move(done)] { done(Process(*request, context, response)); });
}

absl::Status InferenceService::Process(const v1::InferRequest& request,
                                       const RequestContext& context,
                                       v1::InferResponse* response) const {
  v1::ServerTimings* timings = response->mutable_timings();
  timings->set_queue_us(MicrosSince(context.arrival));
  timings->set_batch_size(1);
  if (context.cancelled()) {
    return absl::CancelledError(absl::StrCat("request ", request.request_id(), " cancelled"));
  }
  if (Clock::now() > context.deadline) {
    return absl::DeadlineExceededError(absl::StrCat("request ", request.request_id(),
                                                    " expired after ", timings->queue_us(),
                                                    " us in the queue; not computed"));
  }
  std::shared_ptr<const common::Bundle> bundle = registry_->Find(request.bundle_id());
  if (bundle == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("unknown bundle id '", request.bundle_id(), "': not served here"));
  }
  CLEAVE_ASSIGN_OR_RETURN(size_t first, bundle->SegmentStartingAt(request.cut_id()));

  const Clock::time_point decode_start = Clock::now();
  auto activation = common::DecodeFrame(request.activation(), limits_);
  if (!activation.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation for cut ", request.cut_id(), ": ", activation.status().message()));
  }
  timings->set_decode_us(MicrosSince(decode_start));
  CLEAVE_RETURN_IF_ERROR(bundle->CheckActivation(request.cut_id(), *activation));

  const Clock::time_point compute_start = Clock::now();
  CLEAVE_ASSIGN_OR_RETURN(
      c10::IValue output,
      bundle->RunSegments(first, bundle->num_loaded_segments() - 1, {*std::move(activation)}));
  timings->set_compute_us(MicrosSince(compute_start));

  const Clock::time_point encode_start = Clock::now();
  std::vector<at::Tensor> tensors;
  CLEAVE_RETURN_IF_ERROR(common::FlattenTensors(output, &tensors));
  for (const at::Tensor& tensor : tensors) {
    CLEAVE_ASSIGN_OR_RETURN(std::string frame, common::EncodeFrame(tensor));
    response->add_outputs(std::move(frame));
  }
  timings->set_encode_us(MicrosSince(encode_start));
  return absl::OkStatus();
}

}  // namespace cleave::edge_server
