// cleave-device: runs a bundle over Fashion-MNIST test images or a folder of tensor frames
// against one or more edges, the way a robot's sensing loop would (frames in order through a
// cleave::device::Pipeline), and summarises where requests ran, accuracy, agreement with the
// unsplit model, latency and bytes.
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <iostream>
#include <map>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/manifest.h"
#include "cleave/common/progress.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/text_table.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/device/pipeline.h"
#include "cleave/device/runtime.h"
#include "common/src/trust_flags.h"
#include "nlohmann/json.hpp"

namespace {

constexpr std::array<const char*, 10> kFashionClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct RunOptions {
  std::string bundle, data = cleave::common::kFashionMnistDir, inputs, reference;
  std::vector<std::string> edges;
  std::string load_balancing;
  std::string cut;
  cleave::common::TrustOptions trust;
  std::string bundle_key;
  int device_segments = 0;
  int64_t limit = 1000;
  int show = 5;
  int deadline_ms = 1000;
  int in_flight = 1;
  int threads = 2;
  double device_slowdown = 1.0;
  std::string telemetry_json, telemetry_prometheus;
  bool json = false;
  bool no_fallback = false;
  bool no_optimize = false;
};

// Resolves --cut as the user typed it: a cut id, or a cut name from the bundle's manifest.
absl::StatusOr<int> ResolveCut(const std::string& bundle_dir, const std::string& reference) {
  int id = 0;
  if (absl::SimpleAtoi(reference, &id)) return id;
  const std::string path = (std::filesystem::path(bundle_dir) / "manifest.json").string();
  CLEAVE_ASSIGN_OR_RETURN(std::string json,
                          cleave::common::ReadFile(path, cleave::common::kMaxTextFileBytes));
  CLEAVE_ASSIGN_OR_RETURN(auto manifest, cleave::common::BundleManifest::FromJson(json, path));
  if (const auto* cut = manifest.FindCutNamed(reference)) return cut->id;
  std::vector<std::string> names;
  for (const cleave::common::CutInfo& cut : manifest.cuts) {
    names.push_back(absl::StrCat(cut.name, " (", cut.id, ")"));
  }
  return absl::InvalidArgumentError(absl::StrCat("--cut ", reference, ": bundle ", bundle_dir,
                                                 " has no such cut; its cuts are ",
                                                 absl::StrJoin(names, ", ")));
}

// The frames to run: images (and labels when known), one sample per row.
struct Inputs {
  at::Tensor images;
  std::optional<at::Tensor> labels;
};

// Reads every *.frame file in `dir` (sorted by name), each one tensor frame [1, ...] or [...]
// of the same shape, and stacks them.
absl::StatusOr<Inputs> LoadFrameFolder(const std::string& dir, int64_t limit) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(dir, error)) {
    return absl::NotFoundError(absl::StrCat("--inputs ", dir, " is not a folder"));
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".frame") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) return absl::NotFoundError(absl::StrCat(dir, " holds no *.frame files"));
  if (static_cast<int64_t>(files.size()) > limit) files.resize(limit);
  std::vector<at::Tensor> tensors;
  for (const fs::path& file : files) {
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, cleave::common::ReadFile(file.string()));
    auto tensor = cleave::common::DecodeFrame(bytes);
    if (!tensor.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), ": ", tensor.status().message()));
    }
    at::Tensor sample = tensor->dim() > 0 && tensor->size(0) == 1 ? tensor->squeeze(0) : *tensor;
    if (!tensors.empty() && sample.sizes() != tensors.front().sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          file.string(), " holds a tensor of shape ",
          cleave::common::FormatShape(sample.sizes().vec()), " but ", files.front().string(),
          " one of shape ", cleave::common::FormatShape(tensors.front().sizes().vec())));
    }
    tensors.push_back(sample);
  }
  return Inputs{at::stack(tensors), std::nullopt};
}

absl::StatusOr<Inputs> LoadInputs(const RunOptions& run) {
  if (!run.inputs.empty()) return LoadFrameFolder(run.inputs, run.limit);
  CLEAVE_ASSIGN_OR_RETURN(auto data, cleave::common::LoadFashionMnist(run.data, "t10k", run.limit));
  return Inputs{data.images, data.labels};
}

