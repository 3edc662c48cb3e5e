// The bandwidth limit of one direction of the link: a token bucket counted in bytes, driven
// by explicit time points so that it can be tested without a clock.
//
// Burst: the bucket holds what the link sends in kBurstTime (5 ms) at its rate, at least two
// Ethernet frames (3000 bytes) and at most 256 KiB, and hands out at most half of that at a
// time. Small enough that an idle link does not let a whole message through faster than the
// rate (a few ms of line rate is what a real NIC queue lets through); large enough that
// timer wake-ups once per couple of ms keep the link busy, and that a wake-up up to ~2.5 ms
// late (a loaded two-core machine) loses no throughput, because tokens keep accumulating
// while the other half of the bucket is spent.
//
// Thread-safety: none; the owner serializes access.
#ifndef CLEAVE_LINK_EMULATOR_TOKEN_BUCKET_H_
#define CLEAVE_LINK_EMULATOR_TOKEN_BUCKET_H_

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace cleave::link_emulator {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  static constexpr std::chrono::milliseconds kBurstTime{5};
  static constexpr size_t kMinBurstBytes = 3000;
  static constexpr size_t kMaxBurstBytes = 256 << 10;

  // An unlimited bucket.
  TokenBucket() = default;

  // Changes the rate at `now` (0: unlimited). Time before `now` is accounted at the old rate.
  // A bucket that becomes limited starts full.
  void SetRate(uint64_t bits_per_second, Clock::time_point now);

  // Takes up to `wanted` bytes (at most half the burst) when that many tokens are available
  // at `now` and returns how many were taken. Returns 0 when the tokens are not there yet and
  // sets `*ready_at` to the time they will be, at the current rate.
  [[nodiscard]] size_t Take(size_t wanted, Clock::time_point now, Clock::time_point* ready_at);

  uint64_t bits_per_second() const { return bits_per_second_; }
  size_t burst_bytes() const { return burst_bytes_; }

 private:
  void Refill(Clock::time_point now);

  uint64_t bits_per_second_ = 0;
  size_t burst_bytes_ = 0;
  double tokens_ = 0;  // bytes
  Clock::time_point refilled_at_;
};

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_TOKEN_BUCKET_H_
