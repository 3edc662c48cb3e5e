#include "device/src/edge_client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <algorithm>
#include <deque>
#include <tuple>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "cleave/common/mutex.h"
#include "cleave/common/tsan_annotations.h"
#include "cleave/proto/byte_buffer.h"
#include "cleave/proto/status.h"
#include "cleave/v1/inference.pb.h"

namespace cleave::device {
namespace {

constexpr char kInferStream[] = "/cleave.v1.Inference/InferStream";

}  // namespace

size_t EdgeAnswer::output_bytes() const {
  size_t bytes = 0;
  for (const std::string& output : outputs) bytes += output.size();
  return bytes;
}

double EdgeAnswer::edge_ms() const {
  return static_cast<double>(queue_us + decode_us + compute_us + encode_us) / 1000.0;
}

// One bidirectional stream of serialized messages. A hold keeps the call open while requests
// may still be written from outside gRPC's callbacks; it is released when the stream is closed
// or breaks, after which gRPC runs OnDone and the stream deletes itself.
// Reactions (OnWriteDone, OnReadDone) may release the hold under the stream's lock: gRPC
// runs OnDone only after the running reaction returns. Every hand-off to gRPC is marked for
// TSan (tsan_annotations.h).
class EdgeClient::Stream final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  Stream(EdgeClient* owner, grpc::GenericStub* stub) : owner_(owner) {
    stub->PrepareBidiStreamingCall(&context_, kInferStream, grpc::StubOptions(), this);
    CLEAVE_TSAN_RELEASE(this);
    StartRead(&response_);
    AddHold();
    StartCall();
  }

  // Queues `request` unless the stream no longer takes writes (then returns false and leaves
  // `request` as it was). Sets *start when the caller now owns the one write gRPC allows at a
  // time: it must then call StartQueuedWrite, holding none of its own locks.
  bool Enqueue(grpc::ByteBuffer&& request, bool* start) {
    common::MutexLock lock(&mutex_);
    if (closed_) return false;
    writes_.push_back(std::move(request));
    *start = !writing_;
    writing_ = true;
    return true;
  }

  // Writes the oldest queued request. Called without the stream's (or the client's) lock:
  // gRPC may finish the write at once and run this stream's reactions on other threads, which
  // take that lock, while the write call itself lasts tens of microseconds. The stream outlives
  // the write: its hold is not released while a write is under way.
  void StartQueuedWrite() {
    grpc::ByteBuffer* next = nullptr;
    {
      common::MutexLock lock(&mutex_);
      next = &writes_.front();  // deque references survive push_back
    }
    CLEAVE_TSAN_RELEASE(this);
    StartWrite(next);
  }

  // Half-closes once queued writes are out; the edge then ends the stream after answering.
  void Close() {
    bool release = false;
    {
      common::MutexLock lock(&mutex_);
      closed_ = true;
      release = !writing_ && !released_;
      released_ = released_ || release;
    }
    // Outside the lock: removing the last hold lets gRPC run OnDone (and delete us) at once.
    if (release) {
      CLEAVE_TSAN_RELEASE(this);
      StartWritesDone();
      RemoveHold();
    }
  }

