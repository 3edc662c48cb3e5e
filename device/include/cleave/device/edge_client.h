// The device's connection to one edge: a single long-lived gRPC stream carrying every
// request, responses matched by request id. When the stream breaks, every request on it is
// failed with UNAVAILABLE at once (nothing hangs) and the next Send opens a new stream —
// after a backoff, and not at all while the circuit breaker is open.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_DEVICE_EDGE_CLIENT_H_
#define CLEAVE_DEVICE_EDGE_CLIENT_H_

#include <grpcpp/channel.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "cleave/v1/inference.grpc.pb.h"

namespace cleave::device {

struct EdgeClientOptions {
  int max_message_bytes = 64 << 20;
  // "" (gRPC's pick_first) or "round_robin", for targets that resolve to several addresses
  // ("ipv4:10.0.0.2:50051,10.0.0.3:50051", "dns:///edge.local:50051").
  std::string load_balancing;
  // After a failure the edge is skipped for a backoff that doubles per consecutive failure
  // (with +-20% jitter, so a fleet does not reconnect in lockstep); after `failure_threshold`
  // consecutive failures the circuit opens for `open_for`. A success closes it.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{2000};
  int failure_threshold = 3;
  std::chrono::milliseconds open_for{3000};
};

class EdgeClient {
 public:
  using Callback = std::function<void(absl::StatusOr<v1::InferResponse>)>;
  using Clock = std::chrono::steady_clock;

  // Connects lazily to `target` (host:port or any gRPC target).
  explicit EdgeClient(const std::string& target, EdgeClientOptions options = {});
  // Closes the stream after its queued writes; callbacks still pending then receive
  // UNAVAILABLE.
  ~EdgeClient();
  EdgeClient(const EdgeClient&) = delete;
  EdgeClient& operator=(const EdgeClient&) = delete;

  // Sends `request` and calls `done` exactly once: with the edge's response (which may carry
  // a non-OK status_code), or UNAVAILABLE if the stream breaks first. `done` runs on a gRPC
  // thread and must not block. A request refused without being sent (the edge is backing
  // off or its circuit is open, or the client is closing) gets its status at once, on the
  // calling thread and without any lock held, so `done` may report or send again.
  void Send(v1::InferRequest request, Callback done);

  // Whether `status` is Send's refusal of a request it never sent: that says nothing new about
  // the edge, so it is no failure to report.
  [[nodiscard]] static bool IsRefusal(const absl::Status& status);

  // Forgets request `request_id`: its callback will not be called (the caller gave up on it).
  void Abandon(uint64_t request_id);

  // False while the edge is in backoff or its circuit is open: requests should go elsewhere.
  [[nodiscard]] bool Available() const;
  // Outcomes of requests as the caller judged them (a late answer is a failure too).
  void ReportSuccess();
  void ReportFailure();
  // When the edge may be tried again: in the past unless it is backing off or its circuit is
  // open.
  [[nodiscard]] Clock::time_point available_at() const;
  // Consecutive failures so far (0 when healthy).
  [[nodiscard]] int consecutive_failures() const;

  const std::string& target() const { return target_; }

 private:
  class Stream;
  struct Pending {
    Callback done;
    const Stream* stream;
  };

  // Called by a Stream (under no lock of ours).
  void Deliver(v1::InferResponse response);
  void StreamDone(Stream* stream, const grpc::Status& status);

  const std::string target_;
  const EdgeClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;

  mutable std::mutex mutex_;
  std::condition_variable streams_done_;
  Stream* current_ = nullptr;  // accepts new requests; nullptr when broken or not yet opened
  std::set<Stream*> live_;     // streams whose OnDone has not run yet
  std::map<uint64_t, Pending> pending_;
  bool closing_ = false;
  int consecutive_failures_ = 0;
  Clock::time_point blocked_until_;
  uint64_t jitter_state_;  // xorshift, never 0
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_EDGE_CLIENT_H_