// The unsplit model's predicted class for every input, in batches.
absl::StatusOr<at::Tensor> ReferencePredictions(const std::string& path, const at::Tensor& images) {
  CLEAVE_ASSIGN_OR_RETURN(torch::jit::Module model, cleave::common::LoadTorchScript(path));
  c10::InferenceMode inference;
  std::vector<at::Tensor> predictions;
  for (int64_t begin = 0; begin < images.size(0); begin += 256) {
    const at::Tensor batch = images.slice(0, begin, std::min(begin + 256, images.size(0)));
    try {
      predictions.push_back(model.forward({batch}).toTensor().argmax(1));
    } catch (const c10::Error& error) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--reference ", path, " rejects the inputs: ", error.what_without_backtrace()));
    }
  }
  return at::cat(predictions);
}

struct Tally {
  int64_t done = 0, failed = 0, correct = 0, labelled = 0, agree = 0, compared = 0;
  uint64_t bytes = 0;
  std::map<std::string, int64_t> placements;
  std::map<std::string, int64_t> cuts;  // where edge requests were cut, or exits answered
  std::vector<double> latencies;
  std::vector<int64_t> predictions;  // the predicted class per input, -1 for a failed one
  std::string first_error;
};

void ShowRequest(int64_t index, const cleave::device::Result& result, int64_t predicted,
                 std::optional<int64_t> label) {
  const std::string where = result.exit_cut ? absl::StrFormat("exit at cut %d, confidence %.3f",
                                                              *result.exit_cut, result.confidence)
                                            : absl::StrFormat("cut %d", result.cut_id);
  const auto name = [](int64_t c) { return c >= 0 && c < 10 ? kFashionClasses[c] : ""; };
  std::string line = absl::StrFormat(
      "request %lld: ran on %s (%s), predicted %d %s", static_cast<long long>(index + 1),
      cleave::device::PlacementName(result.placement), where, predicted, name(predicted));
  if (label) absl::StrAppendFormat(&line, ", label %d %s", *label, name(*label));
  absl::StrAppendFormat(&line, ", %.2f ms", result.timings.total_ms);
  std::cout << line << "\n";
  if (!result.fallback_reason.empty())
    std::cout << "  fallback: " << result.fallback_reason << "\n";
}

nlohmann::json Summarize(const RunOptions& run, const cleave::device::Runtime& runtime,
                         const Tally& tally, int64_t count, double seconds) {
  const auto share = [](int64_t part, int64_t whole) {
    return whole > 0 ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
  };
  const cleave::device::LinkEstimate link = runtime.link();
  nlohmann::json summary = {
      {"bundle_id", runtime.bundle().id()},
      {"edges", run.edges},
      {"requests", count},
      {"failed", tally.failed},
      {"in_flight", run.in_flight},
      {"requests_per_second", seconds > 0 ? static_cast<double>(tally.done) / seconds : 0.0},
      {"latency_ms",
       {{"p50", cleave::common::Percentile(tally.latencies, 0.50)},
        {"p95", cleave::common::Percentile(tally.latencies, 0.95)},
        {"p99", cleave::common::Percentile(tally.latencies, 0.99)}}},
      {"bytes_per_request", share(static_cast<int64_t>(tally.bytes), tally.done)},
      {"placements", tally.placements},
      {"cuts", tally.cuts},
      {"link_estimate", {{"rtt_ms", link.rtt_ms}, {"mbit_per_s", link.bytes_per_ms * 8e-3}}},
  };
  summary["predictions"] = tally.predictions;
  if (tally.labelled > 0) summary["accuracy"] = share(tally.correct, tally.labelled);
  if (tally.compared > 0) summary["agreement_with_unsplit"] = share(tally.agree, tally.compared);
  if (!tally.first_error.empty()) summary["first_error"] = tally.first_error;
  return summary;
}

