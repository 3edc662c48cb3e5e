#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/health_check_service_interface.h>
#include <gtest/gtest.h>

#include <thread>

#include "cleave/common/bundle.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/edge_server/edge_server.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {
namespace {

using ::testing::HasSubstr;

// A real server on an ephemeral loopback port serving one bundle of the residual model cut
// after "stem" and "block1".
class EdgeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    original_ = testing::ResidualModel();
    bundle_id_ =
        testing::WriteTestBundle(original_, dir_.path(), "bundles/residual/1", {"stem", "block1"});
    ASSERT_FALSE(bundle_id_.empty());
    auto bundle = common::Bundle::Load(dir_.File("bundles/residual/1"));
    ASSERT_TRUE(bundle.ok());
    bundle_ = *bundle;
    EdgeServerOptions options;
    options.bundles_dir = dir_.File("bundles");
    options.listen = "127.0.0.1:0";
    auto server = EdgeServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Inference::NewStub(channel_);
  }

  int Cut(size_t index) const { return bundle_->manifest().cuts.at(index).id; }

  // The activation crossing cut `index` for `input`, computed by the bundle's own segments.
  at::Tensor ActivationAt(size_t index, const at::Tensor& input) const {
    return bundle_->RunSegments(0, index, {input})->toTensor();
  }

  v1::InferRequest Request(int cut, const at::Tensor& activation, uint64_t id = 1) const {
    v1::InferRequest request;
    request.set_request_id(id);
    request.set_bundle_id(bundle_id_);
    request.set_cut_id(cut);
    request.set_activation(*common::EncodeFrame(activation));
    return request;
  }

  grpc::Status Call(const v1::InferRequest& request, v1::InferResponse* response) const {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    return stub_->Infer(&context, request, response);
  }

  void ExpectServerStillServes() const {
    const at::Tensor input = at::rand({1, 3, 8, 8});
    v1::InferResponse response;
    ASSERT_TRUE(Call(Request(Cut(0), ActivationAt(0, input)), &response).ok());
    EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                             testing::RunFlat(original_, input)[0], 1e-5, 1e-6));
  }

  testing::TempDir dir_;
  torch::jit::Module original_;
  std::string bundle_id_;
  std::shared_ptr<const common::Bundle> bundle_;
  std::unique_ptr<EdgeServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

TEST_F(EdgeServerTest, UnaryResultEqualsUnsplitModelFromEveryCut) {
  const at::Tensor input = at::rand({1, 3, 8, 8});
  const at::Tensor expected = testing::RunFlat(original_, input)[0];
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

TEST_F(EdgeServerTest, BatchedActivationIsServed) {
  const at::Tensor input = at::rand({4, 3, 8, 8});
  v1::InferResponse response;
  ASSERT_TRUE(Call(Request(Cut(0), ActivationAt(0, input)), &response).ok());
  EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                           testing::RunFlat(original_, input)[0], 1e-5, 1e-6));
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
  std::map<uint64_t, at::Tensor> expected;
  for (uint64_t id = 1; id <= 8; ++id) {
    const at::Tensor input = at::rand({1, 3, 8, 8});
    expected[id] = testing::RunFlat(original_, input)[0];
    ASSERT_TRUE(stream->Write(Request(Cut(id % 2), ActivationAt(id % 2, input), id)));
  }
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

TEST_F(EdgeServerTest, HealthServiceReportsServing) {
  grpc::ClientContext context;
  grpc::ByteBuffer request_bytes, response_bytes;
  // grpc.health.v1.HealthCheckRequest{service: ""} serializes to zero bytes.
  grpc::GenericStub generic(channel_);
  grpc::Slice empty("");
  request_bytes = grpc::ByteBuffer(&empty, 1);
  grpc::Status status;
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_bytes,
                    &response_bytes, [&](grpc::Status s) {
                      std::lock_guard<std::mutex> lock(mutex);
                      status = s;
                      done = true;
                      done_cv.notify_all();
                    });
  std::unique_lock<std::mutex> lock(mutex);
  done_cv.wait(lock, [&] { return done; });
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response_bytes.Dump(&slices).ok());
  std::string bytes;
  for (const auto& slice : slices)
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  // HealthCheckResponse{status: SERVING (1)}: field 1, varint 1.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

}  // namespace
}  // namespace cleave::edge_server
