#include "cleave/device/edge_client.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace cleave::device {

// One bidirectional stream. A hold keeps the call open while requests may still be written
// from outside gRPC's callbacks; it is released when the stream is closed or breaks, after
// which gRPC runs OnDone and the stream deletes itself.
// Reactions (OnWriteDone, OnReadDone) may release the hold under the stream's lock: gRPC
// runs OnDone only after the running reaction returns.
class EdgeClient::Stream final
    : public grpc::ClientBidiReactor<v1::InferRequest, v1::InferResponse> {
 public:
  Stream(EdgeClient* owner, v1::Inference::Stub* stub) : owner_(owner) {
    stub->async()->InferStream(&context_, this);
    StartRead(&response_);
    AddHold();
    StartCall();
  }

  // Queues `request` unless the stream no longer takes writes (then returns false and leaves
  // `request` as it was). Sets *start when the caller now owns the one write gRPC allows at a
  // time: it must then call StartQueuedWrite, holding none of its own locks.
  bool Enqueue(v1::InferRequest&& request, bool* start) {
    std::lock_guard<std::mutex> lock(mutex_);
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
    v1::InferRequest* next = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      next = &writes_.front();  // deque references survive push_back
    }
    StartWrite(next);
  }

  // Half-closes once queued writes are out; the edge then ends the stream after answering.
  void Close() {
    bool release = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      release = !writing_ && !released_;
      released_ = released_ || release;
    }
    // Outside the lock: removing the last hold lets gRPC run OnDone (and delete us) at once.
    if (release) {
      StartWritesDone();
      RemoveHold();
    }
  }

  void Cancel() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
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
    if (!ok) {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      if (!writing_) ReleaseLocked(/*writes_done=*/false);
      return;
    }
    owner_->Deliver(std::move(response_));
    response_.Clear();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    owner_->StreamDone(this, status);
    delete this;
  }

 private:
  void ReleaseLocked(bool writes_done) {
    if (released_) return;
    released_ = true;
    if (writes_done) StartWritesDone();
    RemoveHold();
  }

  EdgeClient* owner_;
  grpc::ClientContext context_;
  v1::InferResponse response_;  // owned by the outstanding read

  std::mutex mutex_;
  std::deque<v1::InferRequest> writes_;  // front() is being written while writing_
  bool writing_ = false;
  bool closed_ = false;
  bool released_ = false;
};

namespace {

// Channels are shared per (target, message limit, balancing) and live until the process exits.
// Besides reusing connections, this avoids a race in gRPC 1.51: destroying a channel right after a
// callback RPC's OnDone, while gRPC's callback thread is still unwinding, can release the
// shared callback completion queue twice and abort the process.
std::shared_ptr<grpc::Channel> SharedChannel(const std::string& target,
                                             const EdgeClientOptions& options) {
  static std::mutex mutex;
  static auto* channels =
      new std::map<std::tuple<std::string, int, std::string>, std::shared_ptr<grpc::Channel>>();
  std::lock_guard<std::mutex> lock(mutex);
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

// Per-client jitter seed. std::random_device may have no entropy source on a small device (and
// throw): the clock and the client's address then differ between clients well enough.
uint64_t JitterSeed(const void* client) {
  uint64_t seed = 0;
  try {
    std::random_device device;
    seed = uint64_t{device()} << 32 | device();
  } catch (const std::exception&) {
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           reinterpret_cast<uintptr_t>(client);
  }
  return seed | 1;  // xorshift never leaves 0
}

}  // namespace

bool EdgeClient::IsRefusal(const absl::Status& status) {
  return status.GetPayload(kRefusalPayload).has_value();
}

EdgeClient::EdgeClient(const std::string& target, EdgeClientOptions options)
    : target_(target),
      options_(std::move(options)),
      channel_(SharedChannel(target, options_)),
      stub_(v1::Inference::NewStub(channel_)),
      jitter_state_(JitterSeed(this)) {}

bool EdgeClient::Available() const { return Clock::now() >= available_at(); }

EdgeClient::Clock::time_point EdgeClient::available_at() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return blocked_until_;
}

