// Admission at the edge, in process: a request's frame header is checked against its cut
// before anything is decoded, the memory budget and the per-connection cap refuse precisely
// and release what they hold, and a stream stops reading at its cap.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cleave/common/tensor_frame.h"
#include "tests/edge_server/edge_test_fixture.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// The shape of the tensor crossing cut `index`, with dimension 0 set to `batch`.
std::vector<int64_t> CutShape(const common::Bundle& bundle, size_t index, int64_t batch) {
  std::vector<int64_t> shape = bundle.manifest().cuts.at(index).tensor.shape;
  shape[0] = batch;
  return shape;
}

TEST_F(EdgeServerTest, ADeviceRequestCarriesOneSampleByDefault) {
  v1::InferResponse response;
  grpc::Status status = Call(Request(Cut(0), ActivationAt(0, at::rand({2, 3, 8, 8}))), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dimension 0 (the batch) is 2, not 1"));
  ExpectServerStillServes();
}

// The attack that took an edge down: a few KB of zstd-compressed zeros declaring a batch in
// the thousands. It is refused from the header: nothing is decoded, on unary calls and streams.
TEST_F(EdgeServerTest, AFrameDeclaringAHugeBatchIsRefusedBeforeAnythingIsDecoded) {
  const std::string decoded = "cleave_edge_decoded_bytes_total{model=\"residual\"}";
  const double decoded_before = Metric(decoded);
  for (int64_t batch : {int64_t{2674}, int64_t{100000}}) {
    v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
    request.set_activation(test::CompressedZerosFrame(CutShape(*bundle_, 0, batch)));
    EXPECT_LT(request.activation().size(), 64u << 10);
    v1::InferResponse response;
    grpc::Status status = Call(request, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(),
                HasSubstr(absl::StrCat("dimension 0 (the batch) is ", batch, ", not 1")));

    grpc::ClientContext context;
    auto stream = stub_->InferStream(&context);
    request.set_request_id(7);
    ASSERT_TRUE(stream->Write(request));
    stream->WritesDone();
    ASSERT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.request_id(), 7u);
    EXPECT_EQ(response.status_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(response.status_message(), HasSubstr("dimension 0 (the batch)"));
    EXPECT_TRUE(stream->Finish().ok());
  }
  EXPECT_EQ(Metric(decoded), decoded_before);
  EXPECT_EQ(Metric("cleave_edge_inflight_bytes"), 0);
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, AFrameWhoseOtherDimensionsDifferIsRefusedNamingTheDimension) {
  std::vector<int64_t> shape = CutShape(*bundle_, 0, 1);
  shape[3] = 9000;
  v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  request.set_activation(test::CompressedZerosFrame(shape));
  v1::InferResponse response;
  grpc::Status status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dimension 3 is 9000, not 8"));
  ExpectServerStillServes();
}

class RequestBatchTest : public EdgeServerTest {
 protected:
  void Configure(EdgeServerOptions* options) override {
    options->batching_by_model["residual"].max_request_batch = 4;
  }
};

TEST_F(RequestBatchTest, ABundleThatAllowsBatchesServesThemUpToItsLimit) {
  const at::Tensor input = at::rand({4, 3, 8, 8});
  v1::InferResponse response;
  ASSERT_TRUE(Call(Request(Cut(0), ActivationAt(0, input)), &response).ok());
  EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                           test::RunFlat(original_, input)[0], 1e-5, 1e-6));
  grpc::Status status = Call(Request(Cut(0), ActivationAt(0, at::rand({5, 3, 8, 8}))), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("dimension 0 (the batch) is 5, outside 1..4"));
}

// max_activation_elements bounds one frame whatever the bundle allows: a batch the bundle
// accepts but whose frame declares more elements than the limit is refused from its header.
class ElementLimitTest : public RequestBatchTest {
 protected:
  void Configure(EdgeServerOptions* options) override {
    RequestBatchTest::Configure(options);
    uint64_t per_sample = 1;
    for (int64_t dim : CutShape(*bundle_, 0, 1)) per_sample *= static_cast<uint64_t>(dim);
    max_elements_ = 2 * per_sample;  // batches of 1 and 2 fit, 4 (which the bundle allows) not
    options->limits.max_elements = max_elements_;
  }
  uint64_t max_elements_ = 0;
};