void PrintSummary(const nlohmann::json& summary, const Tally& tally) {
  cleave::common::TextTable table({"metric", "value"});
  const int64_t count = summary["requests"];
  table.AddRow(
      {"requests",
       absl::StrCat(count, tally.failed > 0 ? absl::StrCat(" (", tally.failed, " failed)") : "")});
  if (summary.contains("accuracy")) {
    table.AddRow(
        {"accuracy", absl::StrFormat("%.2f%%", 100.0 * summary["accuracy"].get<double>())});
  }
  if (summary.contains("agreement_with_unsplit")) {
    table.AddRow(
        {"agreement with unsplit model",
         absl::StrFormat("%.2f%%", 100.0 * summary["agreement_with_unsplit"].get<double>())});
  }
  for (const auto& [where, n] : tally.placements) {
    table.AddRow({absl::StrCat("ran on ", where),
                  absl::StrFormat("%lld (%.1f%%)", static_cast<long long>(n),
                                  100.0 * static_cast<double>(n) / static_cast<double>(count))});
  }
  for (const auto& [cut, n] : tally.cuts) {
    table.AddRow({cut, absl::StrCat(n)});
  }
  const auto& latency = summary["latency_ms"];
  table.AddRow({"latency p50 / p95 / p99",
                absl::StrFormat("%.2f / %.2f / %.2f ms", latency["p50"].get<double>(),
                                latency["p95"].get<double>(), latency["p99"].get<double>())});
  table.AddRow(
      {"requests/s", absl::StrFormat("%.1f", summary["requests_per_second"].get<double>())});
  table.AddRow({"bytes sent per request",
                absl::StrFormat("%.0f", summary["bytes_per_request"].get<double>())});
  std::cout << table.Render();
  if (!tally.first_error.empty()) std::cout << "first error: " << tally.first_error << "\n";
}

