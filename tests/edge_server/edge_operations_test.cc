// Operating the edge: dynamic batching, backpressure, deadlines and cancellation while
// queued, hot reload of the model repository, per-model health, Prometheus metrics, the config
// file, oversized messages and garbage on the wire.
#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include "cleave/common/files.h"
#include "cleave/common/sha256.h"
#include "tests/edge_server/edge_test_fixture.h"

namespace cleave::edge_server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

// A fixture whose server holds requests for a while before computing, so tests can act on
// queued requests: batches of up to `max_batch` wait `delay` for company.
class QueueingEdgeTest : public EdgeServerTest {
 protected:
  void Configure(EdgeServerOptions* options) override {
    options->workers = 1;
    options->max_queue = max_queue_;
    options->default_batching.max_batch_size = max_batch_;
    options->default_batching.max_queue_delay = delay_;
    options->metrics_listen = "127.0.0.1:0";
  }

  grpc::Status CallWithDeadline(const v1::InferRequest& request, v1::InferResponse* response,
                                std::chrono::milliseconds deadline) const {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    return stub_->Infer(&context, request, response);
  }

  // GET `path` from the metrics endpoint: (HTTP status, body).
  std::pair<int, std::string> HttpGet(const std::string& path) const {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(server_->metrics_port()));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      close(fd);
      return {0, ""};
    }
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
      close(fd);
      return {0, ""};
    }
    std::string reply;
    char buffer[4096];
    ssize_t n = 0;
    while ((n = read(fd, buffer, sizeof(buffer))) > 0) reply.append(buffer, n);
    close(fd);
    const size_t body = reply.find("\r\n\r\n");
    return {reply.size() > 12 ? std::stoi(reply.substr(9, 3)) : 0,
            body == std::string::npos ? "" : reply.substr(body + 4)};
  }

  // Waits until /metrics contains `needle` (metrics are recorded as requests finish).
  bool MetricsEventuallyContain(const std::string& needle) const {
    const auto give_up = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < give_up) {
      if (HttpGet("/metrics").second.find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  size_t max_queue_ = 64;
  int max_batch_ = 4;
  std::chrono::microseconds delay_ = std::chrono::seconds(2);
};

TEST_F(QueueingEdgeTest, RequestsForTheSameCutRunAsOneBatchWithTheSameAnswers) {
  grpc::ClientContext context;
  auto stream = stub_->InferStream(&context);
  const std::map<uint64_t, at::Tensor> expected =
      WriteRequests(stream, 8, [](uint64_t id) { return 0; });
  stream->WritesDone();
  v1::InferResponse response;
  int answered = 0;
  while (stream->Read(&response)) {
    ++answered;
    ASSERT_EQ(response.status_code(), 0) << response.status_message();
    // Eight requests, batches of four that start as soon as they are full.
    EXPECT_EQ(response.timings().batch_size(), 4u);
    EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                             expected.at(response.request_id()), 1e-5, 1e-5));
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(answered, 8);
  EXPECT_TRUE(MetricsEventuallyContain("cleave_edge_batch_size_count{model=\"residual\"} 2"));
}

class FullQueueEdgeTest : public QueueingEdgeTest {
 protected:
  void SetUp() override {
    max_queue_ = 1;
    max_batch_ = 100;
    QueueingEdgeTest::SetUp();
  }
};

TEST_F(FullQueueEdgeTest, AFullQueueRefusesAtOnceAndTheQueuedRequestStillRuns) {
  // Both calls arrive within the 2 s batching delay; the queue holds one of them.
  auto call = [&](uint64_t id) {
    v1::InferResponse response;
    return CallWithDeadline(Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})), id), &response,
                            std::chrono::seconds(30));
  };
  auto first = std::async(std::launch::async, call, 1);
  auto second = std::async(std::launch::async, call, 2);
  const grpc::Status a = first.get(), b = second.get();
  EXPECT_EQ(a.ok() + b.ok(), 1) << a.error_message() << " / " << b.error_message();
  const grpc::Status& refused = a.ok() ? b : a;
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("queue is full"));
  EXPECT_TRUE(MetricsEventuallyContain("status=\"RESOURCE_EXHAUSTED\"} 1"));
}

class SlowQueueEdgeTest : public QueueingEdgeTest {
 protected:
  void SetUp() override {
    max_batch_ = 100;
    delay_ = std::chrono::seconds(1);
    QueueingEdgeTest::SetUp();
  }
};

