#include "bench/edge_load_generator.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cleave/v1/inference.pb.h"

namespace cleave::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kInferStreamMethod[] = "/cleave.v1.Inference/InferStream";

double Micros(Clock::duration duration) {
  return std::chrono::duration<double, std::micro>(duration).count();
}

// What every stream of one run shares; fixed before the first stream starts.
struct RunWindow {
  Clock::time_point measure_start;  // answers before this are warm-up
  Clock::time_point stop;           // nothing is sent from here on; later answers do not count
  bool closed_loop = true;
  const std::vector<grpc::Slice>* bodies = nullptr;
  int expected_status = 0;
};

// A request on the wire: its id, then the shared body. Protobuf merges concatenated
// encodings of a message, so the edge parses one InferRequest with every field set, and the
// frame itself is never copied on the client.
grpc::ByteBuffer MakeRequest(uint64_t id, const grpc::Slice& body) {
  v1::InferRequest head;
  head.set_request_id(id);
  const grpc::Slice slices[] = {grpc::Slice(head.SerializeAsString()), body};
  return grpc::ByteBuffer(slices, 2);
}

// One simulated device: an InferStream whose requests are written in order (one write in
// flight, as gRPC requires) while a read is always outstanding. Requests come from the pacing
// thread (open loop) or from the answer to the previous one (closed loop). The stream holds
// the call open until Stop() has been called and every request is answered, then half-closes;
// the edge ends the call, gRPC runs OnDone, and Wait returns.
class DeviceStream final : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  DeviceStream(const std::shared_ptr<grpc::Channel>& channel, const RunWindow* window,
               size_t first_body)
      : stub_(channel), window_(window), next_body_(first_body) {
    stub_.PrepareBidiStreamingCall(&context_, kInferStreamMethod, grpc::StubOptions(), this);
    StartRead(&response_);
    AddHold();
    StartCall();
  }

  // Sends one request whose latency counts from `sent`.
  void Send(Clock::time_point sent) {
    std::lock_guard<std::mutex> lock(mutex_);
    SendLocked(sent);
  }

  // Sends nothing more; the stream half-closes once every request has been answered.
  void Stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    MaybeReleaseLocked();
  }

  // Waits for the call to end (cancelling it at `deadline`) and returns its status.
  grpc::Status Wait(Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!done_.wait_until(lock, deadline, [this] { return finished_; })) {
      context_.TryCancel();  // gRPC then runs OnDone promptly
      done_.wait(lock, [this] { return finished_; });
    }
    if (status_.ok() && !pending_.empty()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat(pending_.size(), " requests were never answered"));
    }
    return status_;
  }

  // REQUIRES: Wait returned.
  void MoveResultsTo(LoadResult* result) {
    result->samples.insert(result->samples.end(), samples_.begin(), samples_.end());
    result->errors += errors_;
    if (result->first_error.empty()) result->first_error = first_error_;
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    writes_.pop_front();
    if (!ok) {
      broken_ = true;  // the read side and OnDone report why
      writes_.clear();
    }
    if (!writes_.empty()) {
      StartWrite(&writes_.front());
      return;
    }
    writing_ = false;
    MaybeReleaseLocked();
  }

  void OnReadDone(bool ok) override {
    const Clock::time_point now = Clock::now();
    std::lock_guard<std::mutex> lock(mutex_);
    if (!ok) {
      broken_ = true;  // ended by the edge: after our half-close, or on failure
      MaybeReleaseLocked();
      return;
    }
    Record(now);
    response_.Clear();
    StartRead(&response_);
    if (window_->closed_loop && now < window_->stop) SendLocked(now);
    MaybeReleaseLocked();
  }

  void OnDone(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mutex_);
    status_ = status;
    finished_ = true;
    done_.notify_all();
  }

 private:
  void SendLocked(Clock::time_point sent) {
    if (stopping_ || broken_) return;
    const uint64_t id = next_id_++;
    pending_.emplace(id, sent);
    const std::vector<grpc::Slice>& bodies = *window_->bodies;
    writes_.push_back(MakeRequest(id, bodies[next_body_++ % bodies.size()]));
    if (!writing_) {
      writing_ = true;
      StartWrite(&writes_.front());
    }
  }

  void Record(Clock::time_point now) {
    v1::InferResponse response;
    grpc::ProtoBufferReader reader(&response_);
    if (!response.ParseFromZeroCopyStream(&reader)) {
      NoteError("a response is not a cleave.v1.InferResponse");
      return;
    }
    auto it = pending_.find(response.request_id());
    if (it == pending_.end()) {
      NoteError(absl::StrCat("response for unknown request ", response.request_id()));
      return;
    }
    const Clock::time_point sent = it->second;
    pending_.erase(it);
    if (now < window_->measure_start || now > window_->stop) return;
    if (response.status_code() != window_->expected_status) {
      NoteError(absl::StrCat(
          absl::StatusCodeToString(static_cast<absl::StatusCode>(response.status_code())), ": ",
          response.status_message()));
      return;
    }
    const v1::ServerTimings& timings = response.timings();
    samples_.push_back({Micros(now - sent), static_cast<double>(timings.queue_us()),
                        static_cast<double>(timings.decode_us()),
                        static_cast<double>(timings.compute_us()),
                        static_cast<double>(timings.encode_us()), timings.batch_size()});
  }

  void NoteError(std::string message) {
    ++errors_;
    if (first_error_.empty()) first_error_ = std::move(message);
  }

  // Releases the hold (half-closing first unless broken) once nothing is left to send or wait
  // for. OnDone then follows on a gRPC thread, never inline.
  void MaybeReleaseLocked() {
    if (released_ || writing_) return;
    if (broken_ || (stopping_ && pending_.empty())) {
      released_ = true;
      if (!broken_) StartWritesDone();
      RemoveHold();
    }
  }

  grpc::GenericStub stub_;
  grpc::ClientContext context_;
  const RunWindow* window_;
  grpc::ByteBuffer response_;  // owned by the outstanding read

  std::mutex mutex_;
  std::condition_variable done_;
  size_t next_body_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Clock::time_point> pending_;  // request id -> when it counts as sent
  std::deque<grpc::ByteBuffer> writes_;            // front() is being written while writing_
  std::vector<RequestSample> samples_;
  int64_t errors_ = 0;
  std::string first_error_;
  grpc::Status status_;
  bool writing_ = false;
  bool stopping_ = false;
  bool broken_ = false;
  bool released_ = false;
  bool finished_ = false;
};

}  // namespace

