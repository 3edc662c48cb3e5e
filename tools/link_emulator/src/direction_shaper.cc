#include "tools/link_emulator/src/direction_shaper.h"

#include <algorithm>

#include "cleave/common/mutex.h"

namespace cleave::link_emulator {

DirectionShaper::DirectionShaper(const DirectionShape& shape, JitterDistribution distribution,
                                 uint64_t seed)
    : distribution_(distribution), delay_(shape.delay), jitter_(shape.jitter), random_(seed) {
  bucket_.SetRate(shape.bits_per_second, Clock::now());
}

void DirectionShaper::SetBandwidth(uint64_t bits_per_second) {
  common::MutexLock lock(&mutex_);
  bucket_.SetRate(bits_per_second, Clock::now());
}

void DirectionShaper::SetDelay(std::chrono::nanoseconds delay, std::chrono::nanoseconds jitter) {
  common::MutexLock lock(&mutex_);
  delay_ = delay;
  jitter_ = jitter;
}

DirectionShape DirectionShaper::shape() const {
  common::MutexLock lock(&mutex_);
  DirectionShape shape;
  shape.bits_per_second = bucket_.bits_per_second();
  shape.delay = delay_;
  shape.jitter = jitter_;
  return shape;
}

size_t DirectionShaper::Transmit(size_t wanted, Clock::time_point now,
                                 Clock::time_point* deliver_at, Clock::time_point* retry_at) {
  common::MutexLock lock(&mutex_);
  const size_t sent = bucket_.Take(wanted, now, retry_at);
  if (sent > 0) *deliver_at = now + std::max(SampleDelay(), std::chrono::nanoseconds(0));
  return sent;
}

std::chrono::nanoseconds DirectionShaper::SampleDelay() {
  if (jitter_.count() == 0) return delay_;
  const double spread = static_cast<double>(jitter_.count());
  double offset = 0;
  if (distribution_ == JitterDistribution::kUniform) {
    offset = std::uniform_real_distribution<double>(-spread, spread)(random_);
  } else {
    offset = std::normal_distribution<double>(0, spread)(random_);
  }
  return delay_ + std::chrono::nanoseconds(static_cast<int64_t>(offset));
}

}  // namespace cleave::link_emulator
