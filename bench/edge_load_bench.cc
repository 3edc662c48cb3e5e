// Edge server benchmark: requests/s and latency of a running cleave-edge (a separate process)
// on the back segments of a bundle, driven by many concurrent device streams over loopback,
// next to the limit measured in the same run — a plain in-process LibTorch forward of the same
// segments at the same batch sizes, on as many threads as the edge has workers — and to the
// same load on an edge with batching off. The activations are real: the bundle's own front
// segments run on Fashion-MNIST test images (or seeded random inputs of the bundle's input
// shape) and are encoded with the cut's codec, as a device would send them.
//
// "Added latency" is what the client observes minus the edge's compute (ServerTimings): the
// transport, queueing, frame decode/encode and the hand-offs between threads.
//
//   edge_load_bench --bundle DIR --edge HOST:PORT [--edge-unbatched HOST:PORT] [--cut C]
//       [--inputs fashion-mnist|random] [--frames 256] [--loads 1x1,16x1,64x1]
//       [--warmup-s 1] [--duration-s 5] [--forward-batch-sizes 1,8,32]
//       [--forward-threads 2] [--intra-op-threads 1] [--json FILE]
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <set>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_report.h"
#include "bench/edge_load_generator.h"
#include "cleave/common/bundle.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/machine.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/text_table.h"

