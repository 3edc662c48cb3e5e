#include "tools/link_emulator/src/relay_connection.h"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <utility>

namespace cleave::link_emulator {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

// At most this many pieces go into one gather write.
constexpr size_t kMaxPiecesPerWrite = 64;

}  // namespace

RelayPipe::RelayPipe(RelayConnection& connection, tcp::socket& source, tcp::socket& sink,
                     DirectionLink& link, const std::atomic<bool>& partitioned,
                     size_t max_buffered_bytes)
    : connection_(connection),
      source_(source),
      sink_(sink),
      link_(link),
      partitioned_(partitioned),
      max_buffered_bytes_(max_buffered_bytes),
      delivery_timer_(sink.get_executor()) {}

std::shared_ptr<RelayPipe> RelayPipe::Self() {
  // Shares ownership of the connection, which holds this pipe.
  return std::shared_ptr<RelayPipe>(connection_.shared_from_this(), this);
}

void RelayPipe::Start() { Read(); }

void RelayPipe::Read() {
  if (reading_ || source_ended_ || discarded_ || buffered_bytes_ >= max_buffered_bytes_) return;
  reading_ = true;
  source_.async_read_some(asio::buffer(read_buffer_),
                          [self = Self()](const boost::system::error_code& error, size_t bytes) {
                            self->OnRead(error, bytes);
                          });
}

void RelayPipe::OnRead(const boost::system::error_code& error, size_t bytes) {
  reading_ = false;
  if (discarded_) return;
  if (bytes > 0) {
    auto chunk = std::make_shared<const std::vector<char>>(read_buffer_.begin(),
                                                           read_buffer_.begin() + bytes);
    unsent_.push_back(Slice{std::move(chunk), 0, bytes});
    buffered_bytes_ += bytes;
    link_.bytes_received += bytes;
  }
  if (error == asio::error::eof) {
    source_ended_ = true;
  } else if (error) {
    if (error != asio::error::operation_aborted) {
      connection_.Close(RelayConnection::CloseReason::kFailed);
    }
    return;
  }
  if (!unsent_.empty() && !transmit_queued_) link_.transmitter.Enqueue(Self());
  if (source_ended_) {
    FinishIfDrained();
  } else {
    Read();
  }
}

size_t RelayPipe::unsent_front_bytes() const { return unsent_.empty() ? 0 : unsent_.front().size; }

void RelayPipe::Transmitted(size_t bytes, Clock::time_point deliver_at) {
  Slice& front = unsent_.front();
  Slice piece{front.bytes, front.offset, bytes};
  front.offset += bytes;
  front.size -= bytes;
  if (front.size == 0) unsent_.pop_front();
  // Jitter never reorders: a piece is due no earlier than the one ahead of it.
  last_deliver_at_ = std::max(last_deliver_at_, deliver_at);
  in_flight_.push_back(Piece{std::move(piece), last_deliver_at_});
  Deliver();
}

void RelayPipe::Deliver() {
  if (discarded_ || writing_ || timer_armed_) return;
  if (in_flight_.empty()) {
    FinishIfDrained();
    return;
  }
  if (partitioned_.load()) return;  // Resume() when the partition ends
  const Clock::time_point now = Clock::now();
  if (in_flight_.front().deliver_at > now) {
    timer_armed_ = true;
    delivery_timer_.expires_at(in_flight_.front().deliver_at);
    delivery_timer_.async_wait([self = Self()](const boost::system::error_code&) {
      self->timer_armed_ = false;
      self->Deliver();
    });
    return;
  }
  write_buffers_.clear();
  size_t bytes = 0;
  for (const Piece& piece : in_flight_) {
    if (piece.deliver_at > now || write_buffers_.size() == kMaxPiecesPerWrite) break;
    write_buffers_.push_back(
        asio::buffer(piece.slice.bytes->data() + piece.slice.offset, piece.slice.size));
    bytes += piece.slice.size;
  }
  writing_ = true;
  asio::async_write(sink_, write_buffers_,
                    [self = Self(), pieces = write_buffers_.size(), bytes](
                        const boost::system::error_code& error, size_t) {
                      self->OnWritten(error, pieces, bytes);
                    });
}

