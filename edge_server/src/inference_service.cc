#include "cleave/edge_server/inference_service.h"

#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/mutex.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/tsan_annotations.h"
#include "cleave/proto/byte_buffer.h"
#include "cleave/proto/status.h"

namespace cleave::edge_server {
namespace {

// Parses a message ourselves (the service takes raw bytes) so that garbage gets a precise
// INVALID_ARGUMENT instead of gRPC's generic deserialization failure.
absl::Status ParseRequest(const grpc::ByteBuffer& bytes, v1::InferRequest* request) {
  if (!proto::ParseByteBuffer(bytes, request)) {
    return absl::InvalidArgumentError(
        absl::StrCat("message of ", bytes.Length(), " bytes is not a cleave.v1.InferRequest"));
  }
  return absl::OkStatus();
}

// Writes the outcome of a request into its answer: the request id, where its time went, and
// its outputs, or an in-band status in their place when it failed.
void Answer(InferCall& call, const absl::Status& status) {
  v1::InferResponse& response = call.response;
  response.set_request_id(call.request.request_id());
  const JobTimings& timings = call.result.timings;
  v1::ServerTimings* out = response.mutable_timings();
  out->set_queue_us(timings.queue_us);
  out->set_decode_us(timings.decode_us);
  out->set_compute_us(timings.compute_us);
  out->set_encode_us(timings.encode_us);
  out->set_batch_size(timings.batch_size);
  for (std::string& output : call.result.outputs) response.add_outputs(std::move(output));
  call.result.outputs.clear();
  proto::SetResponseStatus(status, &response);
}

// A unary call. It owns its InferCall, and with it the call's admission ticket, until gRPC is
// done with the call (the answer sent or the call cancelled): the budget then covers answers
// still on their way out, not only requests being computed. Its hand-offs to gRPC are marked
// for TSan (tsan_annotations.h).
class UnaryReactor final : public grpc::ServerUnaryReactor {
 public:
  UnaryReactor() : call_(std::make_shared<InferCall>()) {}

  const std::shared_ptr<InferCall>& call() { return call_; }
  void Answer(const absl::Status& status) {
    CLEAVE_TSAN_RELEASE(this);
    Finish(proto::ToGrpcStatus(status));
  }
  void OnDone() override {
    CLEAVE_TSAN_ACQUIRE(this);
    delete this;
  }

 private:
  std::shared_ptr<InferCall> call_;
};

// The stream of one device. A read is outstanding while fewer than max_stream_inflight
// requests are read and not yet written; each request is handed to the service and its
// response queued for writing (one write in flight at a time, as gRPC requires), keeping its
// admission ticket until written. The reactor finishes once the client has half-closed (or
// sent a message that is not a request: the stream then ends INVALID_ARGUMENT), every accepted
// request has been answered and every write has completed; only then is it deleted (OnDone).
// Every hand-off to gRPC is marked for TSan (tsan_annotations.h).
class StreamReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>,
                            public DrainableStream {
 public:
  StreamReactor(InferenceService* service, grpc::CallbackServerContext* context)
      : service_(service), context_(context), peer_(service->PeerOf(context)) {
    service_->AddStream(this);
    reading_ = true;
    CLEAVE_TSAN_RELEASE(this);
    StartRead(&request_);
  }

  // Reads no more; the stream ends (UNAVAILABLE: the edge is shutting down) once what it
  // admitted is answered and written.
  void Drain() override {
    common::MutexLock lock(&mutex_);
    draining_ = true;
    if (final_status_.ok()) {
      final_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "the edge is shutting down");
    }
    std::optional<grpc::Status> finish = TakeFinish();
    lock.Unlock();
    FinishWith(std::move(finish));
  }

  void OnReadDone(bool ok) override {
    CLEAVE_TSAN_ACQUIRE(this);
    auto call = std::make_shared<InferCall>();
    const absl::Status parsed = ok ? ParseRequest(request_, &call->request) : absl::OkStatus();
    request_.Clear();
    if (!ok || !parsed.ok()) {
      common::MutexLock lock(&mutex_);
      reading_ = false;
      reads_done_ = true;  // no more reads: garbage ends the stream after what is in flight
      if (!parsed.ok()) {
        final_status_ =
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         absl::StrCat("stream message ", messages_ + 1, ": ", parsed.message()));
      }
      std::optional<grpc::Status> finish = TakeFinish();
      lock.Unlock();
      FinishWith(std::move(finish));
      return;
    }
    ++messages_;
    RequestContext context;
    if (call->request.timeout_us() > 0) {
      context.deadline = context.arrival + std::chrono::microseconds(call->request.timeout_us());
    }
    context.cancelled = [this] { return context_->IsCancelled(); };
    {
      common::MutexLock lock(&mutex_);
      ++in_flight_;
      reading_ = false;
    }
    service_->Submit(call, peer_, std::move(context),
                     [this, call](absl::Status status) { Complete(*call, status); });
    common::MutexLock lock(&mutex_);
    MaybeRead();
  }