TEST_F(ElementLimitTest, AFrameBeyondMaxActivationElementsIsRefusedAndSmallerOnesServed) {
  const std::string decoded = "cleave_edge_decoded_bytes_total{model=\"residual\"}";
  const at::Tensor small = ActivationAt(0, at::rand({1, 3, 8, 8}));
  ASSERT_LE(static_cast<uint64_t>(small.numel()), max_elements_);
  v1::InferResponse response;
  ASSERT_TRUE(Call(Request(Cut(0), small), &response).ok());
  const double decoded_before = Metric(decoded);
  const at::Tensor large = ActivationAt(0, at::rand({4, 3, 8, 8}));
  ASSERT_GT(static_cast<uint64_t>(large.numel()), max_elements_);
  grpc::Status status = Call(Request(Cut(0), large), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("limit"));
  EXPECT_EQ(Metric(decoded), decoded_before);
  ExpectServerStillServes();
}

// Requests wait in the queue: one worker, and a batch waits `kHold` to fill, so a test can
// have several requests in flight at once.
class HeldRequestsTest : public EdgeServerTest {
 protected:
  static constexpr milliseconds kHold{1500};

  void Configure(EdgeServerOptions* options) override {
    options->workers = 1;
    options->idle_spin = std::chrono::microseconds(0);
    options->default_batching.max_batch_size = 64;
    options->default_batching.max_queue_delay = kHold;
  }

  // A unary call started on `stub` whose status and answer arrive in the future.
  struct PendingCall {
    grpc::ClientContext context;
    v1::InferRequest request;
    v1::InferResponse response;
    test::CallStatus done;
  };
  std::unique_ptr<PendingCall> Start(v1::Inference::Stub* stub, const at::Tensor& input,
                                     uint64_t id) {
    auto call = std::make_unique<PendingCall>();
    call->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    call->request = Request(Cut(0), ActivationAt(0, input), id);
    stub->async()->Infer(&call->context, &call->request, &call->response, call->done.Callback());
    return call;
  }

  // A stub on a connection of its own (a second device).
  std::unique_ptr<v1::Inference::Stub> SecondConnection() {
    grpc::ChannelArguments arguments;
    arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    second_channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->port()),
                                                grpc::InsecureChannelCredentials(), arguments);
    return v1::Inference::NewStub(second_channel_);
  }

  std::shared_ptr<grpc::Channel> second_channel_;
};

class MemoryBudgetTest : public HeldRequestsTest {
 protected:
  static constexpr uint64_t kBudget = 40000;
  void Configure(EdgeServerOptions* options) override {
    HeldRequestsTest::Configure(options);
    options->max_inflight_bytes = kBudget;
    options->max_peer_inflight = 0;
  }
};

TEST_F(MemoryBudgetTest, RequestsBeyondTheBudgetAreRefusedAndTheBudgetIsReleased) {
  EXPECT_EQ(Metric("cleave_edge_inflight_budget_bytes"), kBudget);
  std::vector<at::Tensor> inputs;
  std::vector<std::unique_ptr<PendingCall>> calls;
  inputs.push_back(at::rand({1, 3, 8, 8}));
  calls.push_back(Start(stub_.get(), inputs[0], 1));
  AwaitInflight(1);
  // Every request here is charged the same: as many as fit are admitted, the rest refused.
  const double charge = Metric("cleave_edge_inflight_bytes");
  ASSERT_GT(charge, 0);
  const auto fit = static_cast<size_t>(kBudget / static_cast<uint64_t>(charge));
  ASSERT_GE(fit, 2u) << "charge " << charge;
  const size_t total = fit + 2;
  for (size_t i = 1; i < total; ++i) {
    inputs.push_back(at::rand({1, 3, 8, 8}));
    calls.push_back(Start(stub_.get(), inputs[i], i + 1));
  }
  size_t answered = 0, refused = 0;
  for (size_t i = 0; i < total; ++i) {
    const grpc::Status status = calls[i]->done.Wait();
    if (status.ok()) {
      ++answered;
      EXPECT_TRUE(at::allclose(*common::DecodeFrame(calls[i]->response.outputs(0)),
                               test::RunFlat(original_, inputs[i])[0], 1e-5, 1e-6));
    } else {
      ++refused;
      EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      EXPECT_THAT(status.error_message(), HasSubstr("max_inflight_mb"));
    }
  }
  EXPECT_EQ(answered, fit);
  EXPECT_EQ(refused, 2u);
  EXPECT_EQ(Metric("cleave_edge_admission_refusals_total{reason=\"memory_budget\"}"), 2);
  AwaitInflight(0);
  EXPECT_EQ(Metric("cleave_edge_inflight_bytes"), 0);
  ExpectServerStillServes();
}

