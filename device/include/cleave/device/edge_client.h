// The device's connection to one edge: a single long-lived gRPC stream carrying every
// request, responses matched by request id. When the stream breaks, every request on it is
// failed with UNAVAILABLE at once (nothing hangs) and the next Send opens a new stream.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_DEVICE_EDGE_CLIENT_H_
#define CLEAVE_DEVICE_EDGE_CLIENT_H_

#include <grpcpp/channel.h>

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

class EdgeClient {
 public:
  using Callback = std::function<void(absl::StatusOr<v1::InferResponse>)>;

  // Connects lazily to `target` (host:port).
  explicit EdgeClient(const std::string& target, int max_message_bytes = 64 << 20);
  // Closes the stream after its queued writes; callbacks still pending then receive
  // UNAVAILABLE.
  ~EdgeClient();
  EdgeClient(const EdgeClient&) = delete;
  EdgeClient& operator=(const EdgeClient&) = delete;

  // Sends `request` and calls `done` exactly once: with the edge's response (which may carry
  // a non-OK status_code), or UNAVAILABLE if the stream breaks first. `done` runs on a gRPC
  // thread and must not block.
  void Send(v1::InferRequest request, Callback done);

  // Forgets request `request_id`: its callback will not be called (the caller gave up on it).
  void Abandon(uint64_t request_id);

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
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;

  std::mutex mutex_;
  std::condition_variable streams_done_;
  Stream* current_ = nullptr;  // accepts new requests; nullptr when broken or not yet opened
  std::set<Stream*> live_;     // streams whose OnDone has not run yet
  std::map<uint64_t, Pending> pending_;
  bool closing_ = false;
};

}  // namespace cleave::device

#endif  // CLEAVE_DEVICE_EDGE_CLIENT_H_
