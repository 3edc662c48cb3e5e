#include "cleave/edge_server/admission_control.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace cleave::edge_server {

AdmissionControl::Ticket& AdmissionControl::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    peer_ = other.peer_;
  }
  return *this;
}

void AdmissionControl::Ticket::Release() {
  if (owner_ != nullptr) std::exchange(owner_, nullptr)->Release(peer_, bytes_);
  bytes_ = 0;
}

AdmissionControl::AdmissionControl(AdmissionOptions options, EdgeMetrics* metrics)
    : options_(options), metrics_(metrics) {
  if (metrics_ != nullptr) metrics_->SetInflightBudget(options_.max_inflight_bytes);
}

absl::StatusOr<AdmissionControl::Ticket> AdmissionControl::Admit(const std::string& peer,
                                                                 uint64_t bytes,
                                                                 uint64_t request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes > options_.max_inflight_bytes - bytes_) {
    if (metrics_ != nullptr) metrics_->RecordRefusal("memory_budget");
    return absl::ResourceExhaustedError(absl::StrCat(
        "request ", request_id, " refused: it needs ", bytes, " bytes and the edge's budget for ",
        "requests in flight (max_inflight_mb) has ", options_.max_inflight_bytes - bytes_, " of ",
        options_.max_inflight_bytes, " left"));
  }
  auto entry = peers_.try_emplace(peer, 0).first;
  if (options_.max_peer_inflight > 0 && entry->second >= options_.max_peer_inflight) {
    if (metrics_ != nullptr) metrics_->RecordRefusal("peer_cap");
    return absl::ResourceExhaustedError(
        absl::StrCat("request ", request_id, " refused: its connection already has ", entry->second,
                     " requests in flight (max_peer_inflight)"));
  }
  ++entry->second;
  bytes_ += bytes;
  ++requests_;
  PublishLocked();
  Ticket ticket;
  ticket.owner_ = this;
  ticket.bytes_ = bytes;
  ticket.peer_ = entry;
  return ticket;
}

void AdmissionControl::Release(std::map<std::string, size_t>::iterator peer, uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  bytes_ -= bytes;
  --requests_;
  if (--peer->second == 0) peers_.erase(peer);
  PublishLocked();
}

void AdmissionControl::PublishLocked() {
  if (metrics_ != nullptr) metrics_->SetInflight(bytes_, requests_);
}

uint64_t AdmissionControl::inflight_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return bytes_;
}

size_t AdmissionControl::inflight_requests() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return requests_;
}

}  // namespace cleave::edge_server