  void OnWriteDone(bool ok) override {
    CLEAVE_TSAN_ACQUIRE(this);
    common::MutexLock lock(&mutex_);
    writes_.pop_front();  // releases the answer's ticket
    --in_flight_;
    writing_ = false;
    if (!ok) broken_ = true;  // the client is gone; drop what is left
    if (broken_) {
      in_flight_ -= writes_.size();
      writes_.clear();
    }
    MaybeWrite();
    MaybeRead();
    std::optional<grpc::Status> finish = TakeFinish();
    lock.Unlock();
    FinishWith(std::move(finish));
  }

  void OnDone() override {
    CLEAVE_TSAN_ACQUIRE(this);
    service_->RemoveStream(this);
    delete this;
  }

 private:
  struct Write {
    grpc::ByteBuffer bytes;
    AdmissionControl::Ticket ticket;
  };

  void Complete(InferCall& call, const absl::Status& status) {
    Answer(call, status);
    Write write{proto::ToByteBuffer(call.response), std::move(call.ticket)};
    common::MutexLock lock(&mutex_);
    if (broken_) {
      --in_flight_;
    } else {
      writes_.push_back(std::move(write));
      MaybeWrite();
    }
    MaybeRead();
    std::optional<grpc::Status> finish = TakeFinish();
    lock.Unlock();
    FinishWith(std::move(finish));
  }

  // Starts writing the oldest queued answer unless a write is in flight (gRPC allows one).
  void MaybeWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (writing_ || writes_.empty()) return;
    writing_ = true;
    CLEAVE_TSAN_RELEASE(this);
    StartWrite(&writes_.front().bytes);
  }

  // Starts the next read when none is outstanding and the stream has room for a request.
  void MaybeRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (reading_ || reads_done_ || draining_ ||
        in_flight_ >= service_->options().max_stream_inflight) {
      return;
    }
    reading_ = true;
    CLEAVE_TSAN_RELEASE(this);
    StartRead(&request_);
  }

  // The status to finish the call with once nothing is left to do: the client has
  // half-closed (or the stream is draining), every admitted request is answered and every
  // write done; nothing otherwise, or when it has been taken already. A draining stream may
  // finish with a read outstanding; gRPC completes that read with ok=false.
  std::optional<grpc::Status> TakeFinish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (!(reads_done_ || draining_) || in_flight_ > 0 || writing_ || finished_) return {};
    finished_ = true;
    return final_status_;
  }

  // Finishes with `status`, if any. Called unlocked, as the last thing its caller does: from a
  // worker thread Finish may let gRPC run OnDone, which deletes this reactor and its mutex.
  void FinishWith(std::optional<grpc::Status> status) ABSL_LOCKS_EXCLUDED(mutex_) {
    if (!status.has_value()) return;
    CLEAVE_TSAN_RELEASE(this);
    Finish(*status);
  }

  InferenceService* const service_;
  grpc::CallbackServerContext* context_;
  const std::shared_ptr<AdmissionControl::Peer> peer_;
  grpc::ByteBuffer request_;  // owned by the outstanding read
  int messages_ = 0;          // requests read so far (reads are sequential)

  common::Mutex mutex_;
  std::deque<Write> writes_ ABSL_GUARDED_BY(mutex_);  // front() is being written while writing_
  grpc::Status final_status_ ABSL_GUARDED_BY(mutex_) = grpc::Status::OK;
  // Requests read and not yet written (or dropped): what max_stream_inflight bounds.
  size_t in_flight_ ABSL_GUARDED_BY(mutex_) = 0;
  bool reading_ ABSL_GUARDED_BY(mutex_) = false;  // a read is outstanding
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mutex_) = false;
  bool draining_ ABSL_GUARDED_BY(mutex_) = false;
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace

InferenceService::InferenceService(InferenceServiceOptions options, const BundleRegistry* registry,
                                   DynamicBatcher* batcher, AdmissionControl* admission,
                                   EdgeMetrics* metrics)
    : options_(std::move(options)),
      registry_(registry),
      batcher_(batcher),
      admission_(admission),
      metrics_(metrics) {}

InferenceService::~InferenceService() {
  // The last streams removed themselves on gRPC threads; taking their lock orders that before
  // the set is destroyed here (gRPC's shutdown orders it too, out of TSan's sight).
  common::RecursiveMutexLock lock(&streams_mutex_);
  streams_.clear();
}

