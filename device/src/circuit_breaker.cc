#include "device/src/circuit_breaker.h"

#include <algorithm>
#include <exception>
#include <random>

#include "absl/strings/str_cat.h"
#include "cleave/common/mutex.h"

namespace cleave::device {
namespace {

// Per-breaker jitter seed. std::random_device may have no entropy source on a small device (and
// throw): the clock and the breaker's address then differ between breakers well enough.
uint64_t JitterSeed(const void* breaker) {
  uint64_t seed = 0;
  try {
    std::random_device device;
    seed = uint64_t{device()} << 32 | device();
  } catch (const std::exception&) {
    seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           reinterpret_cast<uintptr_t>(breaker);
  }
  return seed | 1;  // xorshift never leaves 0
}

}  // namespace

CircuitBreaker::CircuitBreaker(const EdgeClientOptions& options)
    : min_backoff_(options.min_backoff),
      max_backoff_(options.max_backoff),
      open_for_(options.open_for),
      failure_threshold_(options.failure_threshold),
      jitter_state_(JitterSeed(this)) {}

CircuitBreaker::Clock::time_point CircuitBreaker::available_at() const {
  common::MutexLock lock(&mutex_);
  return blocked_until_;
}

int CircuitBreaker::consecutive_failures() const {
  common::MutexLock lock(&mutex_);
  return consecutive_failures_;
}

void CircuitBreaker::ReportSuccess() {
  common::MutexLock lock(&mutex_);
  consecutive_failures_ = 0;
  blocked_until_ = Clock::time_point();
}

void CircuitBreaker::ReportFailure() {
  common::MutexLock lock(&mutex_);
  ++consecutive_failures_;
  std::chrono::milliseconds delay = open_for_;
  if (consecutive_failures_ < failure_threshold_) {
    const int doublings = std::min(consecutive_failures_ - 1, 20);
    delay = std::min(max_backoff_, min_backoff_ * (1 << doublings));
  }
  // +-20% jitter from a per-breaker xorshift seeded at random: cheap, and a fleet does not
  // retry in lockstep.
  jitter_state_ ^= jitter_state_ << 13;
  jitter_state_ ^= jitter_state_ >> 7;
  jitter_state_ ^= jitter_state_ << 17;
  const double factor = 0.8 + 0.4 * static_cast<double>(jitter_state_ % 1000) / 1000.0;
  blocked_until_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(delay * factor);
}

std::string CircuitBreaker::Refusal() const {
  common::MutexLock lock(&mutex_);
  const Clock::time_point now = Clock::now();
  if (now >= blocked_until_) return "";
  const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(blocked_until_ - now);
  return absl::StrCat("skipped for ", wait.count(), " ms more after ", consecutive_failures_,
                      " consecutive failures",
                      consecutive_failures_ >= failure_threshold_ ? " (circuit open)" : "");
}

}  // namespace cleave::device
