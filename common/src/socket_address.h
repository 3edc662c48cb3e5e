// "host:port" addresses as our options spell them ("[v6]:port" too), resolved with Boost.Asio,
// and listening sockets bound to them, with errors that name the address and what it was for.
// Shared by the edge's metrics endpoint and the link emulator (cleave_net: LibTorch-free).
#ifndef CLEAVE_COMMON_SRC_SOCKET_ADDRESS_H_
#define CLEAVE_COMMON_SRC_SOCKET_ADDRESS_H_

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// Resolves `address` ("host:port", "[v6]:port"). `role` names it in errors ("listen",
// "upstream"). With `passive`, resolves for binding. Returns INVALID_ARGUMENT when the form is
// wrong and UNAVAILABLE when the host cannot be resolved.
[[nodiscard]] absl::StatusOr<boost::asio::ip::tcp::resolver::results_type> ResolveAddress(
    boost::asio::io_context& io, absl::string_view address, absl::string_view role, bool passive);

// Opens `acceptor` on the first endpoint `address` resolves to that can be bound, and starts
// listening. Returns the errors of ResolveAddress, or UNAVAILABLE when no endpoint can be bound.
[[nodiscard]] absl::Status Listen(boost::asio::io_context& io,
                                  boost::asio::ip::tcp::acceptor& acceptor,
                                  absl::string_view address, absl::string_view role);

// Connects once to `upstream` and closes again, within `timeout`. Returns UNAVAILABLE naming
// `address` and the reason when that fails.
[[nodiscard]] absl::Status CheckReachable(
    const boost::asio::ip::tcp::resolver::results_type& upstream, absl::string_view address,
    std::chrono::milliseconds timeout);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_SRC_SOCKET_ADDRESS_H_
