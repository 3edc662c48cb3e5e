// The shaping settings of one direction of the link — bandwidth (a token bucket), one-way
// delay and jitter — shared by every connection, changed by any thread, consulted by the I/O
// thread each time a piece of a connection's bytes goes on the wire.
//
// Thread-safety: every method is thread-safe.
#ifndef CLEAVE_LINK_EMULATOR_DIRECTION_SHAPER_H_
#define CLEAVE_LINK_EMULATOR_DIRECTION_SHAPER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <random>

#include "absl/base/thread_annotations.h"
#include "cleave/common/mutex.h"
#include "cleave/link_emulator/link_emulator.h"
#include "tools/link_emulator/src/token_bucket.h"

namespace cleave::link_emulator {

class DirectionShaper {
 public:
  using Clock = TokenBucket::Clock;

  DirectionShaper(const DirectionShape& shape, JitterDistribution distribution, uint64_t seed);

  void SetBandwidth(uint64_t bits_per_second);
  void SetDelay(std::chrono::nanoseconds delay, std::chrono::nanoseconds jitter);
  DirectionShape shape() const;

  // Puts up to `wanted` bytes on the wire at `now` when the bandwidth allows: returns how many
  // and sets `*deliver_at` to when they reach the other side (now + delay + a jitter sample,
  // never before `now`). Returns 0 when the link is busy and sets `*retry_at`.
  [[nodiscard]] size_t Transmit(size_t wanted, Clock::time_point now, Clock::time_point* deliver_at,
                                Clock::time_point* retry_at);

 private:
  std::chrono::nanoseconds SampleDelay() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const JitterDistribution distribution_;
  mutable common::Mutex mutex_;
  TokenBucket bucket_ ABSL_GUARDED_BY(mutex_);
  std::chrono::nanoseconds delay_ ABSL_GUARDED_BY(mutex_);
  std::chrono::nanoseconds jitter_ ABSL_GUARDED_BY(mutex_);
  std::mt19937_64 random_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_DIRECTION_SHAPER_H_