// Long on purpose: every flag copied into RuntimeOptions in one place, then the loop and the
// report; split, the flags would be scattered from the options they set.
absl::Status Run(const RunOptions& run) {
  cleave::device::RuntimeOptions options;
  options.edges = run.edges;
  options.edge_client.load_balancing = run.load_balancing;
  if (!run.cut.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(options.offload_cut, ResolveCut(run.bundle, run.cut));
  }
  if (run.device_segments > 0) options.device_segments = run.device_segments;
  options.deadline = std::chrono::milliseconds(run.deadline_ms);
  options.local_fallback = !run.no_fallback;
  options.threads = static_cast<size_t>(run.threads);
  options.device_slowdown = run.device_slowdown;
  options.optimize_segments = !run.no_optimize;
  options.trust = run.trust;
  options.bundle_key_file = run.bundle_key;
  CLEAVE_ASSIGN_OR_RETURN(auto runtime, cleave::device::Runtime::Create(run.bundle, options));
  CLEAVE_ASSIGN_OR_RETURN(Inputs inputs, LoadInputs(run));
  std::optional<at::Tensor> expected;
  if (!run.reference.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(expected, ReferencePredictions(run.reference, inputs.images));
  }

  const int64_t count = inputs.images.size(0);
  Tally tally;
  tally.predictions.assign(static_cast<size_t>(count), -1);
  cleave::common::ProgressBar bar("requests", count);
  // Results arrive in order on runtime threads; the tally is theirs until Drain returns.
  auto on_result = [&](uint64_t sequence, absl::StatusOr<cleave::device::Result> result) {
    const int64_t i = static_cast<int64_t>(sequence);
    if (!result.ok()) {
      ++tally.failed;
      if (tally.first_error.empty()) tally.first_error = std::string(result.status().message());
    } else {
      ++tally.done;
      const int64_t predicted = result->outputs.at(0).argmax(1).item<int64_t>();
      tally.predictions[static_cast<size_t>(i)] = predicted;
      std::optional<int64_t> label;
      if (inputs.labels) {
        label = (*inputs.labels)[i].item<int64_t>();
        tally.correct += predicted == *label;
        ++tally.labelled;
      }
      if (expected) {
        tally.agree += predicted == (*expected)[i].item<int64_t>();
        ++tally.compared;
      }
      ++tally.placements[cleave::device::PlacementName(result->placement)];
      if (result->placement == cleave::device::Placement::kEdge) {
        ++tally.cuts[absl::StrCat("offloaded at cut ", result->cut_id)];
      } else if (result->exit_cut) {
        ++tally.cuts[absl::StrCat("answered by exit ", *result->exit_cut)];
      }
      tally.latencies.push_back(result->timings.total_ms);
      tally.bytes += result->bytes_sent;
      if (i < run.show && !run.json) ShowRequest(i, *result, predicted, label);
    }
    bar.Update(i + 1, tally.labelled > 0
                          ? absl::StrFormat("acc %.2f%%", 100.0 * tally.correct / tally.labelled)
                          : "");
  };
  const auto start = std::chrono::steady_clock::now();
  {
    cleave::device::Pipeline pipeline(runtime.get(), static_cast<size_t>(run.in_flight), on_result);
    for (int64_t i = 0; i < count; ++i) {
      CLEAVE_RETURN_IF_ERROR(pipeline.Submit(inputs.images.slice(0, i, i + 1)).status());
    }
    pipeline.Drain();
  }
  bar.Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const nlohmann::json summary = Summarize(run, *runtime, tally, count, seconds);
  if (run.json) {
    std::cout << summary.dump(2) << "\n";
  } else {
    PrintSummary(summary, tally);
  }
  if (!run.telemetry_json.empty()) {
    CLEAVE_RETURN_IF_ERROR(
        cleave::common::WriteFileAtomically(run.telemetry_json, runtime->TelemetryJson()));
  }
  if (!run.telemetry_prometheus.empty()) {
    CLEAVE_RETURN_IF_ERROR(cleave::common::WriteFileAtomically(run.telemetry_prometheus,
                                                               runtime->TelemetryPrometheus()));
  }
  if (tally.failed > 0) {
    return absl::UnavailableError(absl::StrCat(tally.failed, " of ", count, " requests failed"));
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cleave-device: run a split model over Fashion-MNIST test images or tensor frames"};
  RunOptions run;
  app.add_option("--bundle", run.bundle, "bundle folder")->required();
  app.add_option("--edge", run.edges,
                 "edge address host:port, or any gRPC target; repeat for failover in order "
                 "(none: all on the device)");
  app.add_option("--load-balancing", run.load_balancing,
                 "gRPC load balancing over the addresses an edge target resolves to")
      ->check(CLI::IsMember({"", "pick_first", "round_robin"}));
  app.add_option("--cut", run.cut,
                 "always offload at this cut (id or name; default: adaptive, from the live "
                 "estimates)");
  app.add_option("--device-segments", run.device_segments,
                 "the device holds only the first N segments (default: all)")
      ->check(CLI::PositiveNumber);
  app.add_option("--data", run.data, "Fashion-MNIST folder")->default_val(run.data);
  app.add_option("--inputs", run.inputs,
                 "folder of *.frame tensor files to run instead of Fashion-MNIST");
  app.add_option("--limit", run.limit, "number of inputs")
      ->default_val(run.limit)
      ->check(CLI::PositiveNumber);
  app.add_option("--show", run.show, "print the first N requests")->default_val(run.show);
  app.add_option("--deadline-ms", run.deadline_ms, "per-request deadline")
      ->default_val(run.deadline_ms)
      ->check(CLI::PositiveNumber);
  app.add_option("--in-flight", run.in_flight,
                 "frames processed at once (pipelining: the next frame's device segments run "
                 "during the previous frame's round trip)")
      ->default_val(run.in_flight)
      ->check(CLI::Range(1, 1024));
  app.add_option("--threads", run.threads, "device threads running segments")
      ->default_val(run.threads)
      ->check(CLI::Range(1, 64));
  app.add_option("--device-slowdown", run.device_slowdown,
                 "emulate a device this many times slower (evaluations only)")
      ->default_val(run.device_slowdown)
      ->check(CLI::Range(1.0, 1000.0));
  app.add_option("--reference", run.reference, "unsplit TorchScript model to compare against");
  app.add_option("--telemetry-json", run.telemetry_json, "write the runtime's telemetry (JSON)");
  app.add_option("--telemetry-prometheus", run.telemetry_prometheus,
                 "write the runtime's telemetry (Prometheus text)");
  app.add_flag("--no-fallback", run.no_fallback, "fail instead of finishing on the device");
  app.add_flag("--no-optimize", run.no_optimize,
               "run segments as stored (no conv-bn folding / oneDNN rewrite at load)");
  app.add_flag("--json", run.json, "print the summary as JSON");
  cleave::common::TrustFlags trust;
  trust.AddTo(app);
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(1);
  absl::Status status = trust.ApplyTo(app, &run.trust, &run.bundle_key);
  if (status.ok()) status = Run(run);
  if (!status.ok()) {
    std::cerr << "cleave-device: error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
