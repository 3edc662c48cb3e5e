#include "cleave/edge_server/metrics_http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace cleave::edge_server {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using ::testing::HasSubstr;

// Generous: only reached when the server misbehaves, and then it fails the test instead of
// hanging it.
constexpr std::chrono::seconds kClientDeadline{30};

// A blocking HTTP client for loopback tests. Every operation runs under kClientDeadline.
class TestClient {
 public:
  beast::error_code Connect(int port) {
    const tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port));
    return Run([&](auto handler) { stream_.async_connect(endpoint, handler); });
  }

  beast::error_code SendRaw(const std::string& bytes) {
    return Run([&](auto handler) { net::async_write(stream_, net::buffer(bytes), handler); });
  }

  beast::error_code Send(http::verb method, const std::string& target) {
    http::request<http::string_body> request(method, target, 11);
    request.set(http::field::host, "127.0.0.1");
    request.keep_alive(true);
    return Run([&](auto handler) { http::async_write(stream_, request, handler); });
  }

  beast::error_code Read(http::response<http::string_body>* response) {
    return Run([&](auto handler) { http::async_read(stream_, buffer_, *response, handler); });
  }

  // Waits for the server to close the connection; returns the error the read ended with
  // (end of stream or reset when it closed, timeout when it did not).
  beast::error_code ReadUntilClosed() {
    char byte;
    beast::error_code error;
    while (!error) {
      error = Run([&](auto handler) { stream_.async_read_some(net::buffer(&byte, 1), handler); });
    }
    return error;
  }

 private:
  template <typename StartOperation>
  beast::error_code Run(StartOperation start) {
    beast::error_code result = net::error::would_block;
    stream_.expires_after(kClientDeadline);
    start([&result](beast::error_code error, auto&&...) { result = error; });
    io_context_.restart();
    io_context_.run();
    return result;
  }

  net::io_context io_context_;
  beast::tcp_stream stream_{io_context_};
  beast::flat_buffer buffer_;
};

// Sends `method` `target` on a new connection and returns the response (status 0 on failure).
http::response<http::string_body> Fetch(int port, const std::string& target,
                                        http::verb method = http::verb::get) {
  TestClient client;
  http::response<http::string_body> response;
  beast::error_code error = client.Connect(port);
  if (!error) error = client.Send(method, target);
  if (!error) error = client.Read(&response);
  EXPECT_FALSE(error) << target << ": " << error.message();
  return response;
}

std::unique_ptr<MetricsHttpServer> StartServer(const common::MetricsRegistry& registry,
                                               MetricsHttpServerOptions options = {},
                                               ReadinessCheck is_ready = nullptr) {
  options.listen = "127.0.0.1:0";
  auto server = MetricsHttpServer::Start(options, &registry, std::move(is_ready));
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  EXPECT_GT((*server)->port(), 0);
  return *std::move(server);
}

bool IsClosedByPeer(beast::error_code error) {
  return error == net::error::eof || error == net::error::connection_reset;
}

TEST(MetricsHttpServerTest, ServesTheRegistryInTheExpositionFormat) {
  common::MetricsRegistry registry;
  auto requests =
      registry.AddCounter("cleave_requests_total", "Requests answered.", {"model", "status"});
  ASSERT_TRUE(requests.ok());
  common::Counter* ok = *(*requests)->WithLabels({"fashion", "OK"});
  ok->Increment();
  auto server = StartServer(registry);
  ASSERT_NE(server, nullptr);

  auto response = Fetch(server->port(), "/metrics");
  EXPECT_EQ(response.result(), http::status::ok);
  EXPECT_EQ(response[http::field::content_type], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.body(),
            "# HELP cleave_requests_total Requests answered.\n"
            "# TYPE cleave_requests_total counter\n"
            "cleave_requests_total{model=\"fashion\",status=\"OK\"} 1\n");

  // Each scrape renders the current values; a query string does not change the resource.
  ok->Add(2);
  response = Fetch(server->port(), "/metrics?debug=1");
  EXPECT_EQ(response.result(), http::status::ok);
  EXPECT_THAT(response.body(),
              HasSubstr("cleave_requests_total{model=\"fashion\",status=\"OK\"} 3\n"));
  EXPECT_EQ(response.body(), registry.RenderPrometheusText());
}

TEST(MetricsHttpServerTest, HealthzAnswersOkWhileRunning) {
  common::MetricsRegistry registry;
  auto server = StartServer(registry);
  ASSERT_NE(server, nullptr);
  const auto response = Fetch(server->port(), "/healthz");
  EXPECT_EQ(response.result(), http::status::ok);
  EXPECT_EQ(response.body(), "ok\n");
}