  void Cancel() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    CLEAVE_TSAN_ACQUIRE(this);
    {
      common::MutexLock lock(&mutex_);
      writes_.pop_front();
      if (!ok) closed_ = true;  // broken: the read side will report why
      if (!ok || writes_.empty()) {
        writing_ = false;
        if (closed_) ReleaseLocked(/*writes_done=*/ok);
        return;
      }
    }
    StartQueuedWrite();  // this reaction still owns the write
  }

  void OnReadDone(bool ok) override {
    CLEAVE_TSAN_ACQUIRE(this);
    v1::InferResponse response;
    if (ok && !proto::ParseByteBuffer(response_, &response)) {
      // Not an answer: nothing on this stream can be trusted to match its request any more.
      {
        common::MutexLock lock(&mutex_);
        broken_ = absl::StrCat("sent a message of ", response_.Length(),
                               " bytes that is not a cleave.v1.InferResponse");
      }
      context_.TryCancel();
      ok = false;
    }
    response_.Clear();
    if (!ok) {
      common::MutexLock lock(&mutex_);
      closed_ = true;
      if (!writing_) ReleaseLocked(/*writes_done=*/false);
      return;
    }
    const uint64_t request_id = response.request_id();  // before the answer takes it apart
    owner_->Deliver(request_id, ToAnswer(std::move(response)));
    CLEAVE_TSAN_RELEASE(this);
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    CLEAVE_TSAN_ACQUIRE(this);
    std::string broken;
    {
      common::MutexLock lock(&mutex_);
      broken = std::move(broken_);
    }
    owner_->StreamDone(this, !broken.empty() ? absl::DataLossError(broken)
                             : status.ok()   ? absl::UnavailableError("stream closed")
                                             : proto::FromGrpcStatus(status));
    delete this;
  }

 private:
  // The in-band status of `response` ("edge TARGET: ..." when it failed), or its answer.
  absl::StatusOr<EdgeAnswer> ToAnswer(v1::InferResponse response) const {
    if (absl::Status status = proto::ResponseStatus(response); !status.ok()) {
      return absl::Status(status.code(),
                          absl::StrCat("edge ", owner_->target(), ": ", status.message()));
    }
    EdgeAnswer answer;
    answer.outputs.reserve(static_cast<size_t>(response.outputs_size()));
    for (std::string& output : *response.mutable_outputs()) {
      answer.outputs.push_back(std::move(output));
    }
    const v1::ServerTimings& timings = response.timings();
    answer.queue_us = timings.queue_us();
    answer.decode_us = timings.decode_us();
    answer.compute_us = timings.compute_us();
    answer.encode_us = timings.encode_us();
    return answer;
  }

  void ReleaseLocked(bool writes_done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (released_) return;
    released_ = true;
    CLEAVE_TSAN_RELEASE(this);
    if (writes_done) StartWritesDone();
    RemoveHold();
  }

  EdgeClient* owner_;
  grpc::ClientContext context_;
  grpc::ByteBuffer response_;  // owned by the outstanding read

  common::Mutex mutex_;
  // front() is being written while writing_
  std::deque<grpc::ByteBuffer> writes_ ABSL_GUARDED_BY(mutex_);
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool closed_ ABSL_GUARDED_BY(mutex_) = false;
  bool released_ ABSL_GUARDED_BY(mutex_) = false;
  std::string broken_ ABSL_GUARDED_BY(mutex_);  // why the client broke the stream off
};

namespace {

// Channels are shared per (target, message limit, balancing) and live until the process exits.
// Besides reusing connections, this avoids a race in gRPC 1.51: destroying a channel right after a
// callback RPC's OnDone, while gRPC's callback thread is still unwinding, can release the
// shared callback completion queue twice and abort the process.
std::shared_ptr<grpc::Channel> SharedChannel(const std::string& target,
                                             const EdgeClientOptions& options) {
  static common::Mutex mutex;
  static auto* channels =
      new std::map<std::tuple<std::string, int, std::string>, std::shared_ptr<grpc::Channel>>();
  common::MutexLock lock(&mutex);
  std::shared_ptr<grpc::Channel>& channel =
      (*channels)[{target, options.max_message_bytes, options.load_balancing}];
  if (channel == nullptr) {
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(options.max_message_bytes);
    arguments.SetMaxSendMessageSize(options.max_message_bytes);
    if (!options.load_balancing.empty()) {
      arguments.SetLoadBalancingPolicyName(options.load_balancing);
    }
    // Reconnect quickly after an edge restart; the device decides what to do meanwhile.
    arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
  }
  return channel;
}

constexpr absl::string_view kRefusalPayload = "type.cleave.dev/edge_client.refused";

absl::Status Refusal(absl::Status status) {
  status.SetPayload(kRefusalPayload, absl::Cord("1"));
  return status;
}

}  // namespace

bool EdgeClient::IsRefusal(const absl::Status& status) {
  return status.GetPayload(kRefusalPayload).has_value();
}