void RelayPipe::OnWritten(const boost::system::error_code& error, size_t pieces, size_t bytes) {
  writing_ = false;
  if (discarded_) return;
  if (error) {
    if (error != asio::error::operation_aborted) {
      connection_.Close(RelayConnection::CloseReason::kFailed);
    }
    return;
  }
  in_flight_.erase(in_flight_.begin(), in_flight_.begin() + static_cast<ptrdiff_t>(pieces));
  buffered_bytes_ -= bytes;
  link_.bytes_delivered += bytes;
  Read();  // room again
  Deliver();
}

void RelayPipe::FinishIfDrained() {
  if (finished_ || !source_ended_ || !unsent_.empty() || !in_flight_.empty() || writing_) return;
  if (partitioned_.load()) return;  // the end of the stream is held like the bytes before it
  finished_ = true;
  // Pass the end of the stream on (FIN), so half-closed protocols keep working.
  boost::system::error_code ignored;
  sink_.shutdown(tcp::socket::shutdown_send, ignored);
  connection_.PipeFinished();
}

void RelayPipe::Discard() {
  discarded_ = true;
  unsent_.clear();
  in_flight_.clear();
  buffered_bytes_ = 0;
  delivery_timer_.cancel();
}

RelayConnection::RelayConnection(tcp::socket client, const Link& link, ClosedCallback on_closed)
    : client_(std::move(client)),
      server_(client_.get_executor()),
      connect_timer_(client_.get_executor()),
      upstream_pipe_(*this, client_, server_, link.upstream, link.partitioned,
                     link.max_buffered_bytes),
      downstream_pipe_(*this, server_, client_, link.downstream, link.partitioned,
                       link.max_buffered_bytes),
      on_closed_(std::move(on_closed)) {}

void RelayConnection::Start(const tcp::resolver::results_type& upstream) {
  auto self = shared_from_this();
  connect_timer_.expires_after(kConnectTimeout);
  connect_timer_.async_wait([self](const boost::system::error_code& error) {
    if (!error && !self->connected_) self->Close(CloseReason::kUpstreamUnreachable);
  });
  asio::async_connect(server_, upstream,
                      [self](const boost::system::error_code& error, const tcp::endpoint&) {
                        if (self->closed_) return;
                        if (error) {
                          self->Close(CloseReason::kUpstreamUnreachable);
                          return;
                        }
                        self->connected_ = true;
                        self->connect_timer_.cancel();
                        // Small writes (HTTP/2 frames, pings) must not wait for Nagle: the
                        // emulator adds exactly the delay it is told to.
                        boost::system::error_code ignored;
                        self->client_.set_option(tcp::no_delay(true), ignored);
                        self->server_.set_option(tcp::no_delay(true), ignored);
                        self->upstream_pipe_.Start();
                        self->downstream_pipe_.Start();
                      });
}

void RelayConnection::Close(CloseReason reason) {
  if (closed_) return;
  closed_ = true;
  const bool reset = reason == CloseReason::kReset || reason == CloseReason::kFailed ||
                     reason == CloseReason::kUpstreamUnreachable;
  boost::system::error_code ignored;
  for (tcp::socket* socket : {&client_, &server_}) {
    // SO_LINGER with a zero timeout makes close() send RST instead of FIN.
    if (reset) socket->set_option(asio::socket_base::linger(true, 0), ignored);
    socket->close(ignored);
  }
  connect_timer_.cancel();
  upstream_pipe_.Discard();
  downstream_pipe_.Discard();
  on_closed_(this, reason);
}

void RelayConnection::ResumeDelivery() {
  upstream_pipe_.Resume();
  downstream_pipe_.Resume();
}

void RelayConnection::PipeFinished() {
  if (upstream_pipe_.finished() && downstream_pipe_.finished()) Close(CloseReason::kFinished);
}

}  // namespace cleave::link_emulator