TEST(MetricsHttpServerTest, ReadyzFollowsTheReadinessCheck) {
  common::MetricsRegistry registry;
  std::atomic<bool> ready{false};
  auto server = StartServer(registry, {}, [&ready] { return ready.load(); });
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Fetch(server->port(), "/readyz").result(), http::status::service_unavailable);
  ready = true;
  EXPECT_EQ(Fetch(server->port(), "/readyz").result(), http::status::ok);
  ready = false;
  EXPECT_EQ(Fetch(server->port(), "/readyz").result(), http::status::service_unavailable);
  // Liveness does not depend on readiness.
  EXPECT_EQ(Fetch(server->port(), "/healthz").result(), http::status::ok);
}

TEST(MetricsHttpServerTest, ReadyzWithoutACheckIsReadyAndAThrowingCheckIsNot) {
  common::MetricsRegistry registry;
  auto always = StartServer(registry);
  ASSERT_NE(always, nullptr);
  EXPECT_EQ(Fetch(always->port(), "/readyz").result(), http::status::ok);

  auto throwing =
      StartServer(registry, {}, []() -> bool { throw std::runtime_error("registry broken"); });
  ASSERT_NE(throwing, nullptr);
  EXPECT_EQ(Fetch(throwing->port(), "/readyz").result(), http::status::service_unavailable);
  EXPECT_EQ(Fetch(throwing->port(), "/healthz").result(), http::status::ok);
}

TEST(MetricsHttpServerTest, UnknownPathsAre404AndOtherMethodsAre405) {
  common::MetricsRegistry registry;
  auto server = StartServer(registry);
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Fetch(server->port(), "/").result(), http::status::not_found);
  EXPECT_EQ(Fetch(server->port(), "/metrics/extra").result(), http::status::not_found);
  EXPECT_EQ(Fetch(server->port(), "/nope", http::verb::post).result(), http::status::not_found);
  for (http::verb method : {http::verb::post, http::verb::put, http::verb::delete_}) {
    for (const char* path : {"/metrics", "/healthz", "/readyz"}) {
      const auto response = Fetch(server->port(), path, method);
      EXPECT_EQ(response.result(), http::status::method_not_allowed) << path;
      EXPECT_EQ(response[http::field::allow], "GET");
    }
  }
}

TEST(MetricsHttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  common::MetricsRegistry registry;
  auto server = StartServer(registry);
  ASSERT_NE(server, nullptr);
  TestClient client;
  ASSERT_FALSE(client.Connect(server->port()));
  for (const char* path : {"/healthz", "/nope", "/readyz", "/metrics"}) {
    ASSERT_FALSE(client.Send(http::verb::get, path));
    http::response<http::string_body> response;
    ASSERT_FALSE(client.Read(&response)) << path;
    EXPECT_EQ(response.result(),
              std::string(path) == "/nope" ? http::status::not_found : http::status::ok);
    EXPECT_TRUE(response.keep_alive());
  }
}

TEST(MetricsHttpServerTest, GarbageGets400AndTheServerKeepsServing) {
  common::MetricsRegistry registry;
  auto server = StartServer(registry);
  ASSERT_NE(server, nullptr);
  TestClient client;
  ASSERT_FALSE(client.Connect(server->port()));
  ASSERT_FALSE(client.SendRaw(std::string("\x16\x03\x01\x02\x00garbage\r\n\r\n", 16)));
  http::response<http::string_body> response;
  ASSERT_FALSE(client.Read(&response));
  EXPECT_EQ(response.result(), http::status::bad_request);
  EXPECT_FALSE(response.keep_alive());
  EXPECT_TRUE(IsClosedByPeer(client.ReadUntilClosed()));

  EXPECT_EQ(Fetch(server->port(), "/healthz").result(), http::status::ok);
}

