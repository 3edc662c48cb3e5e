// Tests of the link emulator through its real sockets: a plain TCP server on an ephemeral
// loopback port sits behind the emulator, and blocking clients measure what the emulator
// lets through. Timing assertions are lower bounds only (the link must not be faster than
// configured); measured rates are reported, never asserted from above. Over 500 lines: every
// behaviour of one component (shaping, delay, jitter, traces, partitions, control) shares
// the one fixture above, as the emulator's own docs (LINK_EMULATOR.md) list them.
#include "cleave/link_emulator/link_emulator.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cleave/common/units.h"
#include "cleave/link_emulator/control_command.h"
#include "cleave/link_emulator/link_trace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/raw_grpc_server.h"
#include "tests/support/test_support.h"
#include "tools/link_emulator/src/token_bucket.h"

namespace cleave::link_emulator {
namespace {

using common::FormatBitRate;
using common::FormatDuration;
using common::ParseBitRate;
using common::ParseDuration;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// Every blocking socket call in these tests gives up after this long, so a bug fails a test
// instead of hanging it.
constexpr seconds kIoTimeout{20};

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(size, '\0');
  for (char& byte : bytes) byte = static_cast<char>(random());
  return bytes;
}

// Polls `condition` until it holds or `timeout` passes; returns its last value.
template <typename Condition>
bool WaitFor(Condition condition, seconds timeout = seconds(5)) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return true;
}