TEST_F(SlowQueueEdgeTest, ARequestWhoseBudgetPassesWhileQueuedIsNeverComputed) {
  v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  request.set_timeout_us(100000);  // 100 ms, but the batch waits 1 s
  v1::InferResponse response;
  const grpc::Status status = CallWithDeadline(request, &response, std::chrono::seconds(30));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_THAT(status.error_message(), HasSubstr("not computed"));
  EXPECT_TRUE(MetricsEventuallyContain("status=\"DEADLINE_EXCEEDED\"} 1"));
  EXPECT_THAT(
      HttpGet("/metrics").second,
      HasSubstr("cleave_edge_compute_seconds_count{model=\"residual\"} 0"));  // no forward ran
}

TEST_F(SlowQueueEdgeTest, ACancelledRequestIsNeverComputed) {
  grpc::ClientContext context;
  v1::InferResponse response;
  test::CallStatus done;
  const v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  stub_->async()->Infer(&context, &request, &response, done.Callback());
  AwaitInflight(1);  // queued, waiting for its batch
  context.TryCancel();
  EXPECT_EQ(done.Wait().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(MetricsEventuallyContain("status=\"CANCELLED\"} 1"));
  EXPECT_THAT(HttpGet("/metrics").second,
              HasSubstr("cleave_edge_compute_seconds_count{model=\"residual\"} 0"));
}

TEST_F(SlowQueueEdgeTest, BundlesSwappedWhileARequestIsQueuedDoNotFailIt) {
  auto queued = std::async(std::launch::async, [&] {
    v1::InferResponse response;
    return CallWithDeadline(Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8}))), &response,
                            std::chrono::seconds(30));
  });
  AwaitInflight(1);  // admitted with the bundle, waiting for its batch
  std::filesystem::remove_all(dir_.File("bundles/residual"));
  EXPECT_EQ(server_->RescanBundles().removed, 1);
  EXPECT_TRUE(queued.get().ok());  // it holds the bundle it was admitted with
}

class MetricsEdgeTest : public QueueingEdgeTest {
 protected:
  void SetUp() override {
    delay_ = std::chrono::microseconds(0);
    QueueingEdgeTest::SetUp();
  }
};