namespace {

using cleave::bench::LoadGenerator;
using cleave::bench::LoadResult;
using cleave::bench::LoadSpec;
using cleave::common::Bundle;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// The goals of the "Edge server" issue.
constexpr double kThroughputTarget = 0.90;     // served / plain batched forward
constexpr double kAddedLatencyTargetMs = 0.2;  // p50, one stream, one request in flight

struct BenchOptions {
  std::string bundle, cut, edge, edge_unbatched, inputs = "fashion-mnist",
                                                 data = cleave::common::kFashionMnistDir;
  std::string json_path = "edge_load_bench.json";
  int64_t frames = 256;
  std::vector<std::string> loads = {"1x1", "16x1", "64x1"};
  double warmup_s = 1, duration_s = 5, forward_s = 2;
  std::vector<int> forward_batch_sizes = {1, 8, 32};
  int forward_threads = 2, intra_op_threads = 1;
};

// The activations a device would send at `cut_id`: `inputs` run through the segments before
// it, one frame per sample, encoded with the codec the bundle records for the cut.
absl::StatusOr<std::vector<std::string>> EncodeActivations(const Bundle& bundle, int cut_id,
                                                           size_t first_edge_segment,
                                                           const at::Tensor& inputs) {
  at::Tensor activations = inputs;
  if (first_edge_segment > 0) {
    std::vector<at::Tensor> parts;
    for (int64_t begin = 0; begin < inputs.size(0); begin += 32) {
      CLEAVE_ASSIGN_OR_RETURN(
          c10::IValue out,
          bundle.RunSegments(0, first_edge_segment - 1,
                             {inputs.slice(0, begin, std::min(inputs.size(0), begin + 32))}));
      parts.push_back(out.toTensor());
    }
    activations = at::cat(parts, 0);
  }
  const cleave::common::CodecSpec codec = bundle.manifest().CodecAt(cut_id);
  std::vector<std::string> frames;
  for (int64_t i = 0; i < activations.size(0); ++i) {
    CLEAVE_ASSIGN_OR_RETURN(std::string frame,
                            cleave::common::EncodeFrame(activations.slice(0, i, i + 1), codec));
    frames.push_back(std::move(frame));
  }
  return frames;
}

absl::StatusOr<at::Tensor> LoadInputs(const Bundle& bundle, const BenchOptions& options) {
  if (options.inputs == "fashion-mnist") {
    CLEAVE_ASSIGN_OR_RETURN(auto test,
                            cleave::common::LoadFashionMnist(options.data, "t10k", options.frames));
    return test.images;
  }
  if (bundle.manifest().inputs.size() != 1) {
    return absl::InvalidArgumentError("--inputs random needs a bundle with exactly one input");
  }
  std::vector<int64_t> shape = bundle.manifest().inputs[0].shape;
  shape.at(0) = options.frames;
  torch::manual_seed(1);
  return at::randn(shape);
}

absl::StatusOr<int> ResolveCut(const Bundle& bundle, const std::string& text) {
  const auto& cuts = bundle.manifest().cuts;
  if (text.empty()) {
    if (cuts.empty()) return absl::InvalidArgumentError("the bundle has no cut to resume from");
    return cuts.front().id;
  }
  int id = 0;
  if (absl::SimpleAtoi(text, &id)) return id;
  if (const auto* cut = bundle.manifest().FindCutNamed(text)) return cut->id;
  return absl::InvalidArgumentError(
      absl::StrCat("cut '", text, "' is not a cut of bundle ", bundle.manifest().name));
}

json Quantiles(const std::vector<double>& values) {
  return {{"p50", cleave::common::Percentile(values, 0.50)},
          {"p95", cleave::common::Percentile(values, 0.95)},
          {"p99", cleave::common::Percentile(values, 0.99)},
          {"mean", cleave::common::Mean(values)}};
}

// A load run reduced to what the table and the JSON report show (times in microseconds).
json Summarize(const std::string& edge, const LoadSpec& spec, const LoadResult& result) {
  std::vector<double> latency, added, queue, compute, decode, encode;
  double forwards = 0;  // each request of a batch of b stands for 1/b of its forward
  for (const auto& sample : result.samples) {
    latency.push_back(sample.latency_us);
    added.push_back(sample.latency_us - sample.compute_us);
    queue.push_back(sample.queue_us);
    compute.push_back(sample.compute_us);
    decode.push_back(sample.decode_us);
    encode.push_back(sample.encode_us);
    forwards += 1.0 / std::max<uint32_t>(1, sample.batch_size);
  }
  const double answered = static_cast<double>(result.samples.size());
  json summary = {{"edge", edge},
                  {"load", spec.Label()},
                  {"streams", spec.streams},
                  {"in_flight", spec.rate > 0 ? json() : json(spec.in_flight)},
                  {"rate", spec.rate > 0 ? json(spec.rate) : json()},
                  {"answered", result.samples.size()},
                  {"errors", result.errors},
                  {"seconds", result.seconds},
                  {"requests_per_s", answered / result.seconds},
                  {"mean_batch", forwards > 0 ? answered / forwards : 0.0},
                  {"latency_us", Quantiles(latency)},
                  {"added_latency_us", Quantiles(added)},
                  {"queue_us", Quantiles(queue)},
                  {"compute_us", Quantiles(compute)},
                  {"decode_us", Quantiles(decode)},
                  {"encode_us", Quantiles(encode)}};
  if (!result.first_error.empty()) summary["first_error"] = result.first_error;
  return summary;
}

// The limit: `threads` threads each running the edge's segments on `batch` decoded
// activations back to back (as the edge's workers would with nothing else to do), for at
// least `seconds` and three forwards each, after one warm-up forward per thread.
absl::StatusOr<json> MeasurePlainForward(const Bundle& bundle, size_t first_segment,
                                         const std::vector<at::Tensor>& activations, int batch,
                                         int threads, double seconds) {
  const size_t last = bundle.num_loaded_segments() - 1;
  std::vector<std::vector<double>> times(threads);  // per thread: seconds per forward
  std::vector<absl::Status> statuses(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      at::init_num_threads();  // as the edge's workers do
      std::vector<at::Tensor> parts;
      for (int i = 0; i < batch; ++i) {
        parts.push_back(activations[(static_cast<size_t>(t) * batch + i) % activations.size()]);
      }
      const at::Tensor input = at::cat(parts, 0);
      statuses[t] = bundle.RunSegments(first_segment, last, {input}).status();
      const Clock::time_point start = Clock::now();
      while (statuses[t].ok() &&
             (times[t].size() < 3 ||
              std::chrono::duration<double>(Clock::now() - start).count() < seconds)) {
        const Clock::time_point forward_start = Clock::now();
        statuses[t] = bundle.RunSegments(first_segment, last, {input}).status();
        times[t].push_back(std::chrono::duration<double>(Clock::now() - forward_start).count());
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  double requests_per_s = 0;
  std::vector<double> all;
  for (int t = 0; t < threads; ++t) {
    CLEAVE_RETURN_IF_ERROR(statuses[t]);
    double busy = 0;
    for (double time : times[t]) busy += time;
    requests_per_s += static_cast<double>(times[t].size() * batch) / busy;
    all.insert(all.end(), times[t].begin(), times[t].end());
  }
  return json{{"batch", batch},
              {"threads", threads},
              {"forwards", all.size()},
              {"requests_per_s", requests_per_s},
              {"forward_ms_p50", 1000 * cleave::common::Percentile(all, 0.5)}};
}

int RoundedBatch(const json& load) {
  return std::max(1, static_cast<int>(std::lround(load["mean_batch"].get<double>())));
}

const json* FindForward(const std::vector<json>& forwards, int batch) {
  for (const json& forward : forwards) {
    if (forward["batch"] == batch) return &forward;
  }
  return nullptr;
}

std::string Fixed(const json& value, int digits) {
  return absl::StrFormat("%.*f", digits, value.get<double>());
}

// Microseconds in a report as milliseconds in a table.
std::string Millis(const json& micros) { return Fixed(micros.get<double>() / 1000, 3); }

// Long on purpose: the measurement protocol in the order it runs (plain forward, transport
// floor, each load against each edge, the table), so it can be checked step by step against
// docs/PERFORMANCE.md; split, its steps would pass the whole report between them.
absl::Status Run(const BenchOptions& options, json* report) {
  at::set_num_threads(options.intra_op_threads);
  // The plain forward runs the segments as the edge does: optimized for inference.
  Bundle::LoadOptions load;
  load.optimize_for_inference = true;
  CLEAVE_ASSIGN_OR_RETURN(std::shared_ptr<const Bundle> bundle, Bundle::Load(options.bundle, load));
  CLEAVE_ASSIGN_OR_RETURN(const int cut_id, ResolveCut(*bundle, options.cut));
  CLEAVE_ASSIGN_OR_RETURN(const size_t first_segment, bundle->SegmentStartingAt(cut_id));
  CLEAVE_ASSIGN_OR_RETURN(const at::Tensor inputs, LoadInputs(*bundle, options));
  CLEAVE_ASSIGN_OR_RETURN(std::vector<std::string> frames,
                          EncodeActivations(*bundle, cut_id, first_segment, inputs));
  std::vector<at::Tensor> activations;  // exactly what the edge decodes
  double frame_bytes = 0;
  for (const std::string& frame : frames) {
    CLEAVE_ASSIGN_OR_RETURN(at::Tensor activation, cleave::common::DecodeFrame(frame));
    activations.push_back(std::move(activation));
    frame_bytes += static_cast<double>(frame.size()) / static_cast<double>(frames.size());
  }
  std::vector<LoadSpec> specs;
  int max_streams = 1;
  for (const std::string& text : options.loads) {
    CLEAVE_ASSIGN_OR_RETURN(LoadSpec spec, LoadSpec::Parse(text));
    max_streams = std::max(max_streams, spec.streams);
    specs.push_back(spec);
  }
  const cleave::common::CutInfo* cut = bundle->manifest().FindCut(cut_id);
  const cleave::common::CodecSpec codec = bundle->manifest().CodecAt(cut_id);
  (*report)["bundle"] = {{"dir", options.bundle},
                         {"name", bundle->manifest().name},
                         {"id", bundle->id()},
                         {"cut_id", cut_id},
                         {"cut", cut != nullptr ? cut->name : "input"},
                         {"activation_shape", activations.front().sizes().vec()},
                         {"codec", cleave::common::CodecName(codec.codec)},
                         {"zstd_level", codec.zstd_level},
                         {"mean_frame_bytes", frame_bytes}};
  (*report)["inputs"] = {{"kind", options.inputs}, {"frames", frames.size()}};
  (*report)["settings"] = {{"warmup_s", options.warmup_s},
                           {"duration_s", options.duration_s},
                           {"forward_threads", options.forward_threads},
                           {"intra_op_threads", options.intra_op_threads},
                           {"edge", options.edge},
                           {"edge_unbatched", options.edge_unbatched}};

  // Load on each edge, one load at a time.
  const LoadGenerator::Request request{bundle->id(), cut_id, frames};
  std::vector<std::pair<std::string, std::string>> edges = {{"batching", options.edge}};
  if (!options.edge_unbatched.empty()) edges.emplace_back("no batching", options.edge_unbatched);
  std::vector<json> loads;
  for (const auto& [edge, target] : edges) {
    CLEAVE_ASSIGN_OR_RETURN(auto generator, LoadGenerator::Connect(target, max_streams, request));
    for (const LoadSpec& spec : specs) {
      std::cerr << "load " << spec.Label() << " on the edge with " << edge << "\n";
      CLEAVE_ASSIGN_OR_RETURN(
          LoadResult result,
          generator->Run(spec, std::chrono::milliseconds(std::lround(1000 * options.warmup_s)),
                         std::chrono::milliseconds(std::lround(1000 * options.duration_s))));
      loads.push_back(Summarize(edge, spec, result));
    }
  }

  // The transport alone, measured the same way: requests with the same frames for a bundle
  // the edge does not have, answered NOT_FOUND after parsing and a lookup — no queue, decode
  // or compute. Its latency is the floor under "added", its rate the ceiling over "served".
  const LoadGenerator::Request floor_request{"transport-floor-unknown-bundle", cut_id, frames,
                                             static_cast<int>(absl::StatusCode::kNotFound)};
  std::vector<json> floors;
  {
    CLEAVE_ASSIGN_OR_RETURN(auto generator,
                            LoadGenerator::Connect(options.edge, max_streams, floor_request));
    for (const LoadSpec& spec : specs) {
      std::cerr << "load " << spec.Label() << ", transport floor\n";
      CLEAVE_ASSIGN_OR_RETURN(
          LoadResult result,
          generator->Run(spec, std::chrono::milliseconds(std::lround(1000 * options.warmup_s)),
                         std::chrono::milliseconds(std::lround(1000 * options.duration_s))));
      floors.push_back(Summarize("transport floor", spec, result));
    }
  }
  auto floor_for = [&](const json& load) -> const json* {
    for (const json& floor : floors) {
      if (floor["load"] == load["load"]) return &floor;
    }
    return nullptr;
  };

  // The limit, at the fixed batch sizes and at every mean batch size the edge reached.
  std::set<int> batch_sizes(options.forward_batch_sizes.begin(), options.forward_batch_sizes.end());
  for (const json& load : loads) batch_sizes.insert(RoundedBatch(load));
  std::vector<json> forwards;
  for (int batch : batch_sizes) {
    std::cerr << "plain forward, batch " << batch << "\n";
    CLEAVE_ASSIGN_OR_RETURN(json forward,
                            MeasurePlainForward(*bundle, first_segment, activations, batch,
                                                options.forward_threads, options.forward_s));
    forwards.push_back(std::move(forward));
  }

  // Ratios measured in this run.
  cleave::common::TextTable table({"edge", "load", "req/s", "p50 ms", "p95 ms", "p99 ms",
                                   "added p50 ms", "above floor", "queue p50 ms", "decode p50 ms",
                                   "compute p50 ms", "batch", "plain req/s", "served/plain",
                                   "served/transport", "on/off", "errors"});
  for (json& load : loads) {
    const int batch = RoundedBatch(load);
    const double plain = (*FindForward(forwards, batch))["requests_per_s"];
    load["plain_batch"] = batch;
    load["plain_requests_per_s"] = plain;
    load["served_vs_plain"] = load["requests_per_s"].get<double>() / plain;
    std::string above_floor, served_vs_transport;
    if (const json* floor = floor_for(load); floor != nullptr) {
      load["added_above_floor_us_p50"] = load["added_latency_us"]["p50"].get<double>() -
                                         (*floor)["latency_us"]["p50"].get<double>();
      load["served_vs_transport"] =
          load["requests_per_s"].get<double>() / (*floor)["requests_per_s"].get<double>();
      above_floor = Millis(load["added_above_floor_us_p50"]);
      served_vs_transport = Fixed(load["served_vs_transport"], 2);
    }
    std::string on_off;
    for (const json& other : loads) {
      if (load["edge"] == "batching" && other["edge"] == "no batching" &&
          other["load"] == load["load"]) {
        load["batching_on_vs_off"] =
            load["requests_per_s"].get<double>() / other["requests_per_s"].get<double>();
        on_off = Fixed(load["batching_on_vs_off"], 2) + "x";
      }
    }
    table.AddRow({load["edge"].get<std::string>(), load["load"].get<std::string>(),
                  Fixed(load["requests_per_s"], 1), Millis(load["latency_us"]["p50"]),
                  Millis(load["latency_us"]["p95"]), Millis(load["latency_us"]["p99"]),
                  Millis(load["added_latency_us"]["p50"]), above_floor,
                  Millis(load["queue_us"]["p50"]), Millis(load["decode_us"]["p50"]),
                  Millis(load["compute_us"]["p50"]), Fixed(load["mean_batch"], 1),
                  absl::StrCat(Fixed(plain, 1), " (b", batch, ")"),
                  Fixed(load["served_vs_plain"], 2), served_vs_transport, on_off,
                  absl::StrCat(load["errors"].get<int64_t>())});
  }
  for (const json& floor : floors) {
    table.AddRow({"transport floor", floor["load"].get<std::string>(),
                  Fixed(floor["requests_per_s"], 1), Millis(floor["latency_us"]["p50"]),
                  Millis(floor["latency_us"]["p95"]), Millis(floor["latency_us"]["p99"]), "", "",
                  "", "", "", "", "", "", "", "", absl::StrCat(floor["errors"].get<int64_t>())});
  }
  cleave::common::TextTable plain_table({"plain forward batch", "threads", "req/s", "ms/forward"});
  for (const json& forward : forwards) {
    plain_table.AddRow({absl::StrCat(forward["batch"].get<int>()),
                        absl::StrCat(forward["threads"].get<int>()),
                        Fixed(forward["requests_per_s"], 1), Fixed(forward["forward_ms_p50"], 3)});
  }

  // The targets: throughput at the heaviest closed-loop load with batching, added latency at
  // the lightest.
  const json* heaviest = nullptr;
  const json* lightest = nullptr;
  for (const json& load : loads) {
    if (load["edge"] != "batching" || load["rate"].is_number()) continue;
    const int outstanding = load["streams"].get<int>() * load["in_flight"].get<int>();
    if (heaviest == nullptr ||
        outstanding > (*heaviest)["streams"].get<int>() * (*heaviest)["in_flight"].get<int>()) {
      heaviest = &load;
    }
    if (lightest == nullptr ||
        outstanding < (*lightest)["streams"].get<int>() * (*lightest)["in_flight"].get<int>()) {
      lightest = &load;
    }
  }
  json targets = json::array();
  cleave::common::TextTable target_table({"target", "load", "measured", "goal", "met"});
  if (heaviest != nullptr) {
    const double ratio = (*heaviest)["served_vs_plain"];
    targets.push_back({{"target", "served / plain batched forward"},
                       {"load", (*heaviest)["load"]},
                       {"measured", ratio},
                       {"goal", kThroughputTarget},
                       {"met", ratio >= kThroughputTarget}});
    target_table.AddRow({"served / plain batched forward (batching)",
                         (*heaviest)["load"].get<std::string>(), Fixed(ratio, 2),
                         ">= " + Fixed(kThroughputTarget, 2),
                         ratio >= kThroughputTarget ? "yes" : "NO"});
  }
  if (lightest != nullptr) {
    const double added_ms = (*lightest)["added_latency_us"]["p50"].get<double>() / 1000;
    targets.push_back({{"target", "p50 added latency, ms"},
                       {"load", (*lightest)["load"]},
                       {"measured", added_ms},
                       {"goal", kAddedLatencyTargetMs},
                       {"met", added_ms <= kAddedLatencyTargetMs}});
    target_table.AddRow({"p50 added latency (batching)", (*lightest)["load"].get<std::string>(),
                         Fixed(added_ms, 3) + " ms",
                         "<= " + Fixed(kAddedLatencyTargetMs, 1) + " ms",
                         added_ms <= kAddedLatencyTargetMs ? "yes" : "NO"});
  }
  if (heaviest != nullptr && heaviest->contains("served_vs_transport")) {
    target_table.AddRow({"  served / transport ceiling (same load)",
                         (*heaviest)["load"].get<std::string>(),
                         Fixed((*heaviest)["served_vs_transport"], 2), "(context)", ""});
  }
  if (lightest != nullptr && lightest->contains("added_above_floor_us_p50")) {
    target_table.AddRow({"  added p50 above the transport floor",
                         (*lightest)["load"].get<std::string>(),
                         Millis((*lightest)["added_above_floor_us_p50"]) + " ms", "(context)", ""});
  }
  (*report)["loads"] = loads;
  (*report)["transport_floor"] = floors;
  (*report)["plain_forward"] = forwards;
  (*report)["targets"] = targets;

  std::cout << "bundle " << bundle->manifest().name << ", edge resumes at cut "
            << (*report)["bundle"]["cut"].get<std::string>() << " ("
            << cleave::common::FormatShape(activations.front().sizes().vec()) << ", "
            << (*report)["bundle"]["codec"].get<std::string>() << ", " << Fixed(frame_bytes, 0)
            << " bytes/frame); " << options.inputs << " inputs, " << options.duration_s
            << " s per load\n"
            << table.Render() << "\n"
            << plain_table.Render() << "\n"
            << target_table.Render()
            << "load SxK: S streams (one per device, own connection), K requests in flight each; "
               "S@R: R requests/s paced over S streams. added = client latency - edge compute. "
               "plain: in-process forward at the edge's mean batch (b), "
            << options.forward_threads
            << " threads. transport floor: the same frames for an unknown bundle, answered "
               "NOT_FOUND with no queue, decode or compute. The load generator shares the "
               "machine with the edge.\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edge_load_bench: cleave-edge throughput and latency against the plain forward"};
  BenchOptions options;
  app.add_option("--bundle", options.bundle, "bundle folder the edge serves")->required();
  app.add_option("--edge", options.edge, "host:port of a cleave-edge with batching")->required();
  app.add_option("--edge-unbatched", options.edge_unbatched,
                 "host:port of a cleave-edge with --max-batch-size 1, for the on/off ratio");
  app.add_option("--cut", options.cut, "cut id or name to resume from (default: the first)");
  app.add_option("--inputs", options.inputs, "fashion-mnist test images, or random")
      ->check(CLI::IsMember({"fashion-mnist", "random"}))
      ->default_val(options.inputs);
  app.add_option("--data", options.data, "Fashion-MNIST folder")->default_val(options.data);
  app.add_option("--frames", options.frames, "distinct activations to cycle through")
      ->check(CLI::PositiveNumber)
      ->default_val(options.frames);
  app.add_option("--loads", options.loads, "SxK (closed loop) or S@R (open loop), comma-separated")
      ->delimiter(',')
      ->default_str("1x1,16x1,64x1");
  app.add_option("--warmup-s", options.warmup_s, "unmeasured seconds before each load")
      ->default_val(options.warmup_s);
  app.add_option("--duration-s", options.duration_s, "measured seconds per load")
      ->check(CLI::PositiveNumber)
      ->default_val(options.duration_s);
  app.add_option("--forward-batch-sizes", options.forward_batch_sizes,
                 "batch sizes for the plain forward besides the ones the edge reached")
      ->delimiter(',')
      ->default_str("1,8,32");
  app.add_option("--forward-threads", options.forward_threads,
                 "threads of the plain forward: the edge's --workers")
      ->check(CLI::PositiveNumber)
      ->default_val(options.forward_threads);
  app.add_option("--forward-s", options.forward_s, "seconds per plain-forward batch size")
      ->default_val(options.forward_s);
  app.add_option("--intra-op-threads", options.intra_op_threads,
                 "LibTorch threads per forward: the edge's --intra-op-threads")
      ->check(CLI::PositiveNumber)
      ->default_val(options.intra_op_threads);
  app.add_option("--json", options.json_path, "where to write the JSON report")
      ->default_val(options.json_path);
  CLI11_PARSE(app, argc, argv);
  cleave::common::RetainFreedMemory();  // as cleave-edge does, so the plain forward is its peer

  json report = cleave::bench::ReportHeader("edge_load_bench", argc, argv);
  if (absl::Status status = Run(options, &report); !status.ok()) {
    std::cerr << "edge_load_bench: error: " << status.message() << "\n";
    return 1;
  }
  return cleave::bench::WriteJsonReport(report, options.json_path) ? 0 : 1;
}
