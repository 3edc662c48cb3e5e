#include "cleave/edge_server/metrics_http_server.h"

#include <array>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "cleave/common/log.h"
#include "cleave/common/mutex.h"
#include "cleave/common/status_macros.h"
#include "common/src/socket_address.h"

namespace cleave::edge_server {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using common::Log;
using common::LogLevel;

// The content type Prometheus negotiates for the text exposition format 0.0.4.
constexpr char kExpositionContentType[] = "text/plain; version=0.0.4; charset=utf-8";
constexpr char kTextContentType[] = "text/plain; charset=utf-8";
// After a failed accept (e.g. out of file descriptors) wait before trying again instead of
// spinning on the error.
constexpr std::chrono::milliseconds kAcceptRetryDelay{100};
// How long Shutdown lets closed connections finish their handlers before stopping the loop.
constexpr std::chrono::seconds kShutdownGrace{5};

http::response<http::string_body> MakeResponse(http::status status, absl::string_view content_type,
                                               std::string body, unsigned version,
                                               bool keep_alive) {
  http::response<http::string_body> response(status, version);
  response.set(http::field::server, "cleave-edge");
  response.set(http::field::content_type,
               beast::string_view(content_type.data(), content_type.size()));
  response.keep_alive(keep_alive);
  response.body() = std::move(body);
  response.prepare_payload();
  return response;
}

// The response to a request that could not be read, or nothing when the connection should
// just be closed (peer gone, stalled past the deadline, server shutting down).
std::optional<http::response<http::string_body>> ResponseToReadError(beast::error_code error) {
  if (error.category() != http::make_error_code(http::error::bad_method).category()) {
    return std::nullopt;  // socket-level: eof, reset, timeout, aborted
  }
  http::status status = http::status::bad_request;
  std::string body = "bad request\n";
  if (error == http::error::end_of_stream || error == http::error::partial_message) {
    return std::nullopt;
  } else if (error == http::error::header_limit || error == http::error::buffer_overflow) {
    status = http::status::request_header_fields_too_large;
    body = "request header too large\n";
  } else if (error == http::error::body_limit) {
    status = http::status::payload_too_large;
    body = "request body too large\n";
  }
  return MakeResponse(status, kTextContentType, std::move(body), 11, /*keep_alive=*/false);
}

}  // namespace

class MetricsHttpServer::Impl {
 public:
  Impl(const MetricsHttpServerOptions& options, const common::MetricsRegistry* registry,
       ReadinessCheck is_ready)
      : options_(options),
        registry_(registry),
        is_ready_(std::move(is_ready)),
        acceptor_(io_context_),
        accept_retry_timer_(io_context_) {}

  ~Impl() { Shutdown(); }

  // Opens, binds and listens on `address` (host:port); returns the bound port.
  absl::StatusOr<int> Listen(const std::string& address);

  // Starts accepting on the I/O thread.
  void Run();

  // Stops accepting, closes every connection and joins the I/O thread. Idempotent.
  void Shutdown();

 private:
  class Session;

  // The rest runs on the I/O thread only.
  void Accept();
  void OnAccept(beast::error_code error, tcp::socket socket);
  void CloseAll();
  void OnSessionClosed(Session* session);
  http::response<http::string_body> Respond(const http::request<http::string_body>& request);
  bool IsReady() const;

  const MetricsHttpServerOptions options_;
  const common::MetricsRegistry* const registry_;
  const ReadinessCheck is_ready_;
  std::atomic<bool> stopping_{false};

  // Declared before the io_context: sessions still queued in it when it is destroyed (after a
  // forced stop) unregister themselves from here.
  std::unordered_set<Session*> sessions_;
  bool accept_paused_ = false;

  net::io_context io_context_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_timer_;

  // Serialises Shutdown. It guards no member: thread_ is set by Start before another thread
  // can call Shutdown, and afterwards only Shutdown touches it.
  common::Mutex shutdown_mutex_;
  common::Mutex run_mutex_;
  common::CondVar run_finished_cv_;
  bool run_finished_ ABSL_GUARDED_BY(run_mutex_) = false;
  std::thread thread_;
};

