// Admission control for the edge: a server-wide budget of bytes for the requests in flight
// (each charged, before anything is decoded, for its frame, its declared decoded activation,
// the outputs the bundle declares for it and its forward's working memory) and a cap on the
// requests in flight per peer. No mix of requests then makes the edge allocate for activations
// beyond its budget, and no one device fills the queue that every device shares.
//
// Thread-safety: every method is thread-safe; a Ticket may be destroyed on any thread.
#ifndef CLEAVE_EDGE_SERVER_ADMISSION_CONTROL_H_
#define CLEAVE_EDGE_SERVER_ADMISSION_CONTROL_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "cleave/common/mutex.h"
#include "cleave/edge_server/edge_metrics.h"

namespace cleave::edge_server {

struct AdmissionOptions {
  uint64_t max_inflight_bytes = uint64_t{1} << 30;
  // Requests in flight from one peer (a client connection, as gRPC names it); 0: no cap.
  size_t max_peer_inflight = 0;
};

class AdmissionControl {
 public:
  // One peer's requests in flight. Calls hold it for their lifetime (a stream looks it up
  // once), so admitting a request touches no shared map; it goes when its last holder does.
  class Peer {
   public:
    const std::string& name() const { return name_; }

   private:
    friend class AdmissionControl;
    explicit Peer(std::string name) : name_(std::move(name)) {}

    const std::string name_;
    size_t in_flight_ = 0;  // guarded by the AdmissionControl's mutex_
  };

  // One admitted request: holds its bytes of the budget and its peer's slot until it is
  // destroyed (or reset by assigning a default-constructed Ticket).
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept { *this = std::move(other); }
    Ticket& operator=(Ticket&& other) noexcept;
    ~Ticket() { Release(); }

    uint64_t bytes() const { return bytes_; }

   private:
    friend class AdmissionControl;
    void Release();

    AdmissionControl* owner_ = nullptr;
    uint64_t bytes_ = 0;
    std::shared_ptr<Peer> peer_;
  };

  // REQUIRES: `metrics` (may be null) outlives this, and this outlives every Ticket and Peer.
  AdmissionControl(AdmissionOptions options, EdgeMetrics* metrics);

  // The peer named `name` (a client connection, as gRPC names it), shared by every call
  // holding it.
  [[nodiscard]] std::shared_ptr<Peer> PeerFor(const std::string& name);

  // Admits request `request_id` of `bytes` from `peer`. RESOURCE_EXHAUSTED, saying which limit
  // it met, when the budget cannot hold it next to what is in flight or its peer is at its cap.
  [[nodiscard]] absl::StatusOr<Ticket> Admit(const std::shared_ptr<Peer>& peer, uint64_t bytes,
                                             uint64_t request_id);

  uint64_t inflight_bytes() const;
  size_t inflight_requests() const;
  // Waits until no request is in flight or `deadline` passes; true when none is.
  [[nodiscard]] bool AwaitIdle(std::chrono::steady_clock::time_point deadline) const;
  const AdmissionOptions& options() const { return options_; }

 private:
  void Release(Peer& peer, uint64_t bytes);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const AdmissionOptions options_;
  EdgeMetrics* metrics_;
  // Guards the totals and every Peer's count; the gauges are set under it, so they always
  // show the latest totals.
  mutable common::Mutex mutex_;
  mutable common::CondVar idle_;  // signalled when the last request in flight goes
  uint64_t bytes_ ABSL_GUARDED_BY(mutex_) = 0;
  size_t requests_ ABSL_GUARDED_BY(mutex_) = 0;
  std::map<std::string, std::weak_ptr<Peer>> peers_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_EDGE_SERVER_ADMISSION_CONTROL_H_
