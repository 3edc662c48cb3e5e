#include "common/src/socket_address.h"

#include <boost/asio/connect.hpp>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace cleave::common {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

}  // namespace

absl::StatusOr<tcp::resolver::results_type> ResolveAddress(asio::io_context& io,
                                                           absl::string_view address,
                                                           absl::string_view role, bool passive) {
  const size_t colon = address.rfind(':');
  absl::string_view host = colon == absl::string_view::npos ? "" : address.substr(0, colon);
  const absl::string_view port = colon == absl::string_view::npos ? "" : address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  uint32_t port_number = 0;
  if (host.empty() || !absl::SimpleAtoi(port, &port_number) || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("bad ", role, " address '", address,
                                                   "': expected host:port (e.g. 127.0.0.1:0)"));
  }
  tcp::resolver resolver(io);
  boost::system::error_code error;
  auto results = resolver.resolve(std::string(host), std::string(port),
                                  passive ? tcp::resolver::passive : tcp::resolver::flags(), error);
  if (error || results.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", role, " address '", address,
                                               "': ", error ? error.message() : "no addresses"));
  }
  return results;
}

absl::Status Listen(asio::io_context& io, tcp::acceptor& acceptor, absl::string_view address,
                    absl::string_view role) {
  auto resolved = ResolveAddress(io, address, role, true);
  if (!resolved.ok()) return resolved.status();
  boost::system::error_code error;
  for (const auto& entry : *resolved) {
    const tcp::endpoint endpoint = entry.endpoint();
    acceptor.open(endpoint.protocol(), error);
    if (!error) acceptor.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) acceptor.bind(endpoint, error);
    if (!error) acceptor.listen(asio::socket_base::max_listen_connections, error);
    if (!error) return absl::OkStatus();
    boost::system::error_code ignored;
    acceptor.close(ignored);
  }
  return absl::UnavailableError(
      absl::StrCat("cannot listen on ", address, " (", role, "): ", error.message()));
}

absl::Status CheckReachable(const tcp::resolver::results_type& upstream, absl::string_view address,
                            std::chrono::milliseconds timeout) {
  asio::io_context io;
  tcp::socket socket(io);
  std::optional<boost::system::error_code> result;
  asio::async_connect(
      socket, upstream,
      [&result](const boost::system::error_code& error, const tcp::endpoint&) { result = error; });
  io.run_for(timeout);
  if (!result.has_value()) {
    return absl::UnavailableError(absl::StrCat(
        "upstream ", address, " is unreachable: no answer within ", timeout.count(), " ms"));
  }
  if (*result) {
    return absl::UnavailableError(
        absl::StrCat("upstream ", address, " is unreachable: ", result->message()));
  }
  return absl::OkStatus();
}

}  // namespace cleave::common
