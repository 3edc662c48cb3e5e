// cleave-device: runs a bundle over Fashion-MNIST test images against an edge, the way a
// robot would (one image at a time through cleave::device::Runtime), and summarises where
// requests ran, accuracy, agreement with the unsplit model, and latency.
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <array>
#include <iostream>
#include <map>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/progress.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/text_table.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/device/runtime.h"
#include "nlohmann/json.hpp"

namespace {

constexpr std::array<const char*, 10> kFashionClasses = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

struct RunOptions {
  std::string bundle, edge, data = cleave::common::kFashionMnistDir, reference;
  int cut = -1;
  int64_t limit = 1000;
  int show = 5;
  int deadline_ms = 1000;
  bool json = false;
  bool no_fallback = false;
};

absl::Status Run(const RunOptions& run) {
  cleave::device::RuntimeOptions options;
  options.edge = run.edge;
  if (run.cut >= 0) options.offload_cut = run.cut;
  options.deadline = std::chrono::milliseconds(run.deadline_ms);
  options.local_fallback = !run.no_fallback;
  CLEAVE_ASSIGN_OR_RETURN(auto runtime, cleave::device::Runtime::Create(run.bundle, options));
  CLEAVE_ASSIGN_OR_RETURN(auto data, cleave::common::LoadFashionMnist(run.data, "t10k", run.limit));
  std::optional<torch::jit::Module> reference;
  if (!run.reference.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(reference, cleave::common::LoadTorchScript(run.reference));
  }

  const int64_t count = data.images.size(0);
  int64_t correct = 0, agree = 0, failed = 0;
  uint64_t bytes = 0;
  std::map<std::string, int64_t> placements;
  std::vector<double> latencies;
  std::string first_error;
  cleave::common::ProgressBar bar("requests", count);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < count; ++i) {
    const at::Tensor image = data.images.slice(0, i, i + 1);
    const int64_t label = data.labels[i].item<int64_t>();
    auto result = runtime->Infer(image);
    if (!result.ok()) {
      ++failed;
      if (first_error.empty()) first_error = std::string(result.status().message());
      continue;
    }
    const int64_t predicted = result->outputs.at(0).argmax(1).item<int64_t>();
    correct += predicted == label;
    if (reference.has_value()) {
      c10::InferenceMode inference;
      const int64_t expected = reference->forward({image}).toTensor().argmax(1).item<int64_t>();
      agree += predicted == expected;
    }
    ++placements[cleave::device::PlacementName(result->placement)];
    latencies.push_back(result->timings.total_ms);
    bytes += result->bytes_sent;
    if (i < run.show && !run.json) {
      const std::string where = result->exit_cut
                                    ? absl::StrFormat("exit at cut %d, confidence %.3f",
                                                      *result->exit_cut, result->confidence)
                                    : absl::StrFormat("cut %d", result->cut_id);
      std::cout << absl::StrFormat(
          "request %lld: ran on %s (%s), predicted %d %s, label %d %s, %.2f ms\n",
          static_cast<long long>(i + 1), cleave::device::PlacementName(result->placement), where,
          predicted, kFashionClasses[predicted], label, kFashionClasses[label],
          result->timings.total_ms);
      if (!result->fallback_reason.empty()) {
        std::cout << "  fallback: " << result->fallback_reason << "\n";
      }
    }
    bar.Update(i + 1, absl::StrFormat("acc %.2f%%", 100.0 * correct / (i + 1)));
  }
  bar.Finish();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t done = count - failed;

  nlohmann::json summary = {
      {"bundle_id", runtime->bundle().id()},
      {"edge", run.edge},
      {"requests", count},
      {"failed", failed},
      {"accuracy", done > 0 ? static_cast<double>(correct) / done : 0.0},
      {"requests_per_second", seconds > 0 ? static_cast<double>(done) / seconds : 0.0},
      {"latency_ms",
       {{"p50", cleave::common::Percentile(latencies, 0.50)},
        {"p95", cleave::common::Percentile(latencies, 0.95)},
        {"p99", cleave::common::Percentile(latencies, 0.99)}}},
      {"bytes_per_request", done > 0 ? static_cast<double>(bytes) / done : 0.0},
      {"placements", placements},
  };
  if (reference.has_value()) {
    summary["agreement_with_unsplit"] = done > 0 ? static_cast<double>(agree) / done : 0.0;
  }
  if (!first_error.empty()) summary["first_error"] = first_error;
  if (run.json) {
    std::cout << summary.dump(2) << "\n";
  } else {
    cleave::common::TextTable table({"metric", "value"});
    table.AddRow({"requests",
                  absl::StrCat(count, failed > 0 ? absl::StrCat(" (", failed, " failed)") : "")});
    table.AddRow(
        {"accuracy", absl::StrFormat("%.2f%%", 100.0 * summary["accuracy"].get<double>())});
    if (reference.has_value()) {
      table.AddRow(
          {"agreement with unsplit model",
           absl::StrFormat("%.2f%%", 100.0 * summary["agreement_with_unsplit"].get<double>())});
    }
    for (const auto& [where, n] : placements)
      table.AddRow({absl::StrCat("ran on ", where), absl::StrCat(n)});
    table.AddRow(
        {"latency p50 / p95 / p99",
         absl::StrFormat("%.2f / %.2f / %.2f ms", cleave::common::Percentile(latencies, 0.5),
                         cleave::common::Percentile(latencies, 0.95),
                         cleave::common::Percentile(latencies, 0.99))});
    table.AddRow(
        {"requests/s", absl::StrFormat("%.1f", summary["requests_per_second"].get<double>())});
    table.AddRow({"bytes sent per request",
                  absl::StrFormat("%.0f", summary["bytes_per_request"].get<double>())});
    std::cout << table.Render();
    if (!first_error.empty()) std::cout << "first error: " << first_error << "\n";
  }
  if (failed > 0) {
    return absl::UnavailableError(absl::StrCat(failed, " of ", count, " requests failed"));
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cleave-device: run a split model over Fashion-MNIST test images"};
  RunOptions run;
  app.add_option("--bundle", run.bundle, "bundle folder")->required();
  app.add_option("--edge", run.edge, "edge address host:port (none: all on the device)");
  app.add_option("--cut", run.cut, "offload cut id (default: the bundle's first cut)");
  app.add_option("--data", run.data, "Fashion-MNIST folder")->default_val(run.data);
  app.add_option("--limit", run.limit, "number of test images")
      ->default_val(run.limit)
      ->check(CLI::PositiveNumber);
  app.add_option("--show", run.show, "print the first N requests")->default_val(run.show);
  app.add_option("--deadline-ms", run.deadline_ms, "per-request deadline for the edge")
      ->default_val(run.deadline_ms)
      ->check(CLI::PositiveNumber);
  app.add_option("--reference", run.reference, "unsplit TorchScript model to compare against");
  app.add_flag("--no-fallback", run.no_fallback, "fail instead of finishing on the device");
  app.add_flag("--json", run.json, "print the summary as JSON");
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(1);
  if (absl::Status status = Run(run); !status.ok()) {
    std::cerr << "cleave-device: error: " << status.message() << "\n";
    return 1;
  }
  return 0;
}
