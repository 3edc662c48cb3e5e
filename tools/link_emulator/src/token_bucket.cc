#include "tools/link_emulator/src/token_bucket.h"

#include <algorithm>
#include <cmath>

namespace cleave::link_emulator {

void TokenBucket::SetRate(uint64_t bits_per_second, Clock::time_point now) {
  const bool was_unlimited = bits_per_second_ == 0;
  Refill(now);
  bits_per_second_ = bits_per_second;
  if (bits_per_second == 0) {
    burst_bytes_ = 0;
    return;
  }
  const double burst_time = std::chrono::duration<double>(kBurstTime).count();
  burst_bytes_ =
      std::clamp(static_cast<size_t>(static_cast<double>(bits_per_second) / 8.0 * burst_time),
                 kMinBurstBytes, kMaxBurstBytes);
  tokens_ = was_unlimited ? static_cast<double>(burst_bytes_)
                          : std::min(tokens_, static_cast<double>(burst_bytes_));
  refilled_at_ = now;
}

void TokenBucket::Refill(Clock::time_point now) {
  if (bits_per_second_ == 0 || now <= refilled_at_) return;
  const double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
  tokens_ = std::min(static_cast<double>(burst_bytes_),
                     tokens_ + elapsed * static_cast<double>(bits_per_second_) / 8.0);
  refilled_at_ = now;
}

size_t TokenBucket::Take(size_t wanted, Clock::time_point now, Clock::time_point* ready_at) {
  if (bits_per_second_ == 0) return wanted;
  Refill(now);
  const size_t piece = std::min(wanted, burst_bytes_ / 2);
  // The epsilon absorbs rounding: at *ready_at the tokens must count as there.
  if (tokens_ + 1e-6 >= static_cast<double>(piece)) {
    tokens_ -= static_cast<double>(piece);
    return piece;
  }
  const double missing_seconds =
      (static_cast<double>(piece) - tokens_) * 8.0 / static_cast<double>(bits_per_second_);
  *ready_at =
      now + std::chrono::ceil<Clock::duration>(std::chrono::duration<double>(missing_seconds));
  return 0;
}

}  // namespace cleave::link_emulator
