// cleave::link_emulator::LinkEmulator — a TCP proxy that puts a realistic network between a
// device and an edge server on one machine. It listens on a port, opens one upstream
// connection per accepted connection and relays bytes both ways unchanged (gRPC / HTTP/2
// works through it), while shaping each direction of the link:
//
//  * bandwidth: a token bucket shared by every connection of the direction (0 = unlimited);
//  * one-way delay with optional jitter (uniform or normal, seeded). Byte order within a
//    connection is always preserved: a chunk is never delivered before the one sent before it;
//  * partition: bytes are held, not delivered, and flow again when the partition ends —
//    connections stay open, as in a radio shadow where TCP keeps retrying;
//  * drop: every open connection is reset at once, and while drop mode is on new connections
//    are reset as soon as they are accepted — as when a peer reboots or a firewall rejects.
//
// The shaping settings can be changed at any time from any thread, directly or by replaying a
// LinkTrace. All I/O runs on one internal thread (Boost.Asio), which is plenty for loopback
// rates of a few Gbit/s.
//
// Thread-safety: every method is thread-safe. Setters take effect for bytes not yet
// transmitted when they return.
#ifndef CLEAVE_LINK_EMULATOR_LINK_EMULATOR_H_
#define CLEAVE_LINK_EMULATOR_LINK_EMULATOR_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/link_emulator/direction.h"
#include "cleave/link_emulator/link_trace.h"

namespace cleave::link_emulator {

enum class JitterDistribution {
  kUniform,  // delay + U(-jitter, +jitter)
  kNormal,   // delay + N(0, jitter^2)
};

// How one direction of the link is shaped.
struct DirectionShape {
  uint64_t bits_per_second = 0;        // 0: unlimited
  std::chrono::nanoseconds delay{0};   // one way
  std::chrono::nanoseconds jitter{0};  // spread around `delay`
};

struct LinkEmulatorOptions {
  // host:port to accept connections on; port 0 picks a free port (see LinkEmulator::port()).
  std::string listen = "127.0.0.1:0";
  // host:port of the server every accepted connection is relayed to.
  std::string upstream;
  // host:port for the line-based control socket (see control_command.h); empty: none.
  std::string control_listen;

  DirectionShape upstream_shape;
  DirectionShape downstream_shape;
  JitterDistribution jitter_distribution = JitterDistribution::kUniform;
  uint64_t seed = 1;  // jitter samples are reproducible for a given seed and traffic

  // Bytes read from one side of one connection and not yet delivered to the other side. When
  // reached, the emulator stops reading from that side until some are delivered, so a slow
  // link pushes back on the sender the way TCP does. It also caps the bytes "on the wire": a
  // direction's throughput is at most max_buffered_bytes / delay.
  size_t max_buffered_bytes = 4 << 20;

  // Start() connects once to `upstream` and fails when that is impossible. Turn off to start
  // the emulator before the server.
  bool check_upstream = true;
};

// Bytes that crossed one direction of the link.
struct DirectionCounters {
  uint64_t bytes_received = 0;   // read from the sending side
  uint64_t bytes_delivered = 0;  // written to the receiving side
};

struct LinkCounters {
  DirectionCounters upstream;
  DirectionCounters downstream;
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t connections_reset = 0;          // by DropAll / drop mode
  uint64_t connections_refused = 0;        // accepted while in drop mode, reset at once
  uint64_t upstream_connect_failures = 0;  // the client's connection was reset
};

class LinkEmulator {
 public:
  // Binds the listening (and control) address, resolves `upstream` and starts relaying.
  // Returns INVALID_ARGUMENT for a malformed address, UNAVAILABLE when the address cannot be
  // bound, `upstream` cannot be resolved or (with check_upstream) not be connected to.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<LinkEmulator>> Start(
      const LinkEmulatorOptions& options);

  // Stops if still running.
  ~LinkEmulator();
  LinkEmulator(const LinkEmulator&) = delete;
  LinkEmulator& operator=(const LinkEmulator&) = delete;

  // Stops accepting, closes every connection (bytes still held are discarded) and joins the
  // I/O thread. Idempotent.
  void Stop();

  // The bound port (the chosen one when listening on port 0).
  int port() const;
  // The bound control port; 0 without a control socket.
  int control_port() const;

  // Sets the bandwidth of `direction` (kBoth: both); 0 is unlimited.
  void SetBandwidth(Direction direction, uint64_t bits_per_second);
  // Sets the one-way delay and jitter of `direction` (kBoth: both) for bytes sent from now on;
  // bytes already on the wire keep their delivery time.
  void SetDelay(Direction direction, std::chrono::nanoseconds delay,
                std::chrono::nanoseconds jitter = std::chrono::nanoseconds(0));
  // Holds (true) or releases (false) every byte in both directions; connections stay open.
  void SetPartitioned(bool partitioned);
  // Resets every open connection now. New connections are accepted as usual.
  void DropAll();
  // Drop mode: when turned on, resets every open connection and resets every new connection
  // as soon as it is accepted, until turned off.
  void SetDropping(bool dropping);

  // Replays `trace` from now on, replacing a trace already playing. Setters called meanwhile
  // hold until the trace's next event changes the same setting.
  void PlayTrace(LinkTrace trace);

  // The current shape of one direction (kUpstream or kDownstream).
  DirectionShape shape(Direction direction) const;
  bool partitioned() const;
  bool dropping() const;
  LinkCounters counters() const;

 private:
  class Impl;
  explicit LinkEmulator(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_LINK_EMULATOR_H_
