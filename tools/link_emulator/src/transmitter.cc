#include "tools/link_emulator/src/transmitter.h"

#include <utility>

#include "tools/link_emulator/src/relay_connection.h"

namespace cleave::link_emulator {

Transmitter::Transmitter(boost::asio::io_context& io, DirectionShaper& shaper,
                         const std::atomic<bool>& partitioned)
    : shaper_(shaper), partitioned_(partitioned), timer_(io) {}

void Transmitter::Enqueue(std::shared_ptr<RelayPipe> pipe) {
  if (stopped_) return;
  pipe->set_transmit_queued(true);
  queue_.push_back(std::move(pipe));
  if (queue_.size() == 1) Run();
}

void Transmitter::Wake() {
  if (timer_armed_) {
    timer_.cancel();  // its handler runs Run()
  } else {
    Run();
  }
}

void Transmitter::Stop() {
  stopped_ = true;
  timer_.cancel();
  for (const auto& pipe : queue_) pipe->set_transmit_queued(false);
  queue_.clear();
}

void Transmitter::Run() {
  while (!stopped_ && !timer_armed_ && !queue_.empty()) {
    if (partitioned_.load()) return;  // Wake() when the partition ends
    std::shared_ptr<RelayPipe> pipe = queue_.front();
    const size_t wanted = pipe->unsent_front_bytes();
    if (wanted == 0) {  // closed meanwhile
      pipe->set_transmit_queued(false);
      queue_.pop_front();
      continue;
    }
    DirectionShaper::Clock::time_point deliver_at;
    DirectionShaper::Clock::time_point retry_at;
    const size_t sent =
        shaper_.Transmit(wanted, DirectionShaper::Clock::now(), &deliver_at, &retry_at);
    if (sent == 0) {
      timer_armed_ = true;
      timer_.expires_at(retry_at);
      timer_.async_wait([this](const boost::system::error_code&) {
        timer_armed_ = false;
        Run();
      });
      return;
    }
    queue_.pop_front();
    pipe->Transmitted(sent, deliver_at);
    // Round robin: a pipe with more to send goes to the back of the queue.
    if (pipe->unsent_front_bytes() > 0) {
      queue_.push_back(std::move(pipe));
    } else {
      pipe->set_transmit_queued(false);
    }
  }
}

}  // namespace cleave::link_emulator
