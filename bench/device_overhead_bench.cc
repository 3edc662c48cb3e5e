// Device runtime overhead: what cleave::device::Runtime adds per request outside model
// compute and the codec — policy, estimates, telemetry, thread hand-offs, the edge client's
// stream and timers — measured against hand-written baselines in the same run, rounds
// interleaved (each round starting one variant later) so machine drift and what-runs-after-what
// hit every variant alike:
//
//   offload  Runtime::Infer at a fixed cut   vs  front segments + EncodeFrame + one write/read
//            on a bare synchronous gRPC stream to the same edge + DecodeFrame of the answer
//            (and the same on gRPC's callback API)
//   policy   Runtime::Infer deciding per request: the estimates gathered and LatencyPolicy's
//            decision computed, then the same cut taken (so the baselines stay the same)
//   local    Runtime::Infer, no edge         vs  every segment's plain forward
//
// Overhead = the median over rounds of (runtime's median - baseline's median) in that round,
// reported as a share of the front segments' plain forward (the device compute of an
// offloaded request).
//
//   device_overhead_bench --bundle DIR --edge HOST:PORT [--cut ID] [--requests 50]
//                         [--rounds 80] [--data DIR] [--json FILE]
#include <ATen/Parallel.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_report.h"
#include "cleave/common/bundle.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/text_table.h"
#include "cleave/device/offload_policy.h"
#include "cleave/device/runtime.h"
#include "cleave/v1/inference.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

// LatencyPolicy's whole decision, from the estimates the runtime gathers for it, then offload
// at `segment` whatever it says: on loopback a model this small would stay local, and only the
// decision's cost is wanted here.
class DecideThenOffloadPolicy final : public cleave::device::OffloadPolicy {
 public:
  explicit DecideThenOffloadPolicy(size_t segment) : segment_(segment) {}
  cleave::device::PolicyDecision Decide(const cleave::device::PolicyInput& input) const override {
    const cleave::device::PolicyDecision decided = latency_.Decide(input);
    return {segment_, decided.predicted_ms};
  }

 private:
  const size_t segment_;
  const cleave::device::LatencyPolicy latency_;
};

struct BenchOptions {
  std::string bundle, edge, data = cleave::common::kFashionMnistDir;
  std::string json_path = "results/device_overhead.json";
  std::string cut;  // id or name; empty: the bundle's last cut
  int requests = 50;
  int rounds = 80;
};