absl::StatusOr<LoadSpec> LoadSpec::Parse(absl::string_view text) {
  LoadSpec spec;
  const bool open_loop = text.find('@') != absl::string_view::npos;
  const std::vector<absl::string_view> parts = absl::StrSplit(text, open_loop ? '@' : 'x');
  const bool parsed = parts.size() == 2 && absl::SimpleAtoi(parts[0], &spec.streams) &&
                      (open_loop ? absl::SimpleAtod(parts[1], &spec.rate)
                                 : absl::SimpleAtoi(parts[1], &spec.in_flight));
  if (!parsed || spec.streams < 1 || spec.in_flight < 1 || (open_loop && !(spec.rate > 0))) {
    return absl::InvalidArgumentError(
        absl::StrCat("load '", text,
                     "': expected STREAMSxIN_FLIGHT (e.g. 16x1) or STREAMS@RATE (e.g. 16@500), "
                     "all positive"));
  }
  return spec;
}

std::string LoadSpec::Label() const {
  return rate > 0 ? absl::StrCat(streams, "@", rate) : absl::StrCat(streams, "x", in_flight);
}

absl::StatusOr<std::unique_ptr<LoadGenerator>> LoadGenerator::Connect(
    const std::string& target, int max_streams, const LoadGenerator::Request& request) {
  std::unique_ptr<LoadGenerator> generator(new LoadGenerator());
  generator->target_ = target;
  generator->expected_status_ = request.expected_status;
  for (const std::string& frame : request.frames) {
    v1::InferRequest body;
    body.set_bundle_id(request.bundle_id);
    body.set_cut_id(request.cut_id);
    body.set_activation(frame);
    generator->bodies_.emplace_back(body.SerializeAsString());
  }
  if (generator->bodies_.empty()) {
    return absl::InvalidArgumentError("the load generator needs at least one frame");
  }
  // gRPC converts system_clock time points only.
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(10);
  for (int i = 0; i < max_streams; ++i) {
    grpc::ChannelArguments arguments;
    arguments.SetMaxReceiveMessageSize(64 << 20);
    arguments.SetMaxSendMessageSize(64 << 20);
    // A connection of its own per simulated device, as separate devices would have.
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
    if (!channel->WaitForConnected(deadline)) {
      return absl::UnavailableError(absl::StrCat("cannot connect to the edge at ", target));
    }
    generator->channels_.push_back(std::move(channel));
  }
  return generator;
}

absl::StatusOr<LoadResult> LoadGenerator::Run(const LoadSpec& spec,
                                              std::chrono::milliseconds warmup,
                                              std::chrono::milliseconds measure) {
  if (spec.streams > static_cast<int>(channels_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("load ", spec.Label(), " needs ", spec.streams,
                                                   " streams; ", channels_.size(), " opened"));
  }
  const Clock::time_point start = Clock::now();
  RunWindow window;
  window.measure_start = start + warmup;
  window.stop = window.measure_start + measure;
  window.closed_loop = spec.rate <= 0;
  window.bodies = &bodies_;
  window.expected_status = expected_status_;
  std::vector<std::unique_ptr<DeviceStream>> streams;
  for (int i = 0; i < spec.streams; ++i) {
    // Streams start at different frames so that a batch mixes inputs.
    streams.push_back(std::make_unique<DeviceStream>(
        channels_[i], &window, static_cast<size_t>(i) * bodies_.size() / spec.streams));
  }
  if (window.closed_loop) {
    for (int k = 0; k < spec.in_flight; ++k) {
      for (auto& stream : streams) stream->Send(Clock::now());
    }
    std::this_thread::sleep_until(window.stop);
  } else {
    // Evenly spaced sends, round robin over the streams; a send that falls behind its
    // schedule still counts its latency from the scheduled time.
    const std::chrono::duration<double> interval(1.0 / spec.rate);
    for (int64_t n = 0;; ++n) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(interval * n);
      if (due >= window.stop) break;
      std::this_thread::sleep_until(due);
      streams[n % spec.streams]->Send(due);
    }
  }
  for (auto& stream : streams) stream->Stop();

  LoadResult result;
  result.seconds = std::chrono::duration<double>(measure).count();
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(60);
  absl::Status failure;
  for (size_t i = 0; i < streams.size(); ++i) {
    const grpc::Status status = streams[i]->Wait(deadline);
    if (!status.ok() && failure.ok()) {
      failure = absl::UnavailableError(absl::StrCat("load ", spec.Label(), " against ", target_,
                                                    ": stream ", i, " ended with ",
                                                    status.error_message()));
    }
    streams[i]->MoveResultsTo(&result);
  }
  if (!failure.ok()) return failure;
  return result;
}

}  // namespace cleave::bench
