// One relayed connection: the accepted client socket, the socket to the upstream server, and
// a RelayPipe per direction that moves bytes from one to the other through the emulated link:
//
//   source --read--> unsent --Transmitter (bandwidth)--> in flight (delay) --write--> sink
//
// A pipe stops reading when it holds max_buffered_bytes, which pushes back on the sender
// through TCP flow control. Pieces keep their order: a piece is never due before the piece
// transmitted ahead of it, whatever the jitter.
//
// Thread-safety: I/O thread only.
#ifndef CLEAVE_LINK_EMULATOR_RELAY_CONNECTION_H_
#define CLEAVE_LINK_EMULATOR_RELAY_CONNECTION_H_

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "tools/link_emulator/src/transmitter.h"

namespace cleave::link_emulator {

class RelayConnection;

class RelayPipe {
 public:
  using Clock = DirectionShaper::Clock;

  RelayPipe(RelayConnection& connection, boost::asio::ip::tcp::socket& source,
            boost::asio::ip::tcp::socket& sink, DirectionLink& link,
            const std::atomic<bool>& partitioned, size_t max_buffered_bytes);
  RelayPipe(const RelayPipe&) = delete;
  RelayPipe& operator=(const RelayPipe&) = delete;

  // Starts reading from the source.
  void Start();

  // Size of the oldest chunk (or its rest) not yet transmitted; 0 when there is none.
  size_t unsent_front_bytes() const;
  // Moves `bytes` from the oldest unsent chunk onto the wire, due at the sink at `deliver_at`
  // (or right after the previous piece, if that is later).
  void Transmitted(size_t bytes, Clock::time_point deliver_at);
  bool transmit_queued() const { return transmit_queued_; }
  void set_transmit_queued(bool queued) { transmit_queued_ = queued; }

  // Delivers the pieces held while the link was partitioned.
  void Resume() { Deliver(); }
  // Discards every byte held and stops; the connection is closing.
  void Discard();
  // True once the source has ended and every byte has been delivered.
  bool finished() const { return finished_; }

 private:
  // A range of a chunk read from the source; chunks are shared by their pieces.
  struct Slice {
    std::shared_ptr<const std::vector<char>> bytes;
    size_t offset = 0;
    size_t size = 0;
  };
  struct Piece {
    Slice slice;
    Clock::time_point deliver_at;
  };

  void Read();
  void OnRead(const boost::system::error_code& error, size_t bytes);
  void Deliver();
  void OnWritten(const boost::system::error_code& error, size_t pieces, size_t bytes);
  void FinishIfDrained();
  std::shared_ptr<RelayPipe> Self();

  RelayConnection& connection_;
  boost::asio::ip::tcp::socket& source_;
  boost::asio::ip::tcp::socket& sink_;
  DirectionLink& link_;
  const std::atomic<bool>& partitioned_;
  const size_t max_buffered_bytes_;

  std::array<char, 64 << 10> read_buffer_;
  std::deque<Slice> unsent_;
  std::deque<Piece> in_flight_;
  size_t buffered_bytes_ = 0;  // in unsent_ and in_flight_
  Clock::time_point last_deliver_at_;
  std::vector<boost::asio::const_buffer> write_buffers_;
  boost::asio::steady_timer delivery_timer_;

  bool reading_ = false;
  bool source_ended_ = false;
  bool writing_ = false;
  bool timer_armed_ = false;
  bool transmit_queued_ = false;
  bool finished_ = false;
  bool discarded_ = false;
};

class RelayConnection : public std::enable_shared_from_this<RelayConnection> {
 public:
  enum class CloseReason {
    kFinished,             // both sides ended and every byte was delivered
    kFailed,               // a socket error on either side
    kUpstreamUnreachable,  // the upstream connection could not be made
    kReset,                // DropAll / drop mode
    kStopped,              // the emulator stopped
  };
  using ClosedCallback = std::function<void(RelayConnection*, CloseReason)>;

  // What every connection shares with the emulator; outlives the connection.
  struct Link {
    DirectionLink& upstream;
    DirectionLink& downstream;
    const std::atomic<bool>& partitioned;
    size_t max_buffered_bytes;
  };

  RelayConnection(boost::asio::ip::tcp::socket client, const Link& link, ClosedCallback on_closed);
  RelayConnection(const RelayConnection&) = delete;
  RelayConnection& operator=(const RelayConnection&) = delete;

  // Connects to `upstream` (within kConnectTimeout), then relays both ways. The client is
  // reset when the upstream cannot be reached.
  void Start(const boost::asio::ip::tcp::resolver::results_type& upstream);

  // Closes both sockets — with a TCP reset for kReset and kFailed — and discards the bytes
  // held. Calls the closed callback once. Idempotent.
  void Close(CloseReason reason);

  // Delivers the bytes held while the link was partitioned.
  void ResumeDelivery();

  static constexpr std::chrono::seconds kConnectTimeout{5};

 private:
  friend class RelayPipe;

  // Called by a pipe when it has finished; closes the connection once both have.
  void PipeFinished();

  boost::asio::ip::tcp::socket client_;
  boost::asio::ip::tcp::socket server_;
  boost::asio::steady_timer connect_timer_;
  RelayPipe upstream_pipe_;    // client -> server
  RelayPipe downstream_pipe_;  // server -> client
  ClosedCallback on_closed_;
  bool connected_ = false;
  bool closed_ = false;
};

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_RELAY_CONNECTION_H_