// One connection: reads requests one at a time (keep-alive) and writes their responses, each
// read and write under the deadline `io_timeout`. Owned by its pending operation's handler.
class MetricsHttpServer::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Impl* server)
      : server_(server),
        stream_(std::move(socket)),
        buffer_(2 * server->options_.max_request_bytes) {}

  ~Session() { server_->OnSessionClosed(this); }

  void Start() { ReadRequest(); }

  // Closes the socket: pending operations complete with operation_aborted.
  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void ReadRequest() {
    const MetricsHttpServerOptions& options = server_->options_;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(options.max_request_bytes));
    parser_->body_limit(options.max_request_bytes);
    stream_.expires_after(options.io_timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code error, size_t) { self->OnRead(error); });
  }

  void OnRead(beast::error_code error) {
    if (server_->stopping_) return Close();
    if (error) {
      Log(LogLevel::kDebug, "metrics_http_read_failed", {{"error", error.message()}});
      std::optional<http::response<http::string_body>> response = ResponseToReadError(error);
      if (!response.has_value()) return Close();
      return Write(*std::move(response));
    }
    Write(server_->Respond(parser_->get()));
  }

  void Write(http::response<http::string_body> response) {
    response_ = std::move(response);
    stream_.expires_after(server_->options_.io_timeout);
    http::async_write(
        stream_, response_,
        [self = shared_from_this()](beast::error_code error, size_t) { self->OnWrite(error); });
  }

  void OnWrite(beast::error_code error) {
    if (error || server_->stopping_) return Close();
    if (response_.keep_alive()) return ReadRequest();
    // Closing with unread request bytes would reset the connection, and the reset can destroy
    // the response before the client reads it: signal the end, then drain until the client
    // closes too (or the deadline passes).
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(server_->options_.io_timeout);
    Drain();
  }

  void Drain() {
    stream_.async_read_some(net::buffer(drain_buffer_),
                            [self = shared_from_this()](beast::error_code error, size_t) {
                              if (error || self->server_->stopping_) return self->Close();
                              self->Drain();
                            });
  }

  Impl* const server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> response_;
  std::array<char, 512> drain_buffer_;
};

absl::StatusOr<int> MetricsHttpServer::Impl::Listen(const std::string& address) {
  CLEAVE_RETURN_IF_ERROR(common::Listen(io_context_, acceptor_, address, "metrics"));
  return static_cast<int>(acceptor_.local_endpoint().port());
}

void MetricsHttpServer::Impl::Run() {
  Accept();
  thread_ = std::thread([this] {
    // A handler that throws (e.g. bad_alloc while rendering) costs that request, not the loop.
    while (true) {
      try {
        io_context_.run();
        break;
      } catch (const std::exception& e) {
        Log(LogLevel::kError, "metrics_http_handler_failed", {{"error", e.what()}});
      }
    }
    common::MutexLock lock(&run_mutex_);
    run_finished_ = true;
    run_finished_cv_.SignalAll();
  });
}

void MetricsHttpServer::Impl::Shutdown() {
  common::MutexLock shutdown_lock(&shutdown_mutex_);
  if (!thread_.joinable()) return;
  stopping_ = true;
  // Closing the acceptor and every socket completes all pending operations, after which the
  // loop runs out of work and returns by itself.
  net::post(io_context_, [this] { CloseAll(); });
  common::MutexLock lock(&run_mutex_);
  const auto until = std::chrono::steady_clock::now() + kShutdownGrace;
  while (!run_finished_ && run_finished_cv_.WaitUntil(&run_mutex_, until)) {
  }
  if (!run_finished_) {
    Log(LogLevel::kWarning, "metrics_http_forced_stop", {});
    io_context_.stop();
  }
  lock.Unlock();
  thread_.join();
  Log(LogLevel::kInfo, "metrics_http_stopped", {});
}