TEST_F(MetricsEdgeTest, MetricsEndpointServesValidPrometheusText) {
  for (int i = 0; i < 3; ++i) {
    v1::InferResponse response;
    ASSERT_TRUE(CallWithDeadline(Request(Cut(1), ActivationAt(1, at::rand({1, 3, 8, 8}))),
                                 &response, std::chrono::seconds(30))
                    .ok());
  }
  v1::InferRequest unknown = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  unknown.set_bundle_id("nope");
  v1::InferResponse response;
  EXPECT_EQ(CallWithDeadline(unknown, &response, std::chrono::seconds(30)).error_code(),
            grpc::StatusCode::NOT_FOUND);
  // Cuts a caller makes up are one series, not one each: a caller cannot grow the exposition.
  for (int cut : {999, 1000, 1001}) {
    EXPECT_EQ(CallWithDeadline(Request(cut, ActivationAt(0, at::rand({1, 3, 8, 8}))), &response,
                               std::chrono::seconds(30))
                  .error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  ASSERT_TRUE(MetricsEventuallyContain("cleave_edge_requests_total{model=\"residual\",cut=\"" +
                                       std::to_string(Cut(1)) + "\",status=\"OK\"} 3"))
      << HttpGet("/metrics").second;
  const std::string text = HttpGet("/metrics").second;
  for (const std::string& name :
       {std::string("cleave_edge_requests_total{model=\"residual\""),
        std::string("cleave_edge_queue_seconds_bucket"),
        std::string("cleave_edge_compute_seconds_sum"),
        std::string("cleave_edge_request_seconds_count"),
        std::string("cleave_edge_batch_size_bucket"),
        std::string("cleave_edge_received_bytes_total{model=\"residual\"}"),
        std::string("cleave_edge_decoded_bytes_total{model=\"residual\"}"),
        std::string("cleave_edge_loaded_bundles 1"),
        std::string("{model=\"unknown\",cut=\"other\",status=\"NOT_FOUND\"} 1"),
        std::string("{model=\"residual\",cut=\"other\",status=\"INVALID_ARGUMENT\"} 3")}) {
    EXPECT_THAT(text, HasSubstr(name));
  }
  EXPECT_THAT(text, Not(HasSubstr("cut=\"999\"")));
  EXPECT_EQ(HttpGet("/readyz").first, 200);
  EXPECT_EQ(HttpGet("/healthz").first, 200);
  // promtool (Debian's prometheus package, installed by scripts/setup.sh) must accept it.
  test::TempDir dir;
  std::ofstream(dir.File("metrics.txt")) << text;
  auto check = test::RunCommand("promtool check metrics < " + dir.File("metrics.txt"));
  EXPECT_EQ(check.exit_code, 0) << check.output;
}

TEST_F(EdgeServerTest, RepositoryPicksUpNewChangedAndRemovedBundles) {
  // New: a second model appears next to the first.
  const std::string concat_id =
      test::WriteTestBundle(test::ConcatModel(), dir_.path(), "bundles/concat/1", {"stem"});
  EXPECT_EQ(server_->registry().Find(concat_id).bundle, nullptr);
  EXPECT_EQ(server_->RescanBundles().added, 1);
  ASSERT_NE(server_->registry().Find(concat_id).bundle, nullptr);
  EXPECT_EQ(HealthCheck(concat_id), kServing);
  EXPECT_EQ(HealthCheck("concat"), kServing);

  // Changed: the residual model re-split at other cuts is a new bundle id in the same folder.
  const std::string old_id = bundle_id_;
  const std::string new_id =
      test::WriteTestBundle(original_, dir_.path(), "bundles/residual/1", {"block1"});
  ASSERT_NE(new_id, old_id);
  const BundleRegistry::Changes changes = server_->RescanBundles();
  EXPECT_EQ(changes.added, 1);
  EXPECT_EQ(changes.removed, 1);
  EXPECT_EQ(server_->registry().Find(old_id).bundle, nullptr);
  ASSERT_NE(server_->registry().Find(new_id).bundle, nullptr);
  EXPECT_EQ(HealthCheck(old_id), kNotServing);
  EXPECT_EQ(HealthCheck(new_id), kServing);
  v1::InferRequest request = Request(Cut(0), ActivationAt(0, at::rand({1, 3, 8, 8})));
  v1::InferResponse response;
  EXPECT_EQ(Call(request, &response).error_code(), grpc::StatusCode::NOT_FOUND);

  // Removed: the folder goes, so does the bundle.
  std::filesystem::remove_all(dir_.File("bundles/concat"));
  EXPECT_EQ(server_->RescanBundles().removed, 1);
  EXPECT_EQ(server_->registry().Find(concat_id).bundle, nullptr);
  EXPECT_EQ(HealthCheck("concat"), kNotServing);
}

TEST_F(EdgeServerTest, HiddenFoldersWhereWritersStageBundlesAreNotScanned) {
  // A complete bundle in a hidden folder (where cleave split stages one) is not served; moved
  // into a visible folder it is.
  const std::string id = test::WriteTestBundle(test::ConcatModel(), dir_.path(),
                                               "bundles/concat/.1.staging", {"stem"});
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(server_->RescanBundles().added, 0);
  EXPECT_EQ(server_->registry().Find(id).bundle, nullptr);
  std::filesystem::rename(dir_.File("bundles/concat/.1.staging"), dir_.File("bundles/concat/1"));
  EXPECT_EQ(server_->RescanBundles().added, 1);
  EXPECT_NE(server_->registry().Find(id).bundle, nullptr);
}

TEST_F(EdgeServerTest, ABrokenUpdateIsRefusedAndTheOldBundleKeepsServing) {
  // Write a new version over the old one, then corrupt one of its segments.
  test::TempDir staging;
  test::WriteTestBundle(original_, staging.path(), "b", {"block1"});
  std::ofstream(staging.File("b/segment_1.pt"), std::ios::app) << "corrupt";
  std::filesystem::copy(
      staging.File("b"), dir_.File("bundles/residual/1"),
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
  const BundleRegistry::Changes changes = server_->RescanBundles();
  EXPECT_EQ(changes.refused, 1);
  EXPECT_EQ(changes.removed, 0);
  ASSERT_NE(server_->registry().Find(bundle_id_).bundle, nullptr);
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, AnUpdateWhoseHashesMatchButWhoseSampleDoesNotIsRefused) {
  // Every file matches its hash, but the stored expected output is not what the segments
  // compute: the equivalence check, not the hash check, must refuse it.
  test::TempDir staging;
  test::WriteTestBundle(original_, staging.path(), "b", {"block1"});
  common::BundleManifest manifest = test::ReadManifest(staging.File("b"));
  const std::string wrong = *common::EncodeFrame(at::full({1, 10}, 42.0f));
  const common::FileRef& output = manifest.verification.outputs.at(0);
  ASSERT_TRUE(common::WriteFileAtomically(staging.File("b/" + output.file), wrong).ok());
  manifest.verification.outputs[0].sha256 = common::Sha256Hex(wrong);
  ASSERT_TRUE(common::WriteFileAtomically(staging.File("b/manifest.json"), manifest.ToJson()).ok());
  std::filesystem::remove_all(dir_.File("bundles/residual/1"));
  std::filesystem::copy(staging.File("b"), dir_.File("bundles/residual/2"),
                        std::filesystem::copy_options::recursive);
  std::filesystem::copy(staging.File("b"), dir_.File("bundles/residual/1"),
                        std::filesystem::copy_options::recursive);
  auto loaded = common::Bundle::Load(staging.File("b"));
  ASSERT_TRUE(loaded.ok()) << loaded.status();  // hashes match
  EXPECT_EQ((*loaded)->Verify().status().code(), absl::StatusCode::kFailedPrecondition);
  const BundleRegistry::Changes changes = server_->RescanBundles();
  EXPECT_EQ(changes.refused, 2);
  EXPECT_EQ(changes.added, 0);
  EXPECT_EQ(server_->registry().Find((*loaded)->id()).bundle, nullptr);
  // Folder 1's old bundle keeps serving: its replacement was refused.
  ASSERT_NE(server_->registry().Find(bundle_id_).bundle, nullptr);
  ExpectServerStillServes();
}

class SmallMessageEdgeTest : public EdgeServerTest {
 protected:
  void Configure(EdgeServerOptions* options) override { options->max_message_bytes = 1 << 20; }
};

TEST_F(SmallMessageEdgeTest, OversizedMessageIsRefusedAndOthersAreServed) {
  // 1024 samples of an 8x8x8 float activation: 2 MiB, over the 1 MiB limit.
  v1::InferResponse response;
  const grpc::Status status = Call(Request(Cut(0), at::rand({1024, 8, 8, 8})), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  ExpectServerStillServes();
}

TEST_F(EdgeServerTest, GarbageThatIsNotAMessageEndsOnlyThatCall) {
  for (const char* method : {"/cleave.v1.Inference/Infer", "/cleave.v1.Inference/InferStream"}) {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    grpc::CompletionQueue queue;
    auto call = generic.PrepareCall(&context, method, &queue);
    void* tag = nullptr;
    bool ok = false;
    call->StartCall(reinterpret_cast<void*>(1));
    ASSERT_TRUE(queue.Next(&tag, &ok));
    // A protobuf field header promising a 2 GiB length-delimited field.
    const std::string garbage("\x22\xff\xff\xff\xff\x07garbage", 12);
    grpc::Slice slice(garbage);
    grpc::ByteBuffer buffer(&slice, 1);
    call->WriteLast(buffer, grpc::WriteOptions(), reinterpret_cast<void*>(2));
    ASSERT_TRUE(queue.Next(&tag, &ok));
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(3));
    while (queue.Next(&tag, &ok)) {
      if (tag == reinterpret_cast<void*>(3)) break;
    }
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("is not a cleave.v1.InferRequest"));
    queue.Shutdown();
    while (queue.Next(&tag, &ok)) {
    }
  }
  ExpectServerStillServes();
}

// Idle workers that poll for an hour before sleeping: one polls, the other sleeps.
class PollingEdgeTest : public EdgeServerTest {
 protected:
  void Configure(EdgeServerOptions* options) override {
    options->workers = 2;
    options->idle_spin = std::chrono::hours(1);
  }
};

TEST_F(PollingEdgeTest, PollingWorkersServeEveryRequestAndStopWithoutWaitingOutThePoll) {
  // Rounds separated by idle time, so each round starts with a worker polling; requests for
  // both cuts at once need both workers.
  for (int round = 0; round < 3; ++round) {
    grpc::ClientContext context;
    auto stream = stub_->InferStream(&context);
    const std::map<uint64_t, at::Tensor> expected =
        WriteRequests(stream, 16, [](uint64_t id) { return id % 2; });
    stream->WritesDone();
    size_t answered = 0;
    v1::InferResponse response;
    while (stream->Read(&response)) {
      ASSERT_EQ(response.status_code(), 0) << response.status_message();
      EXPECT_TRUE(at::allclose(*common::DecodeFrame(response.outputs(0)),
                               expected.at(response.request_id()), 1e-5, 1e-6));
      ++answered;
    }
    EXPECT_TRUE(stream->Finish().ok());
    EXPECT_EQ(answered, expected.size());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Shutdown ends the poll (otherwise it would take an hour and the test would time out).
  server_->Shutdown();
}

TEST(EdgeConfigTest, ConfigFileSetsOptionsAndRejectsUnknownKeys) {
  test::TempDir dir;
  std::ofstream(dir.File("edge.json")) << R"({
    "bundles": "/srv/b", "listen": "0.0.0.0:1234", "metrics_listen": "127.0.0.1:9464",
    "workers": 3, "max_queue": 10, "intra_op_threads": 2, "max_message_mb": 8, "idle_spin_us": 0,
    "max_activation_elements": 1000, "watch_interval_ms": 0, "max_inflight_mb": 512,
    "max_peer_inflight": 0, "max_stream_inflight": 8, "max_connection_streams": 20,
    "batching": {"max_batch_size": 16, "max_queue_delay_us": 250,
                 "models": {"fashion": {"max_batch_size": 64, "max_request_batch": 8}}}})";
  EdgeServerOptions options;
  ASSERT_TRUE(ApplyConfigFile(dir.File("edge.json"), &options).ok());
  EXPECT_EQ(options.bundles_dir, "/srv/b");
  EXPECT_EQ(options.listen, "0.0.0.0:1234");
  EXPECT_EQ(options.metrics_listen, "127.0.0.1:9464");
  EXPECT_EQ(options.workers, 3u);
  EXPECT_EQ(options.max_queue, 10u);
  EXPECT_EQ(options.intra_op_threads, 2);
  EXPECT_EQ(options.idle_spin.count(), 0);
  EXPECT_EQ(options.max_message_bytes, 8 << 20);
  EXPECT_EQ(options.limits.max_elements, 1000u);
  EXPECT_EQ(options.watch_interval.count(), 0);
  EXPECT_EQ(options.default_batching.max_batch_size, 16);
  EXPECT_EQ(options.default_batching.max_queue_delay.count(), 250);
  EXPECT_EQ(options.batching_by_model.at("fashion").max_batch_size, 64);
  EXPECT_EQ(options.batching_by_model.at("fashion").max_queue_delay.count(), 250);
  EXPECT_EQ(options.max_inflight_bytes, uint64_t{512} << 20);
  EXPECT_EQ(options.max_peer_inflight, 0u);
  EXPECT_EQ(options.max_stream_inflight, 8u);
  EXPECT_EQ(options.max_connection_streams, 20);
  EXPECT_EQ(options.default_batching.max_request_batch, 1);
  EXPECT_EQ(options.batching_by_model.at("fashion").max_request_batch, 8);

  std::ofstream(dir.File("typo.json")) << R"({"wokers": 3})";
  auto typo = ApplyConfigFile(dir.File("typo.json"), &options);
  EXPECT_THAT(std::string(typo.message()), HasSubstr("unknown key 'wokers'"));
  std::ofstream(dir.File("type.json")) << R"({"workers": "many"})";
  EXPECT_FALSE(ApplyConfigFile(dir.File("type.json"), &options).ok());
  std::ofstream(dir.File("spin.json")) << R"({"idle_spin_us": -1})";
  EXPECT_THAT(std::string(ApplyConfigFile(dir.File("spin.json"), &options).message()),
              HasSubstr("idle_spin_us < 0"));
  std::ofstream(dir.File("zero.json")) << R"({"batching": {"max_batch_size": 0}})";
  EXPECT_THAT(std::string(ApplyConfigFile(dir.File("zero.json"), &options).message()),
              HasSubstr("max_batch_size < 1"));
  for (const char* bad : {R"({"max_inflight_mb": 0})", R"({"max_stream_inflight": 0})",
                          R"({"max_connection_streams": 0})",
                          R"({"batching": {"models": {"m": {"max_request_batch": 0}}}})"}) {
    std::ofstream(dir.File("bad.json")) << bad;
    EXPECT_THAT(std::string(ApplyConfigFile(dir.File("bad.json"), &options).message()),
                HasSubstr("< 1"))
        << bad;
  }
  EXPECT_EQ(ApplyConfigFile(dir.File("missing.json"), &options).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace cleave::edge_server