grpc::ServerUnaryReactor* InferenceService::Infer(grpc::CallbackServerContext* context,
                                                  const grpc::ByteBuffer* request_bytes,
                                                  grpc::ByteBuffer* response_bytes) {
  auto* reactor = new UnaryReactor();
  std::shared_ptr<InferCall> call = reactor->call();
  if (absl::Status parsed = ParseRequest(*request_bytes, &call->request); !parsed.ok()) {
    reactor->Answer(parsed);
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
  Submit(call, PeerOf(context), std::move(request_context),
         [reactor, call, response_bytes](absl::Status status) {
           Answer(*call, status);
           if (status.ok()) *response_bytes = proto::ToByteBuffer(call->response);
           reactor->Answer(status);
         });
  return reactor;
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* InferenceService::InferStream(
    grpc::CallbackServerContext* context) {
  return new StreamReactor(this, context);
}

absl::StatusOr<uint64_t> InferenceService::AdmissionBytes(const common::Bundle& bundle,
                                                          const v1::InferRequest& request) const {
  const int cut = request.cut_id();
  auto header = common::ParseFrameHeader(request.activation(), options_.limits);
  if (!header.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("activation for cut ", cut, ": ", header.status().message()));
  }
  const common::TensorSpec declared = common::DeclaredTensor(*header);
  const int64_t max_batch = batcher_->BatchingFor(bundle).max_request_batch;
  CLEAVE_RETURN_IF_ERROR(bundle.CheckActivation(cut, declared, max_batch));
  // The frame, the decoded activation and its copy in the batch's concatenated input, the
  // forward (measured at load; it includes the output tensors) and the encoded answer.
  const uint64_t decoded = header->elements * c10::elementSize(declared.dtype);
  const int64_t batch = declared.shape.empty() ? 1 : declared.shape[0];
  return request.activation().size() + 2 * decoded +
         static_cast<uint64_t>(bundle.ForwardBytes(cut, batch) + bundle.OutputBytes(batch));
}

std::shared_ptr<AdmissionControl::Peer> InferenceService::PeerOf(
    grpc::CallbackServerContext* context) const {
  return admission_->PeerFor(context->peer());
}

void InferenceService::AddStream(DrainableStream* stream) {
  common::RecursiveMutexLock lock(&streams_mutex_);
  streams_.insert(stream);
  if (draining_) stream->Drain();
}

void InferenceService::RemoveStream(DrainableStream* stream) {
  common::RecursiveMutexLock lock(&streams_mutex_);
  streams_.erase(stream);
}

void InferenceService::Drain() {
  // Recursive: a stream told to drain may finish, and gRPC may run its OnDone (which removes
  // it) on this thread. A copy, because it does.
  common::RecursiveMutexLock lock(&streams_mutex_);
  draining_ = true;
  const std::vector<DrainableStream*> streams(streams_.begin(), streams_.end());
  for (DrainableStream* stream : streams) stream->Drain();
}

void InferenceService::Submit(const std::shared_ptr<InferCall>& call,
                              const std::shared_ptr<AdmissionControl::Peer>& peer,
                              RequestContext context,
                              std::function<void(absl::Status)> done) const {
  const v1::InferRequest& request = call->request;
  auto refuse = [&](const BundleMetrics* metrics, absl::Status status) {
    if (metrics != nullptr) metrics->RecordRequest(request.cut_id(), status.code(), 0.0);
    call->ticket = AdmissionControl::Ticket();
    done(std::move(status));
  };
  const BundleMetrics* unknown = metrics_ != nullptr ? &metrics_->unknown_bundle() : nullptr;
  if (draining_) {
    return refuse(unknown,
                  absl::UnavailableError(absl::StrCat("request ", request.request_id(),
                                                      " refused: the edge is shutting down")));
  }
  ServedBundle served = registry_->Find(request.bundle_id());
  if (served.bundle == nullptr) {
    return refuse(unknown, absl::NotFoundError(absl::StrCat(
                               "unknown bundle id '", request.bundle_id(), "': not served here")));
  }
  auto bytes = AdmissionBytes(*served.bundle, request);
  if (!bytes.ok()) return refuse(served.metrics.get(), bytes.status());
  auto ticket = admission_->Admit(peer, *bytes, request.request_id());
  if (!ticket.ok()) return refuse(served.metrics.get(), ticket.status());
  call->ticket = *std::move(ticket);
  BatchJob job;
  job.bundle = std::move(served.bundle);
  job.metrics = served.metrics;
  job.cut = request.cut_id();
  job.request_id = request.request_id();
  job.activation = request.activation();
  job.context = std::move(context);
  job.result = &call->result;
  job.done = done;
  if (absl::Status queued = batcher_->Submit(std::move(job)); !queued.ok()) {
    if (metrics_ != nullptr && absl::IsResourceExhausted(queued)) {
      metrics_->RecordRefusal(EdgeMetrics::Refusal::kQueueFull);
    }
    refuse(served.metrics.get(), std::move(queued));
  }
}

}  // namespace cleave::edge_server
