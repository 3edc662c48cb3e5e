// What the edge's metrics cost a request (docs/METRICS.md, "Cost"): the updates the batch
// runner makes for every request it answers (BundleMetrics: the request counter and latency
// histogram, queue and compute histograms, received and decoded bytes, and the batch-size
// histogram once per batch), from 1 and 2 threads at once on the same bundle's children as the
// edge's two workers do, against the cheapest step of the same request measured in the same
// run: decoding its frame (the reference model's cut after the stem, [1, 16, 28, 28] int8 +
// zstd1, about 3.5 KB, as the edge benchmark sends). Prints a table and writes JSON.
//
//   metrics_bench [--iterations N] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "bench/bench_report.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/metrics.h"
#include "cleave/edge_server/edge_metrics.h"

namespace cleave::bench {
namespace {

using Clock = std::chrono::steady_clock;

double NanosSince(Clock::time_point start) {
  return std::chrono::duration<double, std::nano>(Clock::now() - start).count();
}

// The updates of one request answered OK in a batch of `batch` (what BatchRunner records).
void RecordRequest(const edge_server::BundleMetrics& metrics, int cut, int i, int batch) {
  const double seconds = 1e-4 * (1 + i % 50);
  metrics.RecordBytes(3500, 50176);
  if (i % batch == 0) metrics.RecordBatch(batch);
  metrics.RecordComputed(seconds * 0.1, seconds * 0.8);
  metrics.RecordRequest(cut, absl::StatusCode::kOk, seconds);
}

// Nanoseconds per request with `threads` threads each recording `iterations` requests.
double MetricsNanos(const edge_server::BundleMetrics& metrics, int threads, int iterations) {
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&metrics, iterations] {
      for (int i = 0; i < iterations; ++i) RecordRequest(metrics, 5, i, 4);
    });
  }
  for (std::thread& worker : workers) worker.join();
  // Threads run side by side: the wall time per request each thread handled.
  return NanosSince(start) / iterations;
}

// Nanoseconds to decode the frame once (the request path's decode step), best of 5 rounds.
double DecodeNanos(const std::string& frame, int iterations) {
  auto parsed = common::ParseFrame(frame);
  std::vector<float> out(parsed->elements);
  double best = 1e300;
  for (int round = 0; round < 5; ++round) {
    const Clock::time_point start = Clock::now();
    for (int i = 0; i < iterations; ++i) {
      auto again = common::ParseFrame(frame);
      if (!again.ok() || !common::DecodePayload(*again, out.data()).ok()) std::abort();
    }
    best = std::min(best, NanosSince(start) / iterations);
  }
  return best;
}

}  // namespace
}  // namespace cleave::bench

int main(int argc, char** argv) {
  using namespace cleave;
  CLI::App app{"What the edge's per-request metric updates cost, against decoding its frame"};
  int iterations = 2000000;
  std::string json_path = "results/metrics_bench.json";
  app.add_option("--iterations", iterations, "requests recorded per thread")
      ->check(CLI::PositiveNumber);
  app.add_option("--json", json_path, "where to write the JSON report");
  CLI11_PARSE(app, argc, argv);

  // A ReLU-like activation of the reference model's stem cut, encoded as the device sends it.
  std::vector<float> activation(16 * 28 * 28);
  for (size_t i = 0; i < activation.size(); ++i) {
    activation[i] = std::max(0.0f, std::sin(0.05f * static_cast<float>(i)) * 2.0f);
  }
  const std::string frame =
      *common::EncodeFrameBytes({activation.data(), common::FrameDtype::kFloat32, {1, 16, 28, 28}},
                                {common::Codec::kInt8, 1, {}});
  const double decode_ns = bench::DecodeNanos(frame, 20000);

  common::MetricsRegistry registry;
  auto metrics = edge_server::EdgeMetrics::Create(&registry);
  if (!metrics.ok()) return 1;
  const std::unique_ptr<edge_server::BundleMetrics> bundle =
      (*metrics)->ForBundle("fashion", {-1, 5});
  nlohmann::json report = bench::ReportHeader("metrics_bench", argc, argv);
  report["frame_bytes"] = frame.size();
  report["decode_ns"] = decode_ns;
  std::printf("frame: %zu bytes, decode %.0f ns (best of 5 x 20000)\n\n", frame.size(), decode_ns);
  std::printf("| threads | metrics ns / request | decode ns / request | metrics / decode |\n");
  std::printf("|---:|---:|---:|---:|\n");
  for (int threads : {1, 2}) {
    bench::MetricsNanos(*bundle, threads, iterations / 10);  // warm-up
    double best = 1e300;
    for (int round = 0; round < 3; ++round) {
      best = std::min(best, bench::MetricsNanos(*bundle, threads, iterations));
    }
    std::printf("| %d | %.1f | %.0f | %.2f%% |\n", threads, best, decode_ns,
                100.0 * best / decode_ns);
    report["rows"].push_back({{"threads", threads},
                              {"metrics_ns_per_request", best},
                              {"metrics_over_decode", best / decode_ns}});
  }
  return bench::WriteJsonReport(report, json_path) ? 0 : 1;
}
