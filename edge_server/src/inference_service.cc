#include "cleave/edge_server/inference_service.h"

#include <grpcpp/support/proto_buffer_reader.h>

#include <deque>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"

namespace cleave::edge_server {
namespace {

absl::Status ResourceExhausted(const v1::InferRequest& request) {
  return absl::ResourceExhaustedError(
      absl::StrCat("request ", request.request_id(), " refused: the edge's queue is full"));
}

// Parses a message ourselves (the service takes raw bytes) so that garbage gets a precise
// INVALID_ARGUMENT instead of gRPC's generic deserialization failure.
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, v1::InferRequest* request) {
  grpc::ByteBuffer copy(bytes);  // shares the slices
  grpc::ProtoBufferReader reader(&copy);
  if (!request->ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(
        absl::StrCat("message of ", bytes.Length(), " bytes is not a cleave.v1.InferRequest"));
  }
  return absl::OkStatus();
}

grpc::ByteBuffer Serialize(const v1::InferResponse& response) {
  grpc::ByteBuffer bytes;
  bool own_buffer = false;
  // Serialising a message we built cannot fail short of memory exhaustion.
  (void)grpc::SerializationTraits<v1::InferResponse>::Serialize(response, &bytes, &own_buffer);
  return bytes;
}

// The stream of one device. Reads are always outstanding; each request is handed to the
// batcher and its response queued for writing (one write in flight at a time, as gRPC
// requires). The reactor finishes once the client has half-closed (or sent a message that is
// not a request: the stream then ends INVALID_ARGUMENT), every accepted request has been
// answered and every write has completed; only then is it deleted (OnDone).
class StreamReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamReactor(const InferenceService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    auto request = std::make_shared<v1::InferRequest>();
    const absl::Status parsed = ok ? ParseRequest(request_, request.get()) : absl::OkStatus();
    request_.Clear();
    if (!ok || !parsed.ok()) {
      std::unique_lock<std::mutex> lock(mutex_);
      reads_done_ = true;  // no more reads: garbage ends the stream after what is in flight
      if (!parsed.ok()) {
        final_status_ =
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         absl::StrCat("stream message ", messages_ + 1, ": ", parsed.message()));
      }
      MaybeFinish(lock);
      return;
    }
    ++messages_;
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
    service_->Submit(
        request.get(), std::move(context), response.get(),
        [this, request, response](absl::Status status) { Complete(*request, *response, status); });
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
    grpc::ByteBuffer bytes = Serialize(response);
    std::unique_lock<std::mutex> lock(mutex_);
    --in_flight_;
    if (!broken_) {
      writes_.push_back(std::move(bytes));
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
    const grpc::Status status = final_status_;
    lock.unlock();
    Finish(status);
  }

  const InferenceService* service_;
  grpc::CallbackServerContext* context_;
  grpc::ByteBuffer request_;  // owned by the outstanding read
  int messages_ = 0;          // requests read so far (reads are sequential)

  std::mutex mutex_;
  std::deque<grpc::ByteBuffer> writes_;  // front() is being written while writing_
  grpc::Status final_status_ = grpc::Status::OK;
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

InferenceService::InferenceService(const BundleRegistry* registry, DynamicBatcher* batcher,
                                   EdgeMetrics* metrics)
    : registry_(registry), batcher_(batcher), metrics_(metrics) {}

grpc::ServerUnaryReactor* InferenceService::Infer(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request_bytes,
                                                  grpc::ByteBuffer* response_bytes) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  struct Call {
    v1::InferRequest request;
    v1::InferResponse response;
  };
  auto call = std::make_shared<Call>();
  if (absl::Status parsed = ParseRequest(*request_bytes, &call->request); !parsed.ok()) {
    reactor->Finish(ToGrpcStatus(parsed));
    return reactor;
  }
  RequestContext request_context;
  if (context->deadline() != std::chrono::system_clock::time_point::max()) {
    request_context.deadline =
        request_context.arrival + (context->deadline() - std::chrono::system_clock::now());
  }
  if (call->request.timeout_us() > 0) {
    request_context.deadline =
        std::min(request_context.deadline,
                 request_context.arrival + std::chrono::microseconds(call->request.timeout_us()));
  }
  request_context.cancelled = [context] { return context->IsCancelled(); };
  Submit(&call->request, std::move(request_context), &call->response,
         [reactor, call, response_bytes](absl::Status status) {
           call->response.set_request_id(call->request.request_id());
           if (status.ok()) *response_bytes = Serialize(call->response);
           reactor->Finish(ToGrpcStatus(status));
         });
  return reactor;
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* InferenceService::InferStream(
    grpc::CallbackServerContext* context) {
  return new StreamReactor(this, context);
}

void InferenceService::Submit(const v1::InferRequest* request, RequestContext context,
                              v1::InferResponse* response,
                              std::function<void(absl::Status)> done) const {
  auto refuse = [&](const std::string& model, absl::Status status) {
    if (metrics_ != nullptr) {
      metrics_->RecordRequest(model, request->cut_id(), absl::StatusCodeToString(status.code()),
                              0.0);
    }
    done(std::move(status));
  };
  std::shared_ptr<const common::Bundle> bundle = registry_->Find(request->bundle_id());
  if (bundle == nullptr) {
    refuse("unknown", absl::NotFoundError(absl::StrCat("unknown bundle id '", request->bundle_id(),
                                                       "': not served here")));
    return;
  }
  if (absl::Status cut = bundle->SegmentStartingAt(request->cut_id()).status(); !cut.ok()) {
    refuse(bundle->manifest().name, std::move(cut));
    return;
  }
  DynamicBatcher::Job job;
  job.bundle = bundle;
  job.request = request;
  job.response = response;
  job.context = std::move(context);
  job.done = done;
  if (!batcher_->Submit(std::move(job))) {
    refuse(bundle->manifest().name, ResourceExhausted(*request));
  }
}

}  // namespace cleave::edge_server
