#include "cleave/edge_server/admission_control.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "cleave/common/mutex.h"

namespace cleave::edge_server {

AdmissionControl::Ticket& AdmissionControl::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    peer_ = std::move(other.peer_);
  }
  return *this;
}

void AdmissionControl::Ticket::Release() {
  if (owner_ != nullptr) std::exchange(owner_, nullptr)->Release(*peer_, bytes_);
  peer_.reset();
  bytes_ = 0;
}

AdmissionControl::AdmissionControl(AdmissionOptions options, EdgeMetrics* metrics)
    : options_(options), metrics_(metrics) {
  if (metrics_ != nullptr) metrics_->SetInflightBudget(options_.max_inflight_bytes);
}

std::shared_ptr<AdmissionControl::Peer> AdmissionControl::PeerFor(const std::string& name) {
  common::MutexLock lock(&mutex_);
  std::weak_ptr<Peer>& slot = peers_[name];
  if (std::shared_ptr<Peer> known = slot.lock()) return known;
  // The last holder's release drops the map entry, unless a new Peer took the name meanwhile.
  std::shared_ptr<Peer> peer(new Peer(name), [this](Peer* gone) {
    {
      common::MutexLock lock(&mutex_);
      auto entry = peers_.find(gone->name());
      if (entry != peers_.end() && entry->second.expired()) peers_.erase(entry);
    }
    delete gone;
  });
  slot = peer;
  return peer;
}

absl::StatusOr<AdmissionControl::Ticket> AdmissionControl::Admit(const std::shared_ptr<Peer>& peer,
                                                                 uint64_t bytes,
                                                                 uint64_t request_id) {
  common::MutexLock lock(&mutex_);
  if (bytes > options_.max_inflight_bytes - bytes_) {
    if (metrics_ != nullptr) metrics_->RecordRefusal(EdgeMetrics::Refusal::kMemoryBudget);
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", request_id, " refused: it needs ", bytes, " bytes and the edge's budget for ",
        "requests in flight (max_inflight_mb) has ", options_.max_inflight_bytes - bytes_, " of ",
        options_.max_inflight_bytes, " left"));
  }
  if (options_.max_peer_inflight > 0 && peer->in_flight_ >= options_.max_peer_inflight) {
    if (metrics_ != nullptr) metrics_->RecordRefusal(EdgeMetrics::Refusal::kPeerCap);
    return absl::ResourceExhaustedError(
        absl::StrCat("request ", request_id, " refused: its connection already has ",
                     peer->in_flight_, " requests in flight (max_peer_inflight)"));
  }
  ++peer->in_flight_;
  bytes_ += bytes;
  ++requests_;
  PublishLocked();
  Ticket ticket;
  ticket.owner_ = this;
  ticket.bytes_ = bytes;
  ticket.peer_ = peer;
  return ticket;
}

void AdmissionControl::Release(Peer& peer, uint64_t bytes) {
  common::MutexLock lock(&mutex_);
  --peer.in_flight_;
  bytes_ -= bytes;
  --requests_;
  PublishLocked();
  if (requests_ == 0) idle_.SignalAll();
}

bool AdmissionControl::AwaitIdle(std::chrono::steady_clock::time_point deadline) const {
  common::MutexLock lock(&mutex_);
  while (requests_ > 0 && idle_.WaitUntil(&mutex_, deadline)) {
  }
  return requests_ == 0;
}

void AdmissionControl::PublishLocked() {
  if (metrics_ != nullptr) metrics_->SetInflight(bytes_, requests_);
}

uint64_t AdmissionControl::inflight_bytes() const {
  common::MutexLock lock(&mutex_);
  return bytes_;
}

size_t AdmissionControl::inflight_requests() const {
  common::MutexLock lock(&mutex_);
  return requests_;
}

}  // namespace cleave::edge_server