class PeerCapTest : public HeldRequestsTest {
 protected:
  void Configure(EdgeServerOptions* options) override {
    HeldRequestsTest::Configure(options);
    options->max_peer_inflight = 2;
  }
};

TEST_F(PeerCapTest, OneConnectionAtItsCapDoesNotStarveAnother) {
  auto first = Start(stub_.get(), at::rand({1, 3, 8, 8}), 1);
  auto second = Start(stub_.get(), at::rand({1, 3, 8, 8}), 2);
  AwaitInflight(2);
  auto third = Start(stub_.get(), at::rand({1, 3, 8, 8}), 3);
  const grpc::Status refused = third->done.Wait();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("max_peer_inflight"));
  // Another device, on its own connection, is admitted meanwhile.
  auto other_stub = SecondConnection();
  const at::Tensor input = at::rand({1, 3, 8, 8});
  auto other = Start(other_stub.get(), input, 4);
  const grpc::Status admitted = other->done.Wait();
  ASSERT_TRUE(admitted.ok()) << admitted.error_message();
  EXPECT_TRUE(at::allclose(*common::DecodeFrame(other->response.outputs(0)),
                           test::RunFlat(original_, input)[0], 1e-5, 1e-6));
  EXPECT_TRUE(first->done.Wait().ok());
  EXPECT_TRUE(second->done.Wait().ok());
  EXPECT_EQ(Metric("cleave_edge_admission_refusals_total{reason=\"peer_cap\"}"), 1);
}

class StreamCapTest : public HeldRequestsTest {
 protected:
  static constexpr size_t kCap = 3;
  void Configure(EdgeServerOptions* options) override {
    HeldRequestsTest::Configure(options);
    options->max_stream_inflight = kCap;
    options->default_batching.max_queue_delay = milliseconds(300);
  }
};

TEST_F(StreamCapTest, AStreamStopsReadingAtItsCapAndAnswersEveryRequestOnce) {
  constexpr uint64_t kRequests = 8;
  grpc::ClientContext context;
  auto stream = stub_->InferStream(&context);
  std::map<uint64_t, at::Tensor> expected;
  std::thread writer(
      [&] { expected = WriteRequests(stream, kRequests, [](uint64_t) { return 0; }); });
  // Only `kCap` requests are ever read and unanswered; the rest wait in the transport.
  double most = 0;
  const auto until = Clock::now() + milliseconds(900);
  while (Clock::now() < until) {
    most = std::max(most, Metric("cleave_edge_inflight_requests"));
    std::this_thread::sleep_for(milliseconds(1));
  }
  writer.join();
  stream->WritesDone();
  EXPECT_EQ(most, static_cast<double>(kCap));
  std::map<uint64_t, int> answers;
  v1::InferResponse response;
  while (stream->Read(&response)) {
    ++answers[response.request_id()];
    ASSERT_EQ(response.status_code(), 0) << response.status_message();
    EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                             expected.at(response.request_id()), 1e-5, 1e-6));
  }
  EXPECT_TRUE(stream->Finish().ok());
  ASSERT_EQ(answers.size(), kRequests);
  for (const auto& [id, count] : answers) EXPECT_EQ(count, 1) << "request " << id;
}

}  // namespace
}  // namespace cleave::edge_server