// Times `run` over `images` (one request per image) and returns the median in microseconds.
absl::StatusOr<double> MedianMicros(const at::Tensor& images, int requests,
                                    const std::function<absl::Status(const at::Tensor&)>& run) {
  std::vector<double> micros;
  for (int i = 0; i < requests; ++i) {
    const at::Tensor image = images.slice(0, i % images.size(0), i % images.size(0) + 1);
    const Clock::time_point start = Clock::now();
    CLEAVE_RETURN_IF_ERROR(run(image));
    micros.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  return cleave::common::Percentile(micros, 0.5);
}

// The hand-written offload: one synchronous bidirectional stream, a request written and its
// answer read, nothing else.
class BareClient {
 public:
  BareClient(const std::string& target, std::string bundle_id, int cut)
      : channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
        stub_(cleave::v1::Inference::NewStub(channel_)),
        stream_(stub_->InferStream(&context_)),
        bundle_id_(std::move(bundle_id)),
        cut_(cut) {}
  ~BareClient() {
    stream_->WritesDone();
    (void)stream_->Finish();
  }

  absl::StatusOr<at::Tensor> Call(std::string frame) {
    cleave::v1::InferRequest request;
    request.set_request_id(++next_id_);
    request.set_bundle_id(bundle_id_);
    request.set_cut_id(cut_);
    request.set_activation(std::move(frame));
    cleave::v1::InferResponse response;
    if (!stream_->Write(request) || !stream_->Read(&response)) {
      return absl::UnavailableError("the edge closed the bare stream");
    }
    if (response.status_code() != 0) return absl::InternalError(response.status_message());
    return cleave::common::DecodeFrame(response.outputs(0));
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cleave::v1::Inference::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<cleave::v1::InferRequest, cleave::v1::InferResponse>>
      stream_;
  std::string bundle_id_;
  int cut_;
  uint64_t next_id_ = 0;
};

// The same with gRPC's callback API, which the runtime uses so that a request waiting on the
// network holds no thread: the answer arrives on a gRPC thread and is handed to the caller.
// Runtime minus this is cleave's own cost; this minus BareClient is the callback API's.
class BareCallbackClient final
    : public grpc::ClientBidiReactor<cleave::v1::InferRequest, cleave::v1::InferResponse> {
 public:
  BareCallbackClient(const std::string& target, std::string bundle_id, int cut)
      : channel_(grpc::CreateChannel(target, grpc::InsecureChannelCredentials())),
        stub_(cleave::v1::Inference::NewStub(channel_)),
        bundle_id_(std::move(bundle_id)),
        cut_(cut) {
    stub_->async()->InferStream(&context_, this);
    AddHold();
    StartCall();
  }
  ~BareCallbackClient() {
    StartWritesDone();
    RemoveHold();
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return done_; });
  }

  absl::StatusOr<at::Tensor> Call(std::string frame) {
    request_.Clear();
    request_.set_request_id(++next_id_);
    request_.set_bundle_id(bundle_id_);
    request_.set_cut_id(cut_);
    request_.set_activation(std::move(frame));
    {
      std::lock_guard<std::mutex> lock(mutex_);
      answered_ = written_ = false;
    }
    StartRead(&response_);
    StartWrite(&request_);
    // The answer can arrive before OnWriteDone: wait for both, as the next call reuses the
    // request and gRPC allows one write at a time.
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [this] { return (answered_ && written_) || done_; });
    if (!answered_) return absl::UnavailableError("the edge closed the bare stream");
    if (response_.status_code() != 0) return absl::InternalError(response_.status_message());
    return cleave::common::DecodeFrame(response_.outputs(0));
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    written_ = true;
    done_ = done_ || !ok;
    changed_.notify_all();
  }
  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mutex_);
    answered_ = ok;
    done_ = done_ || !ok;
    changed_.notify_all();
  }
  void OnDone(const grpc::Status&) override {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    changed_.notify_all();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cleave::v1::Inference::Stub> stub_;
  grpc::ClientContext context_;
  cleave::v1::InferRequest request_;
  cleave::v1::InferResponse response_;
  std::string bundle_id_;
  int cut_;
  uint64_t next_id_ = 0;
  std::mutex mutex_;
  std::condition_variable changed_;
  bool answered_ = false, written_ = false, done_ = false;
};

