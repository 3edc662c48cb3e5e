// "host:port" addresses as the emulator's options spell them, resolved with Boost.Asio, and
// listening sockets bound to them — with errors that name the address and what it was for.
#ifndef CLEAVE_LINK_EMULATOR_SOCKET_ADDRESS_H_
#define CLEAVE_LINK_EMULATOR_SOCKET_ADDRESS_H_

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::link_emulator {

// Resolves `address` ("host:port", "[v6]:port"). `role` names it in errors ("listen",
// "upstream"). With `passive`, resolves for binding. Returns INVALID_ARGUMENT when the form is
// wrong and UNAVAILABLE when the host cannot be resolved.
[[nodiscard]] absl::StatusOr<boost::asio::ip::tcp::resolver::results_type> ResolveAddress(
    boost::asio::io_context& io, absl::string_view address, absl::string_view role, bool passive);

// Opens `acceptor` on the first endpoint `address` resolves to and starts listening.
// Returns the errors of ResolveAddress, or UNAVAILABLE when the address cannot be bound.
[[nodiscard]] absl::Status Listen(boost::asio::io_context& io,
                                  boost::asio::ip::tcp::acceptor& acceptor,
                                  absl::string_view address, absl::string_view role);

// Connects once to `upstream` and closes again, within `timeout`. Returns UNAVAILABLE naming
// `address` and the reason when that fails.
[[nodiscard]] absl::Status CheckReachable(
    const boost::asio::ip::tcp::resolver::results_type& upstream, absl::string_view address,
    std::chrono::milliseconds timeout);

}  // namespace cleave::link_emulator

#endif  // CLEAVE_LINK_EMULATOR_SOCKET_ADDRESS_H_
