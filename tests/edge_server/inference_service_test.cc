#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include <thread>

#include "cleave/common/bundle.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/edge_server/edge_server.h"
#include "tests/edge_server/edge_test_fixture.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {
namespace {

using ::testing::HasSubstr;

TEST_F(EdgeServerTest, UnaryResultEqualsUnsplitModelFromEveryCut) {
  const at::Tensor input = at::rand({1, 3, 8, 8});
  const at::Tensor expected = test::RunFlat(original_, input)[0];
  // Cut 0 sends the raw input: the edge runs everything.
  for (int cut : {common::kInputCutId, Cut(0), Cut(1)}) {
    const at::Tensor activation =
        cut == common::kInputCutId ? input : ActivationAt(cut == Cut(0) ? 0 : 1, input);
    v1::InferResponse response;
    grpc::Status status = Call(Request(cut, activation, 42), &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(response.request_id(), 42u);
    ASSERT_EQ(response.outputs_size(), 1);
    EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)), expected, 1e-5, 1e-6));
    EXPECT_EQ(response.timings().batch_size(), 1u);
  }
}

TEST_F(EdgeServerTest, UnknownBundleIsNotFound) {
  v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  request.set_bundle_id("feedface");
  v1::InferResponse response;
  grpc::Status status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("unknown bundle id 'feedface'"));
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, UnknownCutIsInvalidArgument) {
  v1::InferResponse response;
  grpc::Status status = Call(Request(999, ActivationAt(0, at::rand({1, 3, 8, 8}))), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("cut 999 is not a cut"));
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, WrongActivationShapeIsInvalidArgument) {
  v1::InferResponse response;
  grpc::Status status = Call(Request(Cut(0), at::rand({1, 5, 8, 8})), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("1x5x8x8"));
  EXPECT_THAT(status.error_message(), HasSubstr("bundle expects"));
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, WrongActivationDtypeIsInvalidArgument) {
  v1::InferResponse response;
  grpc::Status status =
      Call(Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})).to(at::kDouble)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("float64"));
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, MalformedFrameIsInvalidArgument) {
  v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  request.set_activation("garbage that is not a frame at all, not even close");
  v1::InferResponse response;
  grpc::Status status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("bad tensor frame"));
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, ExpiredRequestIsNotComputed) {
  v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  request.set_timeout_us(1);  // expires before a worker can pick it up
  v1::InferResponse response;
  grpc::Status status = Call(request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(), HasSubstr("not computed"));
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, StreamAnswersEveryRequestAndReportsErrorsInBand) {
  grpc::ClientContext context;
  auto stream = stub_->InferStream(&context);
  const std::map<uint64_t, at::Tensor> expected =
      WriteRequests(stream, 8, [](uint64_t id) { return id % 2; });
  v1::InferRequest bad = Request(Cut(0), at::rand({1, 5, 8, 8}), 99);
  ASSERT_TRUE(stream->Write(bad));
  stream->WritesDone();
  std::set<uint64_t> seen;
  v1::InferResponse response;
  while (stream->Read(&response)) {
    seen.insert(response.request_id());
    if (response.request_id() == 99) {
      EXPECT_EQ(response.status_code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_THAT(response.status_message(), HasSubstr("bundle expects"));
      continue;
    }
    ASSERT_EQ(response.status_code(), 0) << response.status_message();
    EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                             expected.at(response.request_id()), 1e-5, 1e-6));
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(seen.size(), 9u);
}

TEST_F(EdgeServerTest, ClientThatVanishesMidStreamDoesNotDisturbOthers) {
  {
    grpc::ClientContext context;
    auto stream = stub_->InferStream(&context);
    for (uint64_t id = 1; id <= 4; ++id) {
      stream->Write(Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})), id));
    }
    context.TryCancel();
  }
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, HealthServiceReportsServingOverallAndPerBundle) {
  EXPECT_EQ(HealthCheck(""), kServing);
  EXPECT_EQ(HealthCheck(bundle_id_), kServing);
  EXPECT_EQ(HealthCheck("residual"), kServing);  // by bundle name
  EXPECT_EQ(HealthCheck("no-such-model"), -static_cast<int>(grpc::StatusCode::NOT_FOUND));
}

}  // namespace
}  // namespace cleave::edge_server