EdgeClient::EdgeClient(const std::string& target, EdgeClientOptions options)
    : target_(target),
      options_(std::move(options)),
      channel_(SharedChannel(target, options_)),
      stub_(channel_),
      breaker_(options_) {}

EdgeClient::~EdgeClient() {
  common::MutexLock lock(&mutex_);
  closing_ = true;
  if (current_ != nullptr) current_->Close();
  current_ = nullptr;
  const auto patience = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (!live_.empty() && streams_done_.WaitUntil(&mutex_, patience)) {
  }
  if (!live_.empty()) {
    for (Stream* stream : live_) stream->Cancel();
    while (!live_.empty()) streams_done_.Wait(&mutex_);
  }
}

uint64_t EdgeClient::NewRequestId() {
  return next_request_id_.fetch_add(1, std::memory_order_relaxed);
}

void EdgeClient::Send(uint64_t id, EdgeRequest request, Callback done) {
  // A refused request's callback runs without our lock: it may report the failure or send
  // again.
  if (std::string refused = breaker_.Refusal(); !refused.empty()) {
    done(Refusal(absl::UnavailableError(absl::StrCat("edge ", target_, " ", refused))));
    return;
  }
  v1::InferRequest message;
  message.set_request_id(id);
  message.set_bundle_id(std::move(request.bundle_id));
  message.set_cut_id(request.cut_id);
  message.set_activation(std::move(request.frame));
  message.set_timeout_us(static_cast<uint64_t>(std::max<int64_t>(0, request.timeout.count())));
  grpc::ByteBuffer bytes = proto::ToByteBuffer(message);
  common::MutexLock lock(&mutex_);
  for (;;) {
    if (closing_) {
      lock.Unlock();
      done(Refusal(absl::CancelledError("edge client is shutting down")));
      return;
    }
    if (current_ == nullptr) {
      current_ = new Stream(this, &stub_);
      live_.insert(current_);
    }
    Stream* stream = current_;
    // Registered as pending and queued on this stream in one step under our lock, so
    // StreamDone can fail exactly the requests of a broken stream.
    pending_[id] = Pending{std::move(done), stream};
    bool start = false;
    if (stream->Enqueue(std::move(bytes), &start)) {
      lock.Unlock();
      if (start) stream->StartQueuedWrite();
      return;
    }
    // The stream closed between lookup and write: open a fresh one for the same request.
    current_ = nullptr;
    done = std::move(pending_[id].done);
    pending_.erase(id);
  }
}

EdgeClient::Callback EdgeClient::Abandon(uint64_t request_id) {
  common::MutexLock lock(&mutex_);
  auto it = pending_.find(request_id);
  if (it == pending_.end()) return nullptr;
  Callback done = std::move(it->second.done);
  pending_.erase(it);
  return done;
}

void EdgeClient::Deliver(uint64_t request_id, absl::StatusOr<EdgeAnswer> answer) {
  Callback done;
  {
    common::MutexLock lock(&mutex_);
    auto it = pending_.find(request_id);
    if (it == pending_.end()) return;  // abandoned by its caller
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  done(std::move(answer));
}

void EdgeClient::StreamDone(Stream* stream, const absl::Status& status) {
  std::vector<Callback> failed;
  {
    common::MutexLock lock(&mutex_);
    for (auto it = pending_.begin(); it != pending_.end();) {
      if (it->second.stream == stream) {
        failed.push_back(std::move(it->second.done));
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    if (current_ == stream) current_ = nullptr;
  }
  // DATA_LOSS when the edge sent garbage (the stream was broken off for it), else UNAVAILABLE.
  const absl::Status broken(
      status.code() == absl::StatusCode::kDataLoss ? status.code() : absl::StatusCode::kUnavailable,
      absl::StrCat("edge ", target_, " unavailable: ", status.message()));
  for (Callback& done : failed) done(broken);
  // Last touch of `this`: once live_ is empty the destructor may return.
  common::MutexLock lock(&mutex_);
  live_.erase(stream);
  streams_done_.SignalAll();
}

}  // namespace cleave::device
