// The device's connection to one edge, and the only code of the runtime that knows the wire: it
// builds each cleave.v1.InferRequest, carries every request on a single long-lived gRPC stream
// (responses matched by request id), parses the edge's answers itself and maps their in-band
// status, and returns a typed EdgeAnswer. When the stream breaks, every request on it is failed
// with UNAVAILABLE at once (nothing hangs) and the next Send opens a new stream — after a
// backoff, and not at all while the circuit breaker is open.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_DEVICE_SRC_EDGE_CLIENT_H_
#define CLEAVE_DEVICE_SRC_EDGE_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "cleave/common/mutex.h"
#include "cleave/device/edge_options.h"
#include "device/src/circuit_breaker.h"

namespace cleave::device {

// What the device asks of the edge: resume bundle `bundle_id` at cut `cut_id` from `frame`,
// the activation as a tensor frame, within `timeout`.
struct EdgeRequest {
  std::string bundle_id;
  int cut_id = 0;
  std::string frame;
  std::chrono::microseconds timeout{0};
};

// The edge's answer to a request it ran.
struct EdgeAnswer {
  std::vector<std::string> outputs;  // the model's outputs as tensor frames, not yet decoded
  // The edge's own time for the request, in microseconds (its ServerTimings).
  uint64_t queue_us = 0, decode_us = 0, compute_us = 0, encode_us = 0;

  // Bytes of the outputs.
  [[nodiscard]] size_t output_bytes() const;
  // The edge's own time, in milliseconds: queue, decode, compute and encode.
  [[nodiscard]] double edge_ms() const;
};

class EdgeClient {
 public:
  using Callback = std::function<void(absl::StatusOr<EdgeAnswer>)>;
  using Clock = std::chrono::steady_clock;

  // Connects lazily to `target` (host:port or any gRPC target).
  explicit EdgeClient(const std::string& target, EdgeClientOptions options = {});
  // Closes the stream after its queued writes; callbacks still pending then receive
  // UNAVAILABLE.
  ~EdgeClient();
  EdgeClient(const EdgeClient&) = delete;
  EdgeClient& operator=(const EdgeClient&) = delete;

  // A request id no other request of this client has.
  [[nodiscard]] uint64_t NewRequestId();

  // Sends `request` as request `request_id` (from NewRequestId) and calls `done` exactly once:
  // with the edge's answer; with the status the edge answered in band ("edge TARGET: ...");
  // with DATA_LOSS for an answer that is not a cleave.v1.InferResponse; or with UNAVAILABLE if
  // the stream breaks first. `done` runs on a gRPC thread and must not block. A request refused
  // without being sent (the edge is backing off or its circuit is open, or the client is
  // closing) gets its status at once, on the calling thread and without any lock held, so
  // `done` may report or send again.
  void Send(uint64_t request_id, EdgeRequest request, Callback done);

  // Whether `status` is Send's refusal of a request it never sent: that says nothing new about
  // the edge, so it is no failure to report.
  [[nodiscard]] static bool IsRefusal(const absl::Status& status);

  // Forgets request `request_id`: its callback will not be called (the caller gave up on it).
  // Returns the callback (empty if it has run) for the caller to drop outside the client's lock,
  // once it no longer needs what the callback holds.
  [[nodiscard]] Callback Abandon(uint64_t request_id);

  // When to try this edge: the caller reports outcomes as it judges them (a late answer is a
  // failure too), and Send refuses while the breaker says no.
  CircuitBreaker& breaker() { return breaker_; }
  const CircuitBreaker& breaker() const { return breaker_; }

  const std::string& target() const { return target_; }

 private:
  class Stream;
  struct Pending {
    Callback done;
    const Stream* stream;
  };

  // Called by a Stream (under no lock of ours).
  void Deliver(uint64_t request_id, absl::StatusOr<EdgeAnswer> answer);
  void StreamDone(Stream* stream, const absl::Status& status);

  const std::string target_;
  const EdgeClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  CircuitBreaker breaker_;
  std::atomic<uint64_t> next_request_id_{1};

  mutable common::Mutex mutex_;
  common::CondVar streams_done_;
  // Accepts new requests; nullptr when broken or not yet opened.
  Stream* current_ ABSL_GUARDED_BY(mutex_) = nullptr;
  std::set<Stream*> live_ ABSL_GUARDED_BY(mutex_);  // streams whose OnDone has not run yet
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mutex_);
  bool closing_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_SRC_EDGE_CLIENT_H_