void MetricsHttpServer::Impl::CloseAll() {
  beast::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
  for (Session* session : sessions_) session->Close();
}

void MetricsHttpServer::Impl::Accept() {
  if (stopping_) return;
  // At the limit, leave further connections in the listen backlog until a session ends.
  if (sessions_.size() >= options_.max_connections) {
    accept_paused_ = true;
    return;
  }
  acceptor_.async_accept(
      [this](beast::error_code error, tcp::socket socket) { OnAccept(error, std::move(socket)); });
}

void MetricsHttpServer::Impl::OnAccept(beast::error_code error, tcp::socket socket) {
  if (stopping_ || error == net::error::operation_aborted) return;
  if (error) {
    Log(LogLevel::kWarning, "metrics_http_accept_failed", {{"error", error.message()}});
    accept_retry_timer_.expires_after(kAcceptRetryDelay);
    accept_retry_timer_.async_wait([this](beast::error_code wait_error) {
      if (!wait_error) Accept();
    });
    return;
  }
  auto session = std::make_shared<Session>(std::move(socket), this);
  sessions_.insert(session.get());
  session->Start();
  Accept();
}

void MetricsHttpServer::Impl::OnSessionClosed(Session* session) {
  sessions_.erase(session);
  if (accept_paused_ && !stopping_) {
    accept_paused_ = false;
    Accept();
  }
}

bool MetricsHttpServer::Impl::IsReady() const {
  if (!is_ready_) return true;
  try {
    return is_ready_();
  } catch (const std::exception& e) {
    Log(LogLevel::kWarning, "readiness_check_failed", {{"error", e.what()}});
    return false;
  }
}

http::response<http::string_body> MetricsHttpServer::Impl::Respond(
    const http::request<http::string_body>& request) {
  const absl::string_view target(request.target().data(), request.target().size());
  const absl::string_view path = target.substr(0, target.find('?'));
  const unsigned version = request.version();
  const bool keep_alive = request.keep_alive();
  if (path != "/metrics" && path != "/healthz" && path != "/readyz") {
    return MakeResponse(http::status::not_found, kTextContentType, "not found\n", version,
                        keep_alive);
  }
  if (request.method() != http::verb::get) {
    auto response = MakeResponse(http::status::method_not_allowed, kTextContentType,
                                 "method not allowed\n", version, keep_alive);
    response.set(http::field::allow, "GET");
    return response;
  }
  if (path == "/metrics") {
    return MakeResponse(http::status::ok, kExpositionContentType, registry_->RenderPrometheusText(),
                        version, keep_alive);
  }
  if (path == "/healthz") {
    return MakeResponse(http::status::ok, kTextContentType, "ok\n", version, keep_alive);
  }
  if (IsReady()) {
    return MakeResponse(http::status::ok, kTextContentType, "ready\n", version, keep_alive);
  }
  return MakeResponse(http::status::service_unavailable, kTextContentType, "not ready\n", version,
                      keep_alive);
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const MetricsHttpServerOptions& options, const common::MetricsRegistry* registry,
    ReadinessCheck is_ready) {
  if (registry == nullptr) return absl::InvalidArgumentError("metrics registry is null");
  if (options.max_connections == 0 || options.max_request_bytes == 0 ||
      options.max_request_bytes > UINT32_MAX || options.io_timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        "metrics HTTP limits must be positive: max_connections, max_request_bytes (< 4 GiB), "
        "io_timeout");
  }
  auto impl = std::make_unique<Impl>(options, registry, std::move(is_ready));
  CLEAVE_ASSIGN_OR_RETURN(const int port, impl->Listen(options.listen));
  impl->Run();
  Log(LogLevel::kInfo, "metrics_http_serving",
      {{"listen", options.listen}, {"port", absl::StrCat(port)}});
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl), port));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

MetricsHttpServer::~MetricsHttpServer() { Shutdown(); }

void MetricsHttpServer::Shutdown() { impl_->Shutdown(); }

}  // namespace cleave::edge_server
