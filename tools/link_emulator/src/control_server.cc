#include "tools/link_emulator/src/control_server.h"

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <istream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/src/socket_address.h"

namespace cleave::link_emulator {

namespace asio = boost::asio;
using asio::ip::tcp;

// One control client: reads a line, writes the reply, repeats until the client closes.
class ControlServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ControlServer& server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)), input_(kMaxLineBytes) {}

  void ReadLine() {
    asio::async_read_until(socket_, input_, '\n',
                           [self = shared_from_this()](const boost::system::error_code& error,
                                                       size_t) { self->OnLine(error); });
  }

  // Ends the session (from the server). Idempotent.
  void Close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
  }

 private:
  void OnLine(const boost::system::error_code& error) {
    if (error == asio::error::not_found) {  // the line outgrew the buffer
      Reply(absl::StrCat("error: line longer than ", kMaxLineBytes, " bytes"), /*last=*/true);
      return;
    }
    if (error) {
      End();
      return;
    }
    std::string line;
    std::istream stream(&input_);
    std::getline(stream, line);
    const absl::string_view command = absl::StripAsciiWhitespace(line);
    if (command.empty()) {
      ReadLine();
      return;
    }
    Reply(server_.handler_(command), /*last=*/false);
  }

  void Reply(std::string reply, bool last) {
    reply_ = std::move(reply) + "\n";
    asio::async_write(
        socket_, asio::buffer(reply_),
        [self = shared_from_this(), last](const boost::system::error_code& error, size_t) {
          if (error || last) {
            self->End();
          } else {
            self->ReadLine();
          }
        });
  }

  void End() {
    Close();
    server_.SessionEnded(this);
  }

  ControlServer& server_;
  tcp::socket socket_;
  asio::streambuf input_;
  std::string reply_;
};

ControlServer::ControlServer(asio::io_context& io, Handler handler)
    : io_(io), acceptor_(io), handler_(std::move(handler)) {}

absl::Status ControlServer::Listen(absl::string_view address) {
  return common::Listen(io_, acceptor_, address, "control");
}

int ControlServer::port() const {
  boost::system::error_code error;
  const tcp::endpoint endpoint = acceptor_.local_endpoint(error);
  return error ? 0 : endpoint.port();
}

void ControlServer::Start() { Accept(); }

void ControlServer::Accept() {
  acceptor_.async_accept([this](const boost::system::error_code& error, tcp::socket socket) {
    if (stopped_ || error == asio::error::operation_aborted) return;
    if (!error) {
      if (sessions_.size() >= kMaxSessions) {
        boost::system::error_code ignored;
        socket.close(ignored);
      } else {
        auto session = std::make_shared<Session>(*this, std::move(socket));
        sessions_.emplace(session.get(), session);
        session->ReadLine();
      }
    }
    Accept();
  });
}

void ControlServer::SessionEnded(Session* session) { sessions_.erase(session); }

void ControlServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  // Sessions end (and leave sessions_) in their handlers; keep them alive until then.
  auto sessions = std::move(sessions_);
  sessions_.clear();
  for (auto& [raw, session] : sessions) session->Close();
}

}  // namespace cleave::link_emulator