int EdgeClient::consecutive_failures() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return consecutive_failures_;
}

void EdgeClient::ReportSuccess() {
  std::lock_guard<std::mutex> lock(mutex_);
  consecutive_failures_ = 0;
  blocked_until_ = Clock::time_point();
}

void EdgeClient::ReportFailure() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++consecutive_failures_;
  std::chrono::milliseconds delay = options_.open_for;
  if (consecutive_failures_ < options_.failure_threshold) {
    const int doublings = std::min(consecutive_failures_ - 1, 20);
    delay = std::min(options_.max_backoff, options_.min_backoff * (1 << doublings));
  }
  // +-20% jitter from a per-client xorshift seeded at random: cheap, and a fleet does not
  // retry in lockstep.
  jitter_state_ ^= jitter_state_ << 13;
  jitter_state_ ^= jitter_state_ >> 7;
  jitter_state_ ^= jitter_state_ << 17;
  const double factor = 0.8 + 0.4 * static_cast<double>(jitter_state_ % 1000) / 1000.0;
  blocked_until_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(delay * factor);
}

EdgeClient::~EdgeClient() {
  std::unique_lock<std::mutex> lock(mutex_);
  closing_ = true;
  if (current_ != nullptr) current_->Close();
  current_ = nullptr;
  if (!streams_done_.wait_for(lock, std::chrono::seconds(2), [this] { return live_.empty(); })) {
    for (Stream* stream : live_) stream->Cancel();
    streams_done_.wait(lock, [this] { return live_.empty(); });
  }
}

void EdgeClient::Send(v1::InferRequest request, Callback done) {
  const uint64_t id = request.request_id();
  std::unique_lock<std::mutex> lock(mutex_);
  // A refused request's callback runs without our lock: it may report the failure or send
  // again.
  if (closing_) {
    lock.unlock();
    done(Refusal(absl::CancelledError("edge client is shutting down")));
    return;
  }
  if (const Clock::time_point now = Clock::now(); now < blocked_until_) {
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(blocked_until_ - now);
    absl::Status refused = absl::UnavailableError(
        absl::StrCat("edge ", target_, " skipped for ", wait.count(), " ms more after ",
                     consecutive_failures_, " consecutive failures",
                     consecutive_failures_ >= options_.failure_threshold ? " (circuit open)" : ""));
    lock.unlock();
    done(Refusal(std::move(refused)));
    return;
  }
  if (current_ == nullptr) {
    current_ = new Stream(this, stub_.get());
    live_.insert(current_);
  }
  Stream* stream = current_;
  // Registered as pending and queued on this stream in one step under our lock, so
  // StreamDone can fail exactly the requests of a broken stream.
  pending_[id] = Pending{std::move(done), stream};
  bool start = false;
  if (stream->Enqueue(std::move(request), &start)) {
    lock.unlock();
    if (start) stream->StartQueuedWrite();
    return;
  }
  // The stream closed between lookup and write: open a fresh one for the same request.
  current_ = nullptr;
  Callback callback = std::move(pending_[id].done);
  pending_.erase(id);
  lock.unlock();
  Send(std::move(request), std::move(callback));
}

void EdgeClient::Abandon(uint64_t request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  pending_.erase(request_id);
}

void EdgeClient::Deliver(v1::InferResponse response) {
  Callback done;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pending_.find(response.request_id());
    if (it == pending_.end()) return;  // abandoned by its caller
    done = std::move(it->second.done);
    pending_.erase(it);
  }
  done(std::move(response));
}

void EdgeClient::StreamDone(Stream* stream, const grpc::Status& status) {
  std::vector<Callback> failed;
  {
    std::lock_guard<std::mutex> lock(mutex_);
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
  const absl::Status unavailable = absl::UnavailableError(absl::StrCat(
      "edge ", target_,
      " unavailable: ", status.ok() ? std::string("stream closed") : status.error_message()));
  for (Callback& done : failed) done(unavailable);
  // Last touch of `this`: once live_ is empty the destructor may return.
  std::lock_guard<std::mutex> lock(mutex_);
  live_.erase(stream);
  streams_done_.notify_all();
}

}  // namespace cleave::device