TEST(MetricsHttpServerTest, OversizedRequestsAreRefusedAndTheServerKeepsServing) {
  common::MetricsRegistry registry;
  MetricsHttpServerOptions options;
  options.max_request_bytes = 1024;
  auto server = StartServer(registry, options);
  ASSERT_NE(server, nullptr);

  TestClient header_client;
  ASSERT_FALSE(header_client.Connect(server->port()));
  ASSERT_FALSE(header_client.SendRaw(
      "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(4096, 'a') + "\r\n\r\n"));
  http::response<http::string_body> response;
  ASSERT_FALSE(header_client.Read(&response));
  EXPECT_EQ(response.result(), http::status::request_header_fields_too_large);
  // The server closes the connection after refusing, cleanly (the rest is drained).
  EXPECT_EQ(header_client.ReadUntilClosed(), net::error::eof);

  TestClient body_client;
  ASSERT_FALSE(body_client.Connect(server->port()));
  ASSERT_FALSE(body_client.SendRaw(
      "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" + std::string(4096, 'b')));
  response = {};
  ASSERT_FALSE(body_client.Read(&response));
  EXPECT_EQ(response.result(), http::status::payload_too_large);
  EXPECT_EQ(body_client.ReadUntilClosed(), net::error::eof);

  EXPECT_EQ(Fetch(server->port(), "/healthz").result(), http::status::ok);
}

TEST(MetricsHttpServerTest, HalfSentRequestIsCutOffWithoutBlockingOthers) {
  common::MetricsRegistry registry;
  MetricsHttpServerOptions options;
  options.io_timeout = std::chrono::milliseconds(300);
  auto server = StartServer(registry, options);
  ASSERT_NE(server, nullptr);

  TestClient stalled;
  ASSERT_FALSE(stalled.Connect(server->port()));
  ASSERT_FALSE(stalled.SendRaw("GET /metrics HTTP/1.1\r\nHost: x\r\n"));  // no blank line
  // Served while the stalled request is pending.
  EXPECT_EQ(Fetch(server->port(), "/healthz").result(), http::status::ok);
  // The server gives up on the stalled client (the client's own deadline is far longer).
  EXPECT_TRUE(IsClosedByPeer(stalled.ReadUntilClosed()));
  EXPECT_EQ(Fetch(server->port(), "/healthz").result(), http::status::ok);
}

TEST(MetricsHttpServerTest, ConnectionsBeyondTheLimitWaitForAFreeSlot) {
  common::MetricsRegistry registry;
  MetricsHttpServerOptions options;
  options.max_connections = 1;
  options.io_timeout = std::chrono::milliseconds(300);
  auto server = StartServer(registry, options);
  ASSERT_NE(server, nullptr);

  // The only slot goes to a client that never sends anything...
  TestClient idle;
  ASSERT_FALSE(idle.Connect(server->port()));
  // ...so this request waits until the server drops the idle client, and is then answered.
  EXPECT_EQ(Fetch(server->port(), "/healthz").result(), http::status::ok);
  EXPECT_TRUE(IsClosedByPeer(idle.ReadUntilClosed()));
  EXPECT_EQ(Fetch(server->port(), "/readyz").result(), http::status::ok);
}

TEST(MetricsHttpServerTest, ShutdownClosesConnectedClientsAndStopsListening) {
  common::MetricsRegistry registry;
  MetricsHttpServerOptions options;
  options.io_timeout = std::chrono::minutes(10);  // only Shutdown can end these connections
  auto server = StartServer(registry, options);
  ASSERT_NE(server, nullptr);
  const int port = server->port();

  // One connection idle between keep-alive requests, one in the middle of a request.
  TestClient keep_alive;
  ASSERT_FALSE(keep_alive.Connect(port));
  ASSERT_FALSE(keep_alive.Send(http::verb::get, "/healthz"));
  http::response<http::string_body> response;
  ASSERT_FALSE(keep_alive.Read(&response));
  ASSERT_EQ(response.result(), http::status::ok);
  TestClient half_sent;
  ASSERT_FALSE(half_sent.Connect(port));
  ASSERT_FALSE(half_sent.SendRaw("GET /metrics HTTP/1.1\r\n"));

  server->Shutdown();
  EXPECT_TRUE(IsClosedByPeer(keep_alive.ReadUntilClosed()));
  EXPECT_TRUE(IsClosedByPeer(half_sent.ReadUntilClosed()));
  TestClient late;
  EXPECT_EQ(late.Connect(port), net::error::connection_refused);
  server->Shutdown();  // idempotent
}

TEST(MetricsHttpServerTest, StartReportsBadAddressesAndTakenPorts) {
  common::MetricsRegistry registry;
  auto first = StartServer(registry);
  ASSERT_NE(first, nullptr);

  MetricsHttpServerOptions options;
  options.listen = "127.0.0.1:" + std::to_string(first->port());
  auto taken = MetricsHttpServer::Start(options, &registry);
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kUnavailable) << taken.status();
  EXPECT_THAT(taken.status().message(), HasSubstr(options.listen));

  for (const char* listen : {"no-port", "127.0.0.1:99999", "127.0.0.1:http", ":9464"}) {
    options.listen = listen;
    EXPECT_EQ(MetricsHttpServer::Start(options, &registry).status().code(),
              absl::StatusCode::kInvalidArgument)
        << listen;
  }
  options.listen = "127.0.0.1:0";
  options.max_connections = 0;
  EXPECT_EQ(MetricsHttpServer::Start(options, &registry).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.max_connections = 1;
  EXPECT_EQ(MetricsHttpServer::Start(options, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cleave::edge_server
