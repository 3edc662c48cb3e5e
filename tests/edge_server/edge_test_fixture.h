// The edge server tests' fixture: a real cleave-edge server (in process) on an ephemeral
// loopback port serving the residual test model cut after "stem" and "block1", a stub, and
// helpers to build requests from the bundle's own segments.
#ifndef CLEAVE_TESTS_EDGE_SERVER_EDGE_TEST_FIXTURE_H_
#define CLEAVE_TESTS_EDGE_SERVER_EDGE_TEST_FIXTURE_H_

#include <ATen/ATen.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "cleave/common/bundle.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/edge_server/edge_server.h"
#include "tests/support/raw_grpc_server.h"
#include "tests/support/test_support.h"

namespace cleave::edge_server {

// A real server on an ephemeral loopback port serving one bundle of the residual model cut
// after "stem" and "block1".
class EdgeServerTest : public ::testing::Test {
 protected:
  // Hook for tests that need other server options.
  virtual void Configure(EdgeServerOptions* options) {}

  void SetUp() override {
    original_ = test::ResidualModel();
    bundle_id_ =
        test::WriteTestBundle(original_, dir_.path(), "bundles/residual/1", {"stem", "block1"});
    ASSERT_FALSE(bundle_id_.empty());
    auto bundle = common::Bundle::Load(dir_.File("bundles/residual/1"));
    ASSERT_TRUE(bundle.ok());
    bundle_ = *bundle;
    EdgeServerOptions options;
    options.bundles_dir = dir_.File("bundles");
    options.listen = "127.0.0.1:0";
    options.watch_interval = std::chrono::milliseconds(0);  // tests rescan explicitly
    Configure(&options);
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
                             test::RunFlat(original_, input)[0], 1e-5, 1e-6));
  }

  // Writes requests 1..count on `stream`, request i resuming at cut index cut_of(i), and
  // returns the unsplit model's answer for each id.
  template <typename Stream, typename CutOf>
  std::map<uint64_t, at::Tensor> WriteRequests(Stream& stream, uint64_t count, CutOf cut_of) {
    std::map<uint64_t, at::Tensor> expected;
    for (uint64_t id = 1; id <= count; ++id) {
      const at::Tensor input = at::rand({1, 3, 8, 8});
      expected[id] = test::RunFlat(original_, input)[0];
      EXPECT_TRUE(stream->Write(Request(Cut(cut_of(id)), ActivationAt(cut_of(id), input), id)));
    }
    return expected;
  }

  // The value of the sample `series` (name and labels as exposed, e.g.
  // `cleave_edge_inflight_requests`) in the server's metrics; -1 when it is not exposed.
  double Metric(const std::string& series) const {
    std::istringstream text(server_->metrics().RenderPrometheusText());
    std::string line;
    while (std::getline(text, line)) {
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
  }

  // Waits up to 10 s until the server holds `count` requests in flight (admitted, not yet
  // answered): a request has reached the queue once the count includes it.
  void AwaitInflight(double count) const {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (Metric("cleave_edge_inflight_requests") != count &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_EQ(Metric("cleave_edge_inflight_requests"), count);
  }

  // grpc.health.v1.Health/Check for `service`: the ServingStatus (1 SERVING, 2 NOT_SERVING),
  // or minus the gRPC status code when the call fails.
  static constexpr int kServing = 1;
  static constexpr int kNotServing = 2;
  int HealthCheck(const std::string& service) const {
    // HealthCheckRequest{service} is field 1, a string; the response's status is field 1, a
    // varint. Hand-encoded: the health protos are not part of our build.
    std::string request =
        service.empty() ? "" : std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
    grpc::Slice slice(request);
    grpc::ByteBuffer request_bytes(&slice, 1), response_bytes;
    grpc::GenericStub generic(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    test::CallStatus done;
    generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_bytes,
                      &response_bytes, done.Callback());
    const grpc::Status status = done.Wait();
    if (!status.ok()) return -static_cast<int>(status.error_code());
    std::vector<grpc::Slice> slices;
    if (!response_bytes.Dump(&slices).ok()) return 0;
    std::string bytes;
    for (const auto& part : slices)
      bytes.append(reinterpret_cast<const char*>(part.begin()), part.size());
    return bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : 0;
  }

  test::TempDir dir_;
  torch::jit::Module original_;
  std::string bundle_id_;
  std::shared_ptr<const common::Bundle> bundle_;
  std::unique_ptr<EdgeServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

}  // namespace cleave::edge_server

#endif  // CLEAVE_TESTS_EDGE_SERVER_EDGE_TEST_FIXTURE_H_