// Long on purpose: the measurement protocol in the order it runs (the bare callback, then the
// runtime, interleaved in rounds), so it reads against docs/PERFORMANCE.md step by step.
absl::Status Run(const BenchOptions& options, json* report) {
  // The baselines run the segments exactly as the runtime does: optimized for inference.
  cleave::common::Bundle::LoadOptions load;
  load.optimize_for_inference = true;
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, cleave::common::Bundle::Load(options.bundle, load));
  const cleave::common::BundleManifest& manifest = bundle->manifest();
  if (manifest.cuts.empty()) return absl::InvalidArgumentError("the bundle has no cut");
  int cut = manifest.cuts.back().id;
  if (!options.cut.empty() && !absl::SimpleAtoi(options.cut, &cut)) {
    const auto* named = manifest.FindCutNamed(options.cut);
    if (named == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no cut named ", options.cut));
    }
    cut = named->id;
  }
  CLEAVE_ASSIGN_OR_RETURN(const size_t split, bundle->SegmentStartingAt(cut));
  if (split == 0) return absl::InvalidArgumentError("--cut must leave the device some segments");
  const size_t last = manifest.segments.size() - 1;
  const cleave::common::CodecSpec codec = manifest.CodecAt(cut);
  CLEAVE_ASSIGN_OR_RETURN(auto data, cleave::common::LoadFashionMnist(options.data, "t10k", 256));
  const at::Tensor& images = data.images;

  cleave::device::RuntimeOptions offload_options;
  offload_options.edges = {options.edge};
  offload_options.offload_cut = cut;
  offload_options.deadline = std::chrono::seconds(10);
  offload_options.local_fallback = false;
  offload_options.probe_interval = std::chrono::milliseconds(0);
  CLEAVE_ASSIGN_OR_RETURN(auto offload_runtime,
                          cleave::device::Runtime::Create(options.bundle, offload_options));
  cleave::device::RuntimeOptions policy_options = offload_options;
  policy_options.offload_cut.reset();
  policy_options.policy = std::make_shared<DecideThenOffloadPolicy>(split);
  policy_options.probe_interval = cleave::device::RuntimeOptions().probe_interval;
  CLEAVE_ASSIGN_OR_RETURN(auto policy_runtime,
                          cleave::device::Runtime::Create(options.bundle, policy_options));
  cleave::device::RuntimeOptions local_options;
  CLEAVE_ASSIGN_OR_RETURN(auto local_runtime,
                          cleave::device::Runtime::Create(options.bundle, local_options));
  BareClient bare(options.edge, bundle->id(), cut);
  BareCallbackClient bare_callback(options.edge, bundle->id(), cut);

  auto front = [&](const at::Tensor& image) {
    return bundle->RunSegments(0, split - 1, {image}).status();
  };
  auto whole = [&](const at::Tensor& image) {
    return bundle->RunSegments(0, last, {image}).status();
  };
  auto offload_via = [&](auto& client) {
    return [&, client = &client](const at::Tensor& image) -> absl::Status {
      CLEAVE_ASSIGN_OR_RETURN(c10::IValue activation, bundle->RunSegments(0, split - 1, {image}));
      CLEAVE_ASSIGN_OR_RETURN(std::string frame,
                              cleave::common::EncodeFrame(activation.toTensor(), codec));
      return client->Call(std::move(frame)).status();
    };
  };
  auto runtime_call = [](cleave::device::Runtime& runtime, cleave::device::Placement expected) {
    return [&runtime, expected](const at::Tensor& image) -> absl::Status {
      CLEAVE_ASSIGN_OR_RETURN(cleave::device::Result result, runtime.Infer(image));
      if (result.placement != expected) {
        return absl::InternalError(absl::StrCat("request ran on ",
                                                cleave::device::PlacementName(result.placement),
                                                ": ", result.fallback_reason));
      }
      return absl::OkStatus();
    };
  };
  const std::vector<std::pair<std::string, std::function<absl::Status(const at::Tensor&)>>>
      variants = {
          {"front forward", front},
          {"bare offload", offload_via(bare)},
          {"bare callback offload", offload_via(bare_callback)},
          {"runtime offload", runtime_call(*offload_runtime, cleave::device::Placement::kEdge)},
          {"runtime policy offload",
           runtime_call(*policy_runtime, cleave::device::Placement::kEdge)},
          {"whole forward", whole},
          {"runtime local", runtime_call(*local_runtime, cleave::device::Placement::kDevice)},
      };
  // Warm up every path (TorchScript's profiling runs, the streams), then interleave rounds.
  for (const auto& [name, run] : variants) {
    CLEAVE_RETURN_IF_ERROR(MedianMicros(images, 50, run).status());
  }
  std::map<std::string, std::vector<double>> medians;
  for (int round = 0; round < options.rounds; ++round) {
    // Each round starts one variant later: what runs after what (a warm network path, a
    // core just woken) would otherwise favour some variants in every round.
    for (size_t i = 0; i < variants.size(); ++i) {
      const auto& [name, run] = variants[(round + i) % variants.size()];
      CLEAVE_ASSIGN_OR_RETURN(double median, MedianMicros(images, options.requests, run));
      medians[name].push_back(median);
    }
    std::cerr << "round " << round + 1 << "/" << options.rounds << " done\n";
  }
  std::map<std::string, double> us;
  for (const auto& [name, values] : medians) us[name] = cleave::common::Percentile(values, 0.5);

  // Differences are paired per round (the median of round-by-round differences): the
  // machine's speed drifts between rounds far more than it does within one.
  auto paired = [&medians](const std::string& variant, const std::string& baseline) {
    std::vector<double> differences;
    for (size_t r = 0; r < medians[variant].size(); ++r) {
      differences.push_back(medians[variant][r] - medians[baseline][r]);
    }
    return cleave::common::Percentile(differences, 0.5);
  };
  const double front_us = us["front forward"];
  const double offload_overhead = paired("runtime offload", "bare offload");
  const double own_overhead = paired("runtime offload", "bare callback offload");
  const double policy_overhead = paired("runtime policy offload", "bare callback offload");
  const double local_overhead = paired("runtime local", "whole forward");
  cleave::common::TextTable table({"path", "median latency (us)", "vs baseline"});
  table.AddRow({"front segments, plain forward", absl::StrFormat("%.1f", front_us), "-"});
  table.AddRow({"bare offload (front + codec + raw gRPC)",
                absl::StrFormat("%.1f", us["bare offload"]), "baseline"});
  table.AddRow({"Runtime::Infer, offload at cut " + std::to_string(cut),
                absl::StrFormat("%.1f", us["runtime offload"]),
                absl::StrFormat("%+.1f us = %.2f%% of front compute", offload_overhead,
                                100 * offload_overhead / front_us)});
  table.AddRow({"bare callback-API offload", absl::StrFormat("%.1f", us["bare callback offload"]),
                absl::StrFormat("%+.1f us vs bare (gRPC's callback hand-off)",
                                paired("bare callback offload", "bare offload"))});
  table.AddRow({"  Runtime::Infer vs bare callback-API offload", "",
                absl::StrFormat("%+.1f us = %.2f%% of front compute (cleave's own)", own_overhead,
                                100 * own_overhead / front_us)});
  table.AddRow({"Runtime::Infer, policy decides each request",
                absl::StrFormat("%.1f", us["runtime policy offload"]),
                absl::StrFormat("%+.1f us = %.2f%% of front compute vs bare callback-API",
                                policy_overhead, 100 * policy_overhead / front_us)});
  table.AddRow(
      {"every segment, plain forward", absl::StrFormat("%.1f", us["whole forward"]), "baseline"});
  table.AddRow({"Runtime::Infer, device only", absl::StrFormat("%.1f", us["runtime local"]),
                absl::StrFormat("%+.1f us = %.2f%% of front compute", local_overhead,
                                100 * local_overhead / front_us)});
  std::cout << "device_overhead_bench: bundle " << manifest.name << ", offload cut " << cut << ", "
            << options.rounds << " interleaved rounds x " << options.requests
            << " requests; latency: median over rounds of each round's median; overhead: median of "
               "the per-round differences\n"
            << table.Render();
  (*report)["bundle"] = manifest.name;
  (*report)["cut"] = cut;
  (*report)["rounds"] = options.rounds;
  (*report)["requests_per_round"] = options.requests;
  (*report)["median_us"] = us;
  (*report)["round_medians_us"] = medians;
  (*report)["overhead_us"] = {{"offload", offload_overhead},
                              {"offload_vs_callback_baseline", own_overhead},
                              {"policy_offload_vs_callback_baseline", policy_overhead},
                              {"local", local_overhead}};
  (*report)["overhead_share_of_front_compute"] = {
      {"offload", offload_overhead / front_us},
      {"offload_vs_callback_baseline", own_overhead / front_us},
      {"policy_offload_vs_callback_baseline", policy_overhead / front_us},
      {"local", local_overhead / front_us}};
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"device_overhead_bench: what cleave::device::Runtime adds per request"};
  BenchOptions options;
  app.add_option("--bundle", options.bundle, "bundle folder (the edge serves it too)")->required();
  app.add_option("--edge", options.edge, "host:port of a cleave-edge serving the bundle")
      ->required();
  app.add_option("--cut", options.cut, "offload cut id or name (default: the bundle's last cut)");
  app.add_option("--requests", options.requests, "requests per variant and round")
      ->check(CLI::PositiveNumber)
      ->default_val(options.requests);
  app.add_option("--rounds", options.rounds, "interleaved rounds")
      ->check(CLI::PositiveNumber)
      ->default_val(options.rounds);
  app.add_option("--data", options.data, "Fashion-MNIST folder")->default_val(options.data);
  app.add_option("--json", options.json_path, "where to write the JSON report")
      ->default_val(options.json_path);
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(1);
  json report = cleave::bench::ReportHeader("device_overhead_bench", argc, argv);
  if (absl::Status status = Run(options, &report); !status.ok()) {
    std::cerr << "device_overhead_bench: error: " << status.message() << "\n";
    return 1;
  }
  return cleave::bench::WriteJsonReport(report, options.json_path) ? 0 : 1;
}