// A blocking loopback TCP client whose reads and writes time out after kIoTimeout.
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    timeval timeout{kIoTimeout.count(), 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~Client() { close(fd_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }

  bool Send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  void EndSending() { shutdown(fd_, SHUT_WR); }

  // Reads exactly `size` bytes; nullopt on end of stream, reset or timeout.
  std::optional<std::string> Read(size_t size) {
    std::string bytes(size, '\0');
    size_t received = 0;
    while (received < size) {
      const ssize_t n = recv(fd_, bytes.data() + received, size - received, 0);
      if (n <= 0) return std::nullopt;
      received += static_cast<size_t>(n);
    }
    return bytes;
  }

  struct Outcome {
    std::string bytes;
    bool closed = false;  // end of stream or reset; false: timed out
  };
  // Reads until the peer closes (FIN or RST) or kIoTimeout passes.
  Outcome ReadToEnd() {
    Outcome outcome;
    char buffer[64 << 10];
    while (true) {
      const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
      if (n > 0) {
        outcome.bytes.append(buffer, static_cast<size_t>(n));
        continue;
      }
      outcome.closed = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
      return outcome;
    }
  }

  // Sends one byte and returns the seconds until its echo is back (negative on failure).
  double EchoRoundTrip() {
    const auto start = Clock::now();
    if (!Send("x") || !Read(1).has_value()) return -1;
    return SecondsSince(start);
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// A loopback TCP server with a thread per connection. kEcho sends back what it receives;
// kExchange sends `to_send`, then ends its side, while recording everything it receives
// until the client ends its side.
class TestServer {
 public:
  enum class Mode { kEcho, kExchange };
  struct Session {
    std::string received;
    bool reset = false;  // the connection broke instead of ending
  };

  explicit TestServer(Mode mode, std::string to_send = {})
      : mode_(mode), to_send_(std::move(to_send)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    listen(listen_fd_, 16);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~TestServer() {
    stopping_ = true;
    acceptor_.join();
    // Join outside the lock: a handler takes it to record its session as it ends.
    std::vector<std::thread> handlers;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      handlers.swap(handlers_);
    }
    for (std::thread& thread : handlers) thread.join();
    close(listen_fd_);
  }

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_; }
  size_t bytes_received() const { return bytes_received_; }

  // Forgets the sessions that have ended so far.
  void ClearSessions() {
    std::lock_guard<std::mutex> lock(mutex_);
    sessions_.clear();
  }

  // Waits until `count` sessions have ended and returns them in the order they ended.
  std::vector<Session> WaitForSessions(size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait_for(lock, kIoTimeout, [&] { return sessions_.size() >= count; });
    return sessions_;
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      pollfd ready{listen_fd_, POLLIN, 0};
      if (poll(&ready, 1, 50) <= 0) continue;
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++accepted_;
      std::lock_guard<std::mutex> lock(mutex_);
      handlers_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    std::string outgoing = mode_ == Mode::kExchange ? to_send_ : std::string();
    size_t sent = 0;
    bool ended = false;
    bool shut = false;
    Session session;
    const auto deadline = Clock::now() + kIoTimeout;
    char buffer[64 << 10];
    while (!stopping_ && Clock::now() < deadline) {
      const bool all_sent = sent == outgoing.size();
      if (all_sent && !shut && (mode_ == Mode::kExchange || ended)) {
        shutdown(fd, SHUT_WR);
        shut = true;
      }
      if (ended && shut) break;
      pollfd ready{fd, static_cast<short>((ended ? 0 : POLLIN) | (all_sent ? 0 : POLLOUT)), 0};
      if (poll(&ready, 1, 50) <= 0) continue;
      if (ready.revents & POLLOUT) {
        const ssize_t n = send(fd, outgoing.data() + sent, outgoing.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) {
          session.reset = true;
          break;
        }
        if (n > 0) sent += static_cast<size_t>(n);
      }
      if (ready.revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
        if (n > 0) {
          session.received.append(buffer, static_cast<size_t>(n));
          bytes_received_ += static_cast<size_t>(n);
          if (mode_ == Mode::kEcho) outgoing.append(buffer, static_cast<size_t>(n));
        } else if (n == 0) {
          ended = true;
        } else if (errno != EAGAIN) {
          session.reset = true;
          break;
        }
      }
    }
    close(fd);
    std::lock_guard<std::mutex> lock(mutex_);
    sessions_.push_back(std::move(session));
    done_.notify_all();
  }

  const Mode mode_;
  const std::string to_send_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::atomic<size_t> bytes_received_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::condition_variable done_;
  std::vector<std::thread> handlers_;
  std::vector<Session> sessions_;
};

std::unique_ptr<LinkEmulator> StartEmulator(TestServer& server, LinkEmulatorOptions options = {}) {
  options.upstream = server.address();
  auto emulator = LinkEmulator::Start(options);
  EXPECT_TRUE(emulator.ok()) << emulator.status();
  if (!emulator.ok()) return nullptr;
  // Start's reachability check is a connection of its own; the tests count only theirs.
  EXPECT_EQ(server.WaitForSessions(1).size(), 1u);
  server.ClearSessions();
  return *std::move(emulator);
}

// A port with nothing listening on it (bound, then closed).
int UnusedPort() {
  TestServer server(TestServer::Mode::kEcho);
  return server.port();
}

void Report(const std::string& key, double value, const std::string& unit) {
  ::testing::Test::RecordProperty(key, std::to_string(value));
  std::printf("[ measured ] %s = %.3f %s\n", key.c_str(), value, unit.c_str());
}

// --- units, traces and the token bucket: pure functions --------------------------------------

TEST(LinkUnitsTest, ParsesBitRatesWithUnits) {
  EXPECT_EQ(*ParseBitRate("20mbit"), 20'000'000u);
  EXPECT_EQ(*ParseBitRate("1.5Gbit"), 1'500'000'000u);
  EXPECT_EQ(*ParseBitRate("500kbit"), 500'000u);
  EXPECT_EQ(*ParseBitRate("64bit"), 64u);
  EXPECT_EQ(*ParseBitRate("unlimited"), 0u);
  EXPECT_EQ(*ParseBitRate("0"), 0u);
  EXPECT_EQ(FormatBitRate(20'000'000), "20mbit");
  EXPECT_EQ(*ParseBitRate(FormatBitRate(1'500'000)), 1'500'000u);
}

TEST(LinkUnitsTest, RejectsBitRatesWithoutAKnownUnit) {
  for (const char* bad : {"20mb", "20", "20mbps", "-5mbit", "fast", "mbit", ""}) {
    auto rate = ParseBitRate(bad);
    ASSERT_FALSE(rate.ok()) << bad;
    EXPECT_EQ(rate.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(rate.status().message(), HasSubstr("kbit, mbit or gbit")) << bad;
  }
}

TEST(LinkUnitsTest, ParsesDurations) {
  EXPECT_EQ(*ParseDuration("10ms"), milliseconds(10));
  EXPECT_EQ(*ParseDuration("1.5s"), milliseconds(1500));
  EXPECT_EQ(*ParseDuration("0"), milliseconds(0));
  EXPECT_FALSE(ParseDuration("10").ok());
  EXPECT_FALSE(ParseDuration("-1ms").ok());
  EXPECT_FALSE(ParseDuration("inf").ok());
  EXPECT_EQ(*ParseDuration(FormatDuration(milliseconds(250))), milliseconds(250));
}

TEST(LinkTraceTest, ParsesRatesDirectionsPartitionsAndComments) {
  auto trace = ParseLinkTrace(
      "# time  Mbit/s  direction\n"
      "0     20\n"
      "1.5   5   down   # hand-over\n"
      "\n"
      "2     unlimited up\n"
      "3     partition on\n"
      "5     partition off\n",
      "drive.trace");
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->events.size(), 5u);
  EXPECT_EQ(trace->events[0].bits_per_second, 20'000'000u);
  EXPECT_EQ(trace->events[0].direction, Direction::kBoth);
  EXPECT_EQ(trace->events[1].at, milliseconds(1500));
  EXPECT_EQ(trace->events[1].direction, Direction::kDownstream);
  EXPECT_EQ(trace->events[2].bits_per_second, 0u);
  EXPECT_EQ(trace->events[2].direction, Direction::kUpstream);
  EXPECT_EQ(trace->events[3].kind, LinkTraceEvent::Kind::kPartition);
  EXPECT_TRUE(trace->events[3].partitioned);
  EXPECT_FALSE(trace->events[4].partitioned);
}

TEST(LinkTraceTest, BadLinesNameTheFileLineAndExpectedForm) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& bad : {
           Case{"0 20\nfast 20\n", "drive.trace:2: bad time 'fast'"},
           Case{"0 20mbit\n", "drive.trace:1: bad rate '20mbit'"},
           Case{"0 0\n", "use 'partition on' for an outage"},
           Case{"0 20 sideways\n", "drive.trace:1: bad direction 'sideways'"},
           Case{"1 20\n0 10\n", "drive.trace:2: time 0 is before the previous line's"},
           Case{"1 partition maybe\n", "expected 'partition on|off'"},
           Case{"1\n", "expected '<seconds> <mbit_per_second|unlimited> [up|down|both]'"},
       }) {
    auto trace = ParseLinkTrace(bad.text, "drive.trace");
    ASSERT_FALSE(trace.ok()) << bad.text;
    EXPECT_EQ(trace.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(trace.status().message(), HasSubstr(bad.message));
  }
  EXPECT_EQ(ReadLinkTrace("/nonexistent/drive.trace").status().code(), absl::StatusCode::kNotFound);
}

TEST(LinkTraceTest, AddPartitionKeepsEventsOrdered) {
  LinkTrace trace = *ParseLinkTrace("0 20\n4 10\n", "t");
  trace.AddPartition(seconds(2), seconds(2));
  ASSERT_EQ(trace.events.size(), 4u);
  EXPECT_EQ(trace.events[1].kind, LinkTraceEvent::Kind::kPartition);
  EXPECT_TRUE(trace.events[1].partitioned);
  EXPECT_EQ(trace.events[2].bits_per_second, 10'000'000u);  // the line at 4 s stays first
  EXPECT_EQ(trace.events[3].at, seconds(4));
  EXPECT_FALSE(trace.events[3].partitioned);
}

TEST(TokenBucketTest, HandsOutBytesAtTheRateWithASmallBurst) {
  TokenBucket bucket;
  Clock::time_point now{};
  bucket.SetRate(8'000'000, now);  // 1 MB/s
  EXPECT_EQ(bucket.burst_bytes(), 5000u);
  // Drain the bucket, then count what one simulated second lets through.
  Clock::time_point ready_at;
  while (bucket.Take(1 << 20, now, &ready_at) > 0) {
  }
  size_t taken = 0;
  const Clock::time_point end = now + seconds(1);
  while (true) {
    const size_t piece = bucket.Take(1 << 20, now, &ready_at);
    if (piece > 0) {
      EXPECT_LE(piece, bucket.burst_bytes() / 2);
      taken += piece;
      continue;
    }
    ASSERT_GT(ready_at, now);
    if (ready_at > end) break;
    now = ready_at;
  }
  EXPECT_NEAR(static_cast<double>(taken), 1e6, 2500);
}

TEST(TokenBucketTest, RateChangesApplyFromTheirTimeAndUnlimitedTakesAll) {
  TokenBucket bucket;
  Clock::time_point ready_at;
  EXPECT_EQ(bucket.Take(123456, Clock::time_point{}, &ready_at), 123456u);
  Clock::time_point now{};
  bucket.SetRate(80'000, now);  // 10 kB/s, minimum burst 3000 B
  ASSERT_EQ(bucket.Take(1500, now, &ready_at), 1500u);
  ASSERT_EQ(bucket.Take(1500, now, &ready_at), 1500u);
  ASSERT_EQ(bucket.Take(1500, now, &ready_at), 0u);
  EXPECT_EQ(ready_at, now + milliseconds(150));
  // At 100 ms the rate goes up tenfold: 1000 B came at the old rate, 500 B more take 5 ms.
  bucket.SetRate(800'000, now + milliseconds(100));
  EXPECT_EQ(bucket.Take(1500, now + milliseconds(100), &ready_at), 0u);
  EXPECT_EQ(ready_at, now + milliseconds(105));
  EXPECT_EQ(bucket.Take(1500, ready_at, &ready_at), 1500u);
}

// --- relaying --------------------------------------------------------------------------------

// Sends `up` from a client while the server sends `down`; checks both arrive intact.
void ExpectExchangeIntact(LinkEmulatorOptions options, size_t up_size, size_t down_size) {
  const std::string up = RandomBytes(up_size, 1);
  const std::string down = RandomBytes(down_size, 2);
  TestServer server(TestServer::Mode::kExchange, down);
  auto emulator = StartEmulator(server, options);
  ASSERT_NE(emulator, nullptr);
  Client client(emulator->port());
  ASSERT_TRUE(client.connected());
  std::thread sender([&] {
    EXPECT_TRUE(client.Send(up));
    client.EndSending();
  });
  const Client::Outcome received = client.ReadToEnd();
  sender.join();
  EXPECT_TRUE(received.closed);
  EXPECT_TRUE(received.bytes == down) << "downstream bytes differ (" << received.bytes.size()
                                      << " of " << down.size() << " received)";
  const auto sessions = server.WaitForSessions(1);
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_FALSE(sessions[0].reset);
  EXPECT_TRUE(sessions[0].received == up)
      << "upstream bytes differ (" << sessions[0].received.size() << " of " << up.size()
      << " received)";
  EXPECT_TRUE(WaitFor([&] { return emulator->counters().connections_open == 0; }));
  const LinkCounters counters = emulator->counters();
  EXPECT_EQ(counters.upstream.bytes_delivered, up.size());
  EXPECT_EQ(counters.downstream.bytes_delivered, down.size());
  EXPECT_EQ(counters.connections_accepted, 1u);
}

TEST(LinkEmulatorTest, RelaysSeveralMegabytesIntactBothWaysAndPassesTheEndOfStream) {
  ExpectExchangeIntact(LinkEmulatorOptions{}, 6 << 20, 5 << 20);
}

TEST(LinkEmulatorTest, JitterNeverReordersBytes) {
  LinkEmulatorOptions options;
  options.upstream_shape.delay = options.downstream_shape.delay = milliseconds(2);
  options.upstream_shape.jitter = options.downstream_shape.jitter = milliseconds(2);
  options.jitter_distribution = JitterDistribution::kNormal;
  options.max_buffered_bytes = 256 << 10;  // also exercises the backpressure path
  ExpectExchangeIntact(options, 3 << 20, 3 << 20);
}

TEST(LinkEmulatorTest, ConnectionsShareALimitedLinkWithoutMixingBytes) {
  constexpr int kConnections = 4;
  constexpr size_t kBytes = 256 << 10;
  TestServer server(TestServer::Mode::kEcho);
  LinkEmulatorOptions options;
  options.upstream_shape.bits_per_second = options.downstream_shape.bits_per_second = 80'000'000;
  auto emulator = StartEmulator(server, options);
  ASSERT_NE(emulator, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> intact{0};
  for (int i = 0; i < kConnections; ++i) {
    threads.emplace_back([&, i] {
      Client client(emulator->port());
      const std::string payload = RandomBytes(kBytes, 100 + i);
      std::thread sender([&] { client.Send(payload); });
      const auto echoed = client.Read(kBytes);
      sender.join();
      if (echoed.has_value() && *echoed == payload) ++intact;
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(intact, kConnections);
}

TEST(LinkEmulatorTest, BandwidthLimitsEachDirectionIndependently) {
  constexpr uint64_t kUpRate = 16'000'000;
  constexpr uint64_t kDownRate = 24'000'000;
  constexpr size_t kUpBytes = 2'000'000;
  constexpr size_t kDownBytes = 3'000'000;
  TestServer server(TestServer::Mode::kExchange, RandomBytes(kDownBytes, 3));
  LinkEmulatorOptions options;
  options.upstream_shape.bits_per_second = kUpRate;
  options.downstream_shape.bits_per_second = kDownRate;
  auto emulator = StartEmulator(server, options);
  ASSERT_NE(emulator, nullptr);

  const auto start = Clock::now();
  Client client(emulator->port());
  std::atomic<double> up_seconds{0};
  std::thread sender([&] {
    EXPECT_TRUE(client.Send(RandomBytes(kUpBytes, 4)));
    client.EndSending();
    server.WaitForSessions(1);  // the server has read everything
    up_seconds = SecondsSince(start);
  });
  const Client::Outcome down = client.ReadToEnd();
  const double down_seconds = SecondsSince(start);
  sender.join();
  ASSERT_EQ(down.bytes.size(), kDownBytes);
  ASSERT_EQ(server.WaitForSessions(1).at(0).received.size(), kUpBytes);

  const double up_floor = 0.9 * kUpBytes * 8 / kUpRate;
  const double down_floor = 0.9 * kDownBytes * 8 / kDownRate;
  EXPECT_GE(up_seconds, up_floor) << "upstream faster than its limit";
  EXPECT_GE(down_seconds, down_floor) << "downstream faster than its limit";
  Report("up_configured_mbit", kUpRate / 1e6, "Mbit/s");
  Report("up_measured_mbit", kUpBytes * 8 / up_seconds / 1e6, "Mbit/s");
  Report("down_configured_mbit", kDownRate / 1e6, "Mbit/s");
  Report("down_measured_mbit", kDownBytes * 8 / down_seconds / 1e6, "Mbit/s");
}

TEST(LinkEmulatorTest, RoundTripTakesAtLeastTwiceTheOneWayDelay) {
  constexpr milliseconds kDelay{25};
  constexpr milliseconds kJitter{10};
  TestServer server(TestServer::Mode::kEcho);
  LinkEmulatorOptions options;
  options.upstream_shape.delay = options.downstream_shape.delay = kDelay;
  auto emulator = StartEmulator(server, options);
  ASSERT_NE(emulator, nullptr);
  Client client(emulator->port());
  ASSERT_TRUE(client.connected());

  double total = 0;
  constexpr int kRoundTrips = 5;
  for (int i = 0; i < kRoundTrips; ++i) {
    const double rtt = client.EchoRoundTrip();
    EXPECT_GE(rtt, 2 * std::chrono::duration<double>(kDelay).count());
    total += rtt;
  }
  Report("rtt_configured_ms", 2 * kDelay.count(), "ms");
  Report("rtt_measured_mean_ms", 1e3 * total / kRoundTrips, "ms");

  // With jitter, every round trip still takes at least twice the shortest one-way delay.
  emulator->SetDelay(Direction::kBoth, kDelay, kJitter);
  total = 0;
  for (int i = 0; i < kRoundTrips; ++i) {
    const double rtt = client.EchoRoundTrip();
    EXPECT_GE(rtt, 2 * std::chrono::duration<double>(kDelay - kJitter).count());
    total += rtt;
  }
  Report("rtt_jittered_measured_mean_ms", 1e3 * total / kRoundTrips, "ms");
}

TEST(LinkEmulatorTest, PartitionHoldsBytesUntilItEnds) {
  TestServer server(TestServer::Mode::kEcho);
  auto emulator = StartEmulator(server);
  ASSERT_NE(emulator, nullptr);
  Client client(emulator->port());
  ASSERT_GT(client.EchoRoundTrip(), 0);  // the connection is up

  emulator->SetPartitioned(true);
  const std::string payload = RandomBytes(100'000, 5);
  ASSERT_TRUE(client.Send(payload));
  client.EndSending();  // the end of the stream is held too
  EXPECT_TRUE(
      WaitFor([&] { return emulator->counters().upstream.bytes_received == 1 + payload.size(); }));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(server.bytes_received(), 1u) << "bytes crossed a partitioned link";
  EXPECT_TRUE(server.WaitForSessions(0).empty()) << "the end of the stream crossed the partition";
  EXPECT_EQ(emulator->counters().connections_open, 1u);

  emulator->SetPartitioned(false);
  const Client::Outcome echoed = client.ReadToEnd();
  EXPECT_TRUE(echoed.closed);
  EXPECT_TRUE(echoed.bytes == payload);
}

TEST(LinkEmulatorTest, DropResetsOpenConnectionsAndDropModeRefusesNewOnes) {
  TestServer server(TestServer::Mode::kEcho);
  auto emulator = StartEmulator(server);
  ASSERT_NE(emulator, nullptr);
  Client first(emulator->port());
  Client second(emulator->port());
  ASSERT_GT(first.EchoRoundTrip(), 0);
  ASSERT_GT(second.EchoRoundTrip(), 0);

  emulator->DropAll();
  EXPECT_TRUE(first.ReadToEnd().closed);
  EXPECT_TRUE(second.ReadToEnd().closed);
  EXPECT_TRUE(WaitFor([&] { return emulator->counters().connections_reset == 2; }));
  EXPECT_EQ(server.WaitForSessions(2).size(), 2u);  // the server side was closed too

  Client after_drop(emulator->port());
  EXPECT_GT(after_drop.EchoRoundTrip(), 0) << "a one-off drop must not refuse new connections";

  emulator->SetDropping(true);
  EXPECT_TRUE(after_drop.ReadToEnd().closed);
  const int accepted_upstream = server.accepted();
  Client refused(emulator->port());
  EXPECT_LT(refused.EchoRoundTrip(), 0);
  EXPECT_TRUE(WaitFor([&] { return emulator->counters().connections_refused == 1; }));
  EXPECT_EQ(server.accepted(), accepted_upstream) << "a refused connection reached the server";

  emulator->SetDropping(false);
  Client welcome(emulator->port());
  EXPECT_GT(welcome.EchoRoundTrip(), 0);
}

TEST(LinkEmulatorTest, TraceReplayPartitionsThenChangesTheRate) {
  constexpr size_t kBytes = 400'000;
  constexpr uint64_t kTraceRate = 4'000'000;
  TestServer server(TestServer::Mode::kExchange, RandomBytes(kBytes, 6));
  auto emulator = StartEmulator(server);
  ASSERT_NE(emulator, nullptr);
  auto trace = ParseLinkTrace(
      "0    partition on\n"
      "0.6  partition off\n"
      "0.6  4 down\n",
      "test.trace");
  ASSERT_TRUE(trace.ok()) << trace.status();

  const auto start = Clock::now();
  emulator->PlayTrace(*trace);
  ASSERT_TRUE(WaitFor([&] { return emulator->partitioned(); }));
  Client client(emulator->port());
  client.EndSending();
  const Client::Outcome down = client.ReadToEnd();
  const double elapsed = SecondsSince(start);
  EXPECT_EQ(down.bytes.size(), kBytes);
  // Nothing before the partition ends at 0.6 s, then 4 Mbit/s.
  EXPECT_GE(elapsed, 0.6 + 0.9 * kBytes * 8 / kTraceRate);
  EXPECT_FALSE(emulator->partitioned());
  EXPECT_EQ(emulator->shape(Direction::kDownstream).bits_per_second, kTraceRate);
  EXPECT_EQ(emulator->shape(Direction::kUpstream).bits_per_second, 0u);
  Report("trace_measured_mbit_after_partition", kBytes * 8 / (elapsed - 0.6) / 1e6, "Mbit/s");
}

// --- gRPC through the emulator ---------------------------------------------------------------

TEST(LinkEmulatorTest, GrpcCallsWorkThroughAShapedLink) {
  test::RawGrpcServer server(test::RawGrpcServer::Echo);
  ASSERT_TRUE(server.started());

  LinkEmulatorOptions options;
  options.upstream = server.target();
  options.upstream_shape = {40'000'000, milliseconds(5), milliseconds(1)};
  options.downstream_shape = {40'000'000, milliseconds(5), milliseconds(1)};
  auto emulator = LinkEmulator::Start(options);
  ASSERT_TRUE(emulator.ok()) << emulator.status();

  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(8 << 20);
  grpc::GenericStub stub(
      grpc::CreateCustomChannel("127.0.0.1:" + std::to_string((*emulator)->port()),
                                grpc::InsecureChannelCredentials(), arguments));
  for (size_t size : {size_t{10}, size_t{1} << 20}) {
    const std::string payload = RandomBytes(size, size);
    grpc::Slice slice(payload);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kIoTimeout);
    test::CallStatus done;
    stub.UnaryCall(&context, "/cleave.test.Echo/Echo", grpc::StubOptions(), &request, &response,
                   done.Callback());
    const grpc::Status status = done.Wait();  // bounded by the call deadline
    ASSERT_TRUE(status.ok()) << status.error_message();
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(response.Dump(&slices).ok());
    std::string echoed;
    for (const grpc::Slice& part : slices) {
      echoed.append(reinterpret_cast<const char*>(part.begin()), part.size());
    }
    EXPECT_TRUE(echoed == payload) << "gRPC payload of " << size << " bytes changed";
  }
  (*emulator)->Stop();
}

// --- errors, control ------------------------------------------------------------------------

TEST(LinkEmulatorTest, StartErrorsNameTheProblem) {
  LinkEmulatorOptions options;
  options.upstream = "127.0.0.1:" + std::to_string(UnusedPort());
  auto unreachable = LinkEmulator::Start(options);
  EXPECT_EQ(unreachable.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(unreachable.status().message(),
              HasSubstr("upstream " + options.upstream + " is unreachable"));

  options.upstream = "no-port-here";
  auto malformed = LinkEmulator::Start(options);
  EXPECT_EQ(malformed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(malformed.status().message(), HasSubstr("bad upstream address 'no-port-here'"));

  TestServer server(TestServer::Mode::kEcho);
  options.upstream = server.address();
  options.listen = server.address();  // taken
  auto in_use = LinkEmulator::Start(options);
  EXPECT_EQ(in_use.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(in_use.status().message(), HasSubstr("cannot listen on " + server.address()));
}

TEST(LinkEmulatorTest, UnreachableUpstreamResetsTheClient) {
  LinkEmulatorOptions options;
  options.upstream = "127.0.0.1:" + std::to_string(UnusedPort());
  options.check_upstream = false;
  auto emulator = LinkEmulator::Start(options);
  ASSERT_TRUE(emulator.ok()) << emulator.status();
  Client client((*emulator)->port());
  EXPECT_TRUE(client.ReadToEnd().closed);
  EXPECT_TRUE(WaitFor([&] { return (*emulator)->counters().upstream_connect_failures == 1; }));
}

TEST(ControlCommandTest, CommandsChangeTheLinkAndBadOnesExplain) {
  TestServer server(TestServer::Mode::kEcho);
  auto emulator = StartEmulator(server);
  ASSERT_NE(emulator, nullptr);
  EXPECT_EQ(*ExecuteControlCommand(*emulator, "bandwidth 5mbit up"), "ok");
  EXPECT_EQ(emulator->shape(Direction::kUpstream).bits_per_second, 5'000'000u);
  EXPECT_EQ(emulator->shape(Direction::kDownstream).bits_per_second, 0u);
  EXPECT_EQ(*ExecuteControlCommand(*emulator, "delay 20ms 5ms"), "ok");
  EXPECT_EQ(emulator->shape(Direction::kDownstream).delay, milliseconds(20));
  EXPECT_EQ(emulator->shape(Direction::kUpstream).jitter, milliseconds(5));
  EXPECT_EQ(*ExecuteControlCommand(*emulator, "partition on"), "ok");
  EXPECT_TRUE(emulator->partitioned());
  EXPECT_EQ(*ExecuteControlCommand(*emulator, "partition off"), "ok");
  EXPECT_FALSE(emulator->partitioned());
  EXPECT_EQ(*ExecuteControlCommand(*emulator, "drop on"), "ok");
  EXPECT_TRUE(emulator->dropping());
  EXPECT_EQ(*ExecuteControlCommand(*emulator, "drop off"), "ok");
  EXPECT_THAT(*ExecuteControlCommand(*emulator, "status"),
              HasSubstr("up_bandwidth=5mbit up_delay=20ms up_jitter=5ms"));

  struct Case {
    const char* line;
    const char* message;
  };
  for (const Case& bad :
       {Case{"bandwidth 5mb", "bad bit rate '5mb'"}, Case{"delay soon", "bad duration 'soon'"},
        Case{"partition maybe", "expected 'partition on|off'"},
        Case{"trace /nonexistent.trace", "trace file: file not found"},
        Case{"trace /dev/zero", "not a regular file"},
        Case{"frobnicate", "unknown command 'frobnicate'"}}) {
    auto reply = ExecuteControlCommand(*emulator, bad.line);
    ASSERT_FALSE(reply.ok()) << bad.line;
    EXPECT_THAT(reply.status().message(), HasSubstr(bad.message));
  }
}

TEST(ControlCommandTest, ControlSocketAnswersEachLine) {
  TestServer server(TestServer::Mode::kEcho);
  LinkEmulatorOptions options;
  options.control_listen = "127.0.0.1:0";
  auto emulator = StartEmulator(server, options);
  ASSERT_NE(emulator, nullptr);
  ASSERT_GT(emulator->control_port(), 0);
  Client control(emulator->control_port());
  ASSERT_TRUE(control.Send("partition on\nbandwidth 3mbit\nnonsense\n"));
  control.EndSending();
  const Client::Outcome replies = control.ReadToEnd();
  EXPECT_TRUE(replies.closed);
  EXPECT_THAT(replies.bytes, ::testing::StartsWith("ok\nok\nerror: unknown command 'nonsense'"));
  EXPECT_TRUE(emulator->partitioned());
  EXPECT_EQ(emulator->shape(Direction::kUpstream).bits_per_second, 3'000'000u);
}

// --- the cleave-link executable --------------------------------------------------------------

TEST(CleaveLinkCliTest, BadFlagsPrintAnErrorAndExitOne) {
  const std::string binary = cleave::test::BinaryPath("cleave-link");
  auto bad_unit = cleave::test::RunCommand(binary + " --upstream 127.0.0.1:1 --bandwidth 20mb");
  EXPECT_EQ(bad_unit.exit_code, 1);
  EXPECT_THAT(bad_unit.output, HasSubstr("cleave-link: error: --bandwidth: bad bit rate '20mb'"));
  auto unreachable =
      cleave::test::RunCommand(binary + " --upstream 127.0.0.1:" + std::to_string(UnusedPort()));
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_THAT(unreachable.output, HasSubstr("cleave-link: error: upstream 127.0.0.1:"));
  cleave::test::TempDir dir;
  { std::ofstream(dir.File("bad.trace")) << "0 20\n1 fast\n"; }
  auto bad_trace =
      cleave::test::RunCommand(binary + " --upstream 127.0.0.1:1 --trace " + dir.File("bad.trace"));
  EXPECT_EQ(bad_trace.exit_code, 1);
  EXPECT_THAT(bad_trace.output, HasSubstr("bad.trace:2: bad rate 'fast'"));
}

TEST(CleaveLinkCliTest, RelaysAndStopsCleanlyOnSigterm) {
  TestServer server(TestServer::Mode::kEcho);
  cleave::test::TempDir dir;
  const std::string binary = cleave::test::BinaryPath("cleave-link");
  const std::string port_file = dir.File("port");
  const std::string control_port_file = dir.File("control_port");
  std::vector<std::string> args = {binary,           "--upstream",  server.address(),
                                   "--delay",        "5ms",         "--bandwidth",
                                   "50mbit",         "--port-file", port_file,
                                   "--control",      "127.0.0.1:0", "--control-port-file",
                                   control_port_file};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, dir.File("out").c_str(),
                                   O_WRONLY | O_CREAT, 0644);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);

  auto read_port = [](const std::string& path) {
    int port = 0;
    std::ifstream(path) >> port;
    return port;
  };
  ASSERT_TRUE(WaitFor([&] { return read_port(control_port_file) > 0; }, seconds(20)));
  Client client(read_port(port_file));
  EXPECT_GE(client.EchoRoundTrip(), 0.010);
  Client control(read_port(control_port_file));
  ASSERT_TRUE(control.Send("status\n"));
  control.EndSending();
  EXPECT_THAT(control.ReadToEnd().bytes, HasSubstr("up_delay=5ms"));

  kill(pid, SIGTERM);
  int status = -1;
  ASSERT_TRUE(WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, seconds(20)));
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace cleave::link_emulator
