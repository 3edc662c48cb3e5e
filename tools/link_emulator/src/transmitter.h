// One direction of the emulated link as connections see it (DirectionLink), and the
// Transmitter that puts the connections' bytes on that direction's wire: connections with
// bytes to send queue up, and each gets one piece at a time, in turn, as fast as the
// direction's token bucket allows, so connections share the bandwidth fairly. Nothing is
// transmitted while the link is partitioned.
//
// Thread-safety: the Transmitter lives on the I/O thread; call it from there only.
#ifndef CLEAVE_LINK_EMULATOR_TRANSMITTER_H_
#define CLEAVE_LINK_EMULATOR_TRANSMITTER_H_

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <memory>

#include "tools/link_emulator/src/direction_shaper.h"

namespace cleave::link_emulator {

class RelayPipe;

class Transmitter {
 public:
  Transmitter(boost::asio::io_context& io, DirectionShaper& shaper,
              const std::atomic<bool>& partitioned);
  Transmitter(const Transmitter&) = delete;
  Transmitter& operator=(const Transmitter&) = delete;

  // Queues `pipe`, which has bytes to send. REQUIRES: `pipe` is not queued already.
  void Enqueue(std::shared_ptr<RelayPipe> pipe);

  // Reconsiders the head of the queue now: after the bandwidth changed or a partition ended.
  void Wake();

  // Forgets every queued pipe and stops for good.
  void Stop();

 private:
  void Run();

  DirectionShaper& shaper_;
  const std::atomic<bool>& partitioned_;
  std::deque<std::shared_ptr<RelayPipe>> queue_;
  boost::asio::steady_timer timer_;  // waits for tokens
  bool timer_armed_ = false;
  bool stopped_ = false;
};

// The parts of one direction that every connection's pipe in that direction shares. Owned by
// the emulator; outlives every connection.
struct DirectionLink {
  DirectionLink(boost::asio::io_context& io, const DirectionShape& shape,
                JitterDistribution distribution, uint64_t seed,
                const std::atomic<bool>& partitioned)
      : shaper(shape, distribution, seed), transmitter(io, shaper, partitioned) {}

  DirectionShaper shaper;
  Transmitter transmitter;
  std::atomic<uint64_t> bytes_received{0};
  std::atomic<uint64_t> bytes_delivered{0};
};

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_TRANSMITTER_H_
