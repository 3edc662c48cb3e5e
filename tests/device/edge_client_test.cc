// The edge client on its own: the circuit breaker backs off, opens and closes; requests it
// refuses unsent say why at once; and over real gRPC on loopback, an edge that answers with
// something that is not a cleave.v1.InferResponse fails the request with DATA_LOSS naming it,
// instead of hanging it or taking the device down.
#include "device/src/edge_client.h"

#include <gmock/gmock.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "device/src/circuit_breaker.h"
#include "tests/support/raw_grpc_server.h"

namespace cleave::device {
namespace {

using ::testing::HasSubstr;

TEST(CircuitBreakerTest, BacksOffThenOpensTheCircuitAndASuccessClosesIt) {
  EdgeClientOptions options;
  options.min_backoff = std::chrono::milliseconds(20);
  options.max_backoff = std::chrono::milliseconds(40);
  options.failure_threshold = 3;
  options.open_for = std::chrono::milliseconds(60000);
  EdgeClient client("127.0.0.1:1", options);
  CircuitBreaker& breaker = client.breaker();
  EXPECT_TRUE(breaker.Available());
  EXPECT_EQ(breaker.Refusal(), "");
  breaker.ReportFailure();
  EXPECT_FALSE(breaker.Available());  // backing off
  EXPECT_EQ(breaker.consecutive_failures(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // > 20 ms * 1.2 jitter
  EXPECT_TRUE(breaker.Available());
  breaker.ReportFailure();
  breaker.ReportFailure();  // the third: the circuit opens for a minute
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // > any backoff
  EXPECT_FALSE(breaker.Available());
  // Requests sent meanwhile fail at once, saying why.
  std::promise<absl::StatusOr<EdgeAnswer>> answer;
  client.Send(client.NewRequestId(), EdgeRequest(),
              [&](absl::StatusOr<EdgeAnswer> response) { answer.set_value(std::move(response)); });
  const absl::StatusOr<EdgeAnswer> response = answer.get_future().get();
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(response.status().message()), HasSubstr("circuit open"));
  EXPECT_TRUE(EdgeClient::IsRefusal(response.status()));
  breaker.ReportSuccess();
  EXPECT_TRUE(breaker.Available());
  EXPECT_EQ(breaker.consecutive_failures(), 0);
}

TEST(CircuitBreakerTest, BackoffDoublesUpToItsCapWithinTheJitter) {
  EdgeClientOptions options;
  options.min_backoff = std::chrono::milliseconds(100);
  options.max_backoff = std::chrono::milliseconds(350);
  options.failure_threshold = 10;
  CircuitBreaker breaker(options);
  for (const int expected_ms : {100, 200, 350, 350}) {
    const auto before = CircuitBreaker::Clock::now();
    breaker.ReportFailure();
    const auto after = CircuitBreaker::Clock::now();
    const auto expected = std::chrono::milliseconds(expected_ms);
    EXPECT_GE(breaker.available_at() - before, expected * 0.8) << expected_ms << " ms";
    EXPECT_LE(breaker.available_at() - after, expected * 1.2) << expected_ms << " ms";
  }
}

TEST(CircuitBreakerTest, BreakersDrawDifferentJitter) {
  // Devices that lost the same edge at the same moment must not all come back at once.
  EdgeClientOptions options;
  options.min_backoff = std::chrono::milliseconds(1000);
  options.max_backoff = std::chrono::milliseconds(1000);
  options.failure_threshold = 100;
  std::set<std::vector<int64_t>> sequences;
  for (int c = 0; c < 3; ++c) {
    CircuitBreaker breaker(options);
    std::vector<int64_t> sequence;
    for (int i = 0; i < 4; ++i) {
      const auto before = CircuitBreaker::Clock::now();
      breaker.ReportFailure();
      sequence.push_back(
          std::chrono::duration_cast<std::chrono::milliseconds>(breaker.available_at() - before)
              .count());
    }
    sequences.insert(sequence);
  }
  EXPECT_EQ(sequences.size(), 3u);
}

TEST(EdgeClientTest, ARefusedRequestsCallbackMayReportTheFailureAndSendAgain) {
  // The callback of a request refused during backoff runs without the client's lock held, as
  // the runtime's does: it reports the failure and may send again. Run on another thread so a
  // deadlock fails the test instead of hanging it.
  EdgeClientOptions options;
  options.min_backoff = std::chrono::minutes(1);  // refused for the whole test
  options.max_backoff = std::chrono::minutes(1);
  auto client = std::make_shared<EdgeClient>("127.0.0.1:1", options);
  client->breaker().ReportFailure();
  using Statuses = std::pair<absl::Status, absl::Status>;
  auto finished = std::make_shared<std::promise<Statuses>>();
  std::thread([client, finished] {
    client->Send(client->NewRequestId(), EdgeRequest(),
                 [client, finished](absl::StatusOr<EdgeAnswer> first) {
                   client->breaker().ReportFailure();
                   client->Send(client->NewRequestId(), EdgeRequest(),
                                [finished, first](absl::StatusOr<EdgeAnswer> second) {
                                  finished->set_value({first.status(), second.status()});
                                });
                 });
  }).detach();
  std::future<Statuses> outcome = finished->get_future();
  if (outcome.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "EdgeClient::Send deadlocked in its own callback";
    std::abort();  // the stuck thread holds the client's lock: nothing else can finish
  }
  const auto [first, second] = outcome.get();
  for (const absl::Status& status : {first, second}) {
    EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr("edge 127.0.0.1:1 skipped for"));
    EXPECT_TRUE(EdgeClient::IsRefusal(status)) << status;
  }
  EXPECT_EQ(client->breaker().consecutive_failures(), 2);
  // A failure the edge caused is no refusal.
  EXPECT_FALSE(EdgeClient::IsRefusal(absl::UnavailableError("edge 127.0.0.1:1 unavailable")));
}

TEST(EdgeClientTest, AnAnswerThatIsNotAnInferResponseFailsWithDataLoss) {
  // Field 1 with wire type 7: never a valid message.
  test::RawGrpcServer edge(test::RawGrpcServer::Constant(std::string("\x0f\x0f\x0f\x0f", 4)));
  ASSERT_TRUE(edge.started());
  EdgeClient client(edge.target());
  EdgeRequest request;
  request.bundle_id = "feedface";
  request.frame = "not read by this peer";
  request.timeout = std::chrono::seconds(10);
  std::promise<absl::Status> answered;
  client.Send(client.NewRequestId(), request,
              [&](absl::StatusOr<EdgeAnswer> answer) { answered.set_value(answer.status()); });
  std::future<absl::Status> status = answered.get_future();
  ASSERT_EQ(status.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "a request on a stream the edge filled with garbage was never answered";
  EXPECT_EQ(status.get().code(), absl::StatusCode::kDataLoss);
  // Later requests get a fresh stream (and the same precise answer from this peer).
  std::promise<absl::Status> again;
  client.Send(client.NewRequestId(), request,
              [&](absl::StatusOr<EdgeAnswer> answer) { again.set_value(answer.status()); });
  std::future<absl::Status> second = again.get_future();
  ASSERT_EQ(second.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  const absl::Status status_again = second.get();
  EXPECT_EQ(status_again.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(status_again.message()),
              HasSubstr("4 bytes that is not a cleave.v1.InferResponse"));
}

}  // namespace
}  // namespace cleave::device
