// The emulator's control socket: a TCP listener speaking the line-based control language of
// control_command.h — one command per line, one reply line per command — so that a test script
// can change the link with `echo "partition on" | nc -q1 127.0.0.1 PORT`. At most
// kMaxSessions clients at once; a longer line than kMaxLineBytes ends the session.
//
// Thread-safety: Listen before the I/O thread runs; everything else on the I/O thread.
#ifndef CLEAVE_LINK_EMULATOR_CONTROL_SERVER_H_
#define CLEAVE_LINK_EMULATOR_CONTROL_SERVER_H_

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace cleave::link_emulator {

class ControlServer {
 public:
  // Returns the reply line (without newline) to one command line.
  using Handler = std::function<std::string(absl::string_view line)>;

  static constexpr size_t kMaxSessions = 8;
  static constexpr size_t kMaxLineBytes = 4096;

  ControlServer(boost::asio::io_context& io, Handler handler);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds `address` ("host:port"); see socket_address.h for the errors.
  [[nodiscard]] absl::Status Listen(absl::string_view address);
  // The bound port.
  int port() const;

  // Starts accepting clients.
  void Start();
  // Closes the listener and every session. Idempotent.
  void Stop();

 private:
  class Session;

  void Accept();
  void SessionEnded(Session* session);

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Handler handler_;
  std::map<Session*, std::shared_ptr<Session>> sessions_;
  bool stopped_ = false;
};

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_CONTROL_SERVER_H_
