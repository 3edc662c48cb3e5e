// End-to-end evaluation of split execution over an emulated link, everything measured in one
// run: a cleave::device::Runtime in this process (its compute slowed K times to stand for a
// slower device), a running cleave-edge, and the link emulator between them shaping bandwidth
// and RTT. At each bandwidth it measures, one request at a time as a robot would send them:
//
//   all on device   the whole model on the device
//   all on edge     the raw input sent, the whole model on the edge
//   cut C           a fixed split at each bundle cut (the fastest fixed option is the oracle)
//   planned         the fixed cut `cleave plan` chose for this bandwidth
//   adaptive        the runtime's own choice per request, with the bundle's exits
//
// and reports p50/p95 latency, bytes per request, accuracy (labelled inputs), offload and
// exit rates, the ratios the Evaluation issue sets targets for, then a trace run: bandwidth
// stepping through a schedule while the adaptive runtime serves, next to the oracle cut of
// each step. Writes JSON, a Markdown report and gnuplot PNGs. Over 500 lines: one benchmark
// program, its protocol, report and plots together, as docs/PERFORMANCE.md cites it.
//
//   split_eval --bundle DIR --edge HOST:PORT --name NAME [--plan plan.json]
//       [--inputs fashion-mnist|random] [--bandwidths 1mbit,5mbit,20mbit,100mbit]
//       [--rtt 10ms] [--device-slowdown 10] [--requests 30] [--max-seconds 6]
//       [--trace 50mbit:20s,2mbit:20s,50mbit:20s] [--out DIR]
#include <ATen/Parallel.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/bench_report.h"
#include "cleave/common/files.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/manifest.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/text_table.h"
#include "cleave/common/units.h"
#include "cleave/device/runtime.h"
#include "cleave/link_emulator/link_emulator.h"

namespace {

using Clock = std::chrono::steady_clock;
using cleave::device::Placement;
using nlohmann::json;

struct EvalOptions {
  std::string bundle, edge, name, plan, out = "results/eval";
  std::string inputs = "fashion-mnist", data = cleave::common::kFashionMnistDir;
  std::vector<std::string> bandwidths = {"1mbit", "5mbit", "20mbit", "100mbit"};
  std::string rtt = "10ms", trace;
  double device_slowdown = 10;
  int requests = 30, warmup = 3;
  double max_seconds = 6, warmup_seconds = 2;
  int64_t images = 500;
};

// The inputs requests cycle through, with labels when known.
struct Inputs {
  at::Tensor images;
  std::optional<at::Tensor> labels;
};

absl::StatusOr<Inputs> LoadInputs(const EvalOptions& options,
                                  const cleave::common::BundleManifest& manifest) {
  if (options.inputs == "fashion-mnist") {
    CLEAVE_ASSIGN_OR_RETURN(auto test,
                            cleave::common::LoadFashionMnist(options.data, "t10k", options.images));
    return Inputs{test.images, test.labels};
  }
  std::vector<int64_t> shape = manifest.inputs.at(0).shape;
  shape.at(0) = std::min<int64_t>(options.images, 64);
  torch::manual_seed(1);
  return Inputs{at::randn(shape), std::nullopt};
}

// One measured configuration: what every request of it did.
struct Measurement {
  std::string variant;
  std::optional<int> cut;  // fixed split; empty for all-on-device and adaptive
  std::vector<double> latency_ms;
  double bytes = 0;
  int correct = 0, labelled = 0, offloaded = 0, exited = 0, fallbacks = 0;
  std::map<std::string, int> where;  // "cut 9", "device", "exit 7"

  double P(double q) const { return cleave::common::Percentile(latency_ms, q); }
  int count() const { return static_cast<int>(latency_ms.size()); }
  json ToJson() const {
    const double n = std::max(1, count());
    json j = {{"variant", variant},
              {"cut", cut ? json(*cut) : json()},
              {"requests", count()},
              {"p50_ms", P(0.5)},
              {"p95_ms", P(0.95)},
              {"mean_ms", cleave::common::Mean(latency_ms)},
              {"bytes_per_request", bytes / n},
              {"offload_rate", offloaded / n},
              {"exit_rate", exited / n},
              {"fallbacks", fallbacks},
              {"where", where}};
    if (labelled > 0) j["accuracy"] = static_cast<double>(correct) / labelled;
    return j;
  }
};

class Evaluator {
 public:
  Evaluator(const EvalOptions& options, std::string bundle_dir, std::string edge_target,
            Inputs inputs)
      : options_(options),
        bundle_dir_(std::move(bundle_dir)),
        edge_target_(std::move(edge_target)),
        inputs_(std::move(inputs)) {}

  // Runs requests on a fresh runtime with `options` until `requests` are measured or
  // max_seconds pass (at least two), after a warm-up; `variant` names it.
  absl::StatusOr<Measurement> Measure(const std::string& variant,
                                      cleave::device::RuntimeOptions options) {
    options.deadline = std::chrono::seconds(60);
    options.device_slowdown = options_.device_slowdown;
    CLEAVE_ASSIGN_OR_RETURN(auto runtime, cleave::device::Runtime::Create(bundle_dir_, options));
    Measurement m;
    m.variant = variant;
    m.cut = options.offload_cut;
    // Warm-up: TorchScript's first runs, the stream, and the adaptive runtime's estimates.
    const Clock::time_point warm_start = Clock::now();
    for (int i = 0;
         i < options_.warmup && (i == 0 || Seconds(warm_start) < options_.warmup_seconds); ++i) {
      CLEAVE_RETURN_IF_ERROR(runtime->Infer(Input(next_++)).status());
    }
    const Clock::time_point start = Clock::now();
    while (m.count() < options_.requests &&
           (m.count() < 2 || Seconds(start) < options_.max_seconds)) {
      const int64_t index = next_++;
      CLEAVE_ASSIGN_OR_RETURN(cleave::device::Result result, runtime->Infer(Input(index)));
      Record(result, index, &m);
    }
    return m;
  }

  // The adaptive runtime through a bandwidth schedule; one row per request.
  absl::StatusOr<json> RunTrace(
      cleave::link_emulator::LinkEmulator& link,
      const std::vector<std::pair<uint64_t, double>>& steps,  // (bits/s, seconds)
      const std::map<uint64_t, std::pair<std::string, double>>& oracle) {
    cleave::device::RuntimeOptions options;
    options.edges = {edge_target_};
    options.deadline = std::chrono::seconds(60);
    options.device_slowdown = options_.device_slowdown;
    CLEAVE_ASSIGN_OR_RETURN(auto runtime, cleave::device::Runtime::Create(bundle_dir_, options));
    link.SetBandwidth(cleave::link_emulator::Direction::kBoth, steps.front().first);
    for (int i = 0; i < options_.warmup; ++i) {
      CLEAVE_RETURN_IF_ERROR(runtime->Infer(Input(next_++)).status());
    }
    json rows = json::array();
    const Clock::time_point start = Clock::now();
    double step_end = 0;
    for (const auto& [bits, seconds] : steps) {
      link.SetBandwidth(cleave::link_emulator::Direction::kBoth, bits);
      step_end += seconds;
      while (Seconds(start) < step_end) {
        const double at = Seconds(start);
        CLEAVE_ASSIGN_OR_RETURN(cleave::device::Result result, runtime->Infer(Input(next_++)));
        auto best = oracle.find(bits);
        rows.push_back({{"t_s", at},
                        {"mbit", static_cast<double>(bits) / 1e6},
                        {"where", Where(result)},
                        {"latency_ms", result.timings.total_ms},
                        {"oracle", best != oracle.end() ? best->second.first : ""},
                        {"oracle_p50_ms", best != oracle.end() ? best->second.second : NAN}});
      }
    }
    return rows;
  }

  static std::string Where(const cleave::device::Result& result) {
    switch (result.placement) {
      case Placement::kEdge:
        return result.cut_id == cleave::common::kInputCutId ? "edge"
                                                            : absl::StrCat("cut ", result.cut_id);
      case Placement::kDeviceExit:
        return absl::StrCat("exit ", result.exit_cut.value_or(-1));
      default:
        return "device";
    }
  }

 private:
  static double Seconds(Clock::time_point since) {
    return std::chrono::duration<double>(Clock::now() - since).count();
  }

  at::Tensor Input(int64_t index) const {
    const int64_t i = index % inputs_.images.size(0);
    return inputs_.images.slice(0, i, i + 1);
  }

  void Record(const cleave::device::Result& result, int64_t index, Measurement* m) const {
    m->latency_ms.push_back(result.timings.total_ms);
    m->bytes += static_cast<double>(result.bytes_sent);
    m->offloaded += result.placement == Placement::kEdge;
    m->exited += result.placement == Placement::kDeviceExit;
    m->fallbacks += result.placement == Placement::kDeviceFallback;
    ++m->where[Where(result)];
    if (inputs_.labels && !result.outputs.empty()) {
      const int64_t i = index % inputs_.images.size(0);
      m->correct +=
          result.outputs[0].argmax(1).item<int64_t>() == (*inputs_.labels)[i].item<int64_t>();
      ++m->labelled;
    }
  }

  const EvalOptions& options_;
  const std::string bundle_dir_, edge_target_;
  const Inputs inputs_;
  int64_t next_ = 0;
};

// The plan's choice at `bits` (the link with the closest bandwidth): a cut id, or empty for
// all on the device.
absl::StatusOr<std::optional<int>> PlannedCut(const json& plan, double bits) {
  const json* best = nullptr;
  for (const json& link : plan.at("links")) {
    if (best == nullptr ||
        std::abs(std::log(link.at("bandwidth_bits_per_second").get<double>() / bits)) <
            std::abs(std::log((*best).at("bandwidth_bits_per_second").get<double>() / bits))) {
      best = &link;
    }
  }
  if (best == nullptr) return absl::InvalidArgumentError("the plan has no links");
  const json& cut = best->at("chosen").at("cut_id");
  return cut.is_null() ? std::optional<int>() : std::optional<int>(cut.get<int>());
}

std::string Ms(double ms) { return absl::StrFormat("%.1f", ms); }

// Every configuration measured at every bandwidth: the fixed cuts (all-on-device and
// all-on-edge among them), the planned cut and the adaptive runtime.
void AppendConfigurations(const json& sweep, std::string* markdown) {
  absl::StrAppend(markdown,
                  "\n<details><summary>Every configuration</summary>\n\n| bandwidth | "
                  "configuration | p50 ms | p95 ms | bytes/req | accuracy | offload rate | exit "
                  "rate |\n|---|---|---|---|---|---|---|---|\n");
  for (const json& row : sweep) {
    std::vector<std::pair<std::string, const json*>> configurations;
    for (const json& fixed : row["fixed"]) {
      configurations.emplace_back(fixed["variant"].get<std::string>(), &fixed);
    }
    if (row.contains("planned")) {
      configurations.emplace_back(
          absl::StrCat("planned: ", row["planned"]["variant"].get<std::string>()), &row["planned"]);
    }
    configurations.emplace_back("adaptive + exits", &row["adaptive"]);
    for (const auto& [name, c] : configurations) {
      absl::StrAppend(
          markdown, "| ", row["bandwidth"].get<std::string>(), " | ", name, " | ",
          Ms((*c)["p50_ms"]), " | ", Ms((*c)["p95_ms"]), " | ",
          absl::StrFormat("%.0f", (*c)["bytes_per_request"].get<double>()), " | ",
          c->contains("accuracy") ? absl::StrFormat("%.1f%%", 100 * (*c)["accuracy"].get<double>())
                                  : std::string("-"),
          " | ", absl::StrFormat("%.0f%%", 100 * (*c)["offload_rate"].get<double>()), " | ",
          absl::StrFormat("%.0f%%", 100 * (*c)["exit_rate"].get<double>()), " |\n");
    }
  }
  absl::StrAppend(markdown, "\n</details>\n");
}

// Per trace step: how many requests the adaptive split needed to come within 20% of the
// oracle for the new bandwidth, and its median against the oracle over the step.
void AppendTraceSummary(const json& trace_rows, std::string* markdown) {
  absl::StrAppend(markdown,
                  "\n| trace step | requests | until within 20% of the oracle | median / "
                  "oracle |\n|---|---|---|---|\n");
  size_t begin = 0;
  while (begin < trace_rows.size()) {
    const double mbit = trace_rows[begin]["mbit"].get<double>();
    size_t end = begin;
    std::vector<double> ratios;
    std::optional<size_t> settled;
    while (end < trace_rows.size() && trace_rows[end]["mbit"].get<double>() == mbit) {
      const double ratio = trace_rows[end]["latency_ms"].get<double>() /
                           trace_rows[end]["oracle_p50_ms"].get<double>();
      if (!settled && ratio <= 1.2) settled = end - begin;
      ratios.push_back(ratio);
      ++end;
    }
    absl::StrAppend(markdown, "| ", absl::StrFormat("%g", mbit), " Mbit/s | ", ratios.size(), " | ",
                    settled ? absl::StrCat(*settled) : std::string("never"), " | ",
                    absl::StrFormat("%.2f", cleave::common::Percentile(ratios, 0.5)), " |\n");
    begin = end;
  }
}

absl::StatusOr<std::vector<std::pair<uint64_t, double>>> ParseSteps(const std::string& text) {
  std::vector<std::pair<uint64_t, double>> steps;
  for (absl::string_view step : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<absl::string_view> parts = absl::StrSplit(step, ':');
    if (parts.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--trace step '", step, "': expected RATE:DURATION, e.g. 50mbit:20s"));
    }
    CLEAVE_ASSIGN_OR_RETURN(uint64_t bits, cleave::common::ParseBitRate(parts[0]));
    CLEAVE_ASSIGN_OR_RETURN(auto duration, cleave::common::ParseDuration(parts[1]));
    steps.emplace_back(bits, std::chrono::duration<double>(duration).count());
  }
  return steps;
}

// Draws the PNGs with gnuplot (Debian's gnuplot-nox) from the data files written beside them.
void Plot(const std::string& out, const std::string& name, bool trace) {
  std::ofstream script(out + "/" + name + "_plots.gp");
  script << "set terminal pngcairo size 900,520 font ',10'\n"
         << "set output '" << out << "/" << name << "_latency.png'\n"
         << "set title '" << name << ": p50 latency vs bandwidth (device compute scaled)'\n"
         << "set logscale xy\nset xlabel 'bandwidth (Mbit/s)'\nset ylabel 'p50 latency (ms)'\n"
         << "set key outside right\nset grid\n"
         << "plot for [c=2:6] '" << out << "/" << name
         << "_latency.dat' using 1:c with linespoints title columnheader(c)\n";
  if (trace) {
    script << "set output '" << out << "/" << name << "_trace.png'\n"
           << "unset logscale\nset logscale y\nset title '" << name
           << ": adaptive split under a bandwidth trace'\n"
           << "set xlabel 'time (s)'\nset ylabel 'latency (ms)'\nset y2label 'bandwidth (Mbit/s)'\n"
           << "set y2tics\nset ytics nomirror\n"
           << "stats '" << out << "/" << name << "_trace.dat' using 2 nooutput\n"
           << "set y2range [0:STATS_max * 1.15]\n"
           << "plot '" << out << "/" << name
           << "_trace.dat' using 1:3 with points pt 7 ps 0.4 title 'adaptive latency', '' using "
              "1:4 with lines lw 2 title 'oracle p50 at this bandwidth', '' using 1:2 axes x1y2 "
              "with steps dt 2 title 'bandwidth'\n";
  }
  script.close();
  const std::string command = "gnuplot '" + out + "/" + name + "_plots.gp' 2>/dev/null";
  if (std::system(command.c_str()) != 0) {
    std::cerr << "split_eval: gnuplot failed or is missing; data and script are in " << out << "\n";
  }
}

// Long on purpose: the evaluation protocol in the order it runs (baselines, then every
// configuration at every link setting, then the table), so it can be checked step by step
// against docs/PERFORMANCE.md; split, its steps would pass the whole report between them.
absl::Status Run(const EvalOptions& options, json* report) {
  CLEAVE_ASSIGN_OR_RETURN(std::string manifest_text,
                          cleave::common::ReadFile(options.bundle + "/manifest.json"));
  CLEAVE_ASSIGN_OR_RETURN(auto manifest,
                          cleave::common::BundleManifest::FromJson(manifest_text, options.bundle));
  CLEAVE_ASSIGN_OR_RETURN(Inputs inputs, LoadInputs(options, manifest));
  std::optional<json> plan;
  if (!options.plan.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(std::string text, cleave::common::ReadFile(options.plan));
    plan = json::parse(text, nullptr, false);
    if (plan->is_discarded()) return absl::InvalidArgumentError(options.plan + " is not JSON");
  }
  CLEAVE_ASSIGN_OR_RETURN(auto rtt, cleave::common::ParseDuration(options.rtt));
  cleave::link_emulator::LinkEmulatorOptions link_options;
  link_options.upstream = options.edge;
  link_options.upstream_shape.delay = rtt / 2;
  link_options.downstream_shape.delay = rtt / 2;
  link_options.max_buffered_bytes = 16 << 20;  // never the limit: bandwidth is
  CLEAVE_ASSIGN_OR_RETURN(auto link, cleave::link_emulator::LinkEmulator::Start(link_options));
  const std::string target = absl::StrCat("127.0.0.1:", link->port());
  Evaluator evaluator(options, options.bundle, target, inputs);
  const bool has_exits = std::any_of(manifest.exits.begin(), manifest.exits.end(),
                                     [](const auto& exit) { return exit.threshold.has_value(); });

  json sweep = json::array();
  std::map<uint64_t, std::pair<std::string, double>> oracle_by_bits;
  cleave::common::TextTable table({"bandwidth", "all device", "all edge", "oracle (cut)",
                                   "planned (cut)", "adaptive p50 / p95", "adaptive where",
                                   "bytes/req", "accuracy", "adaptive/oracle"});
  std::ofstream latency_dat(options.out + "/" + options.name + "_latency.dat");
  latency_dat << "mbit \"all on device\" \"all on edge\" oracle planned adaptive\n";
  for (const std::string& text : options.bandwidths) {
    CLEAVE_ASSIGN_OR_RETURN(uint64_t bits, cleave::common::ParseBitRate(text));
    link->SetBandwidth(cleave::link_emulator::Direction::kBoth, bits);
    std::cerr << "== " << options.name << " at " << text << "\n";
    std::vector<Measurement> fixed;
    cleave::device::RuntimeOptions device;  // no edge
    device.use_exits = false;
    CLEAVE_ASSIGN_OR_RETURN(Measurement all_device, evaluator.Measure("all on device", device));
    cleave::device::RuntimeOptions edge_only;
    edge_only.edges = {target};
    edge_only.offload_cut = cleave::common::kInputCutId;
    edge_only.codec = cleave::common::CodecSpec{};  // the raw input
    edge_only.use_exits = false;
    edge_only.probe_interval = std::chrono::milliseconds(0);
    CLEAVE_ASSIGN_OR_RETURN(Measurement all_edge, evaluator.Measure("all on edge", edge_only));
    fixed.push_back(all_device);
    fixed.push_back(all_edge);
    const cleave::common::CodecSpec& input_codec = manifest.input_codec;
    if (input_codec.codec != cleave::common::Codec::kRaw || input_codec.zstd_level != 0) {
      cleave::device::RuntimeOptions encoded = edge_only;
      encoded.codec.reset();  // the bundle's input codec
      std::cerr << "   input, encoded\n";
      CLEAVE_ASSIGN_OR_RETURN(Measurement m, evaluator.Measure("input encoded", encoded));
      fixed.push_back(m);
    }
    for (const cleave::common::CutInfo& cut : manifest.cuts) {
      cleave::device::RuntimeOptions at_cut = edge_only;
      at_cut.offload_cut = cut.id;
      at_cut.codec.reset();  // the bundle's codec for this cut
      std::cerr << "   cut " << cut.id << " (" << cut.name << ")\n";
      CLEAVE_ASSIGN_OR_RETURN(Measurement m,
                              evaluator.Measure(absl::StrCat("cut ", cut.id), at_cut));
      fixed.push_back(m);
    }
    cleave::device::RuntimeOptions adaptive_options;
    adaptive_options.edges = {target};
    CLEAVE_ASSIGN_OR_RETURN(
        Measurement adaptive,
        evaluator.Measure(has_exits ? "adaptive + exits" : "adaptive", adaptive_options));
    const Measurement* oracle = &fixed.front();
    for (const Measurement& m : fixed) {
      if (m.P(0.5) < oracle->P(0.5)) oracle = &m;
    }
    oracle_by_bits[bits] = {oracle->variant, oracle->P(0.5)};
    const Measurement* planned = nullptr;
    if (plan) {
      CLEAVE_ASSIGN_OR_RETURN(std::optional<int> cut, PlannedCut(*plan, static_cast<double>(bits)));
      // The plan's cut 0 is the input as the bundle encodes it ("all on edge" is raw).
      for (const Measurement& m : fixed) {
        const bool device_only = !cut && m.variant == "all on device";
        if (device_only || (cut && m.cut == cut)) planned = &m;  // "input encoded" after raw
      }
    }
    json row = {{"bandwidth", text},
                {"bits_per_second", bits},
                {"all_device", all_device.ToJson()},
                {"all_edge", all_edge.ToJson()},
                {"adaptive", adaptive.ToJson()},
                {"oracle", oracle->ToJson()},
                {"fixed", json::array()}};
    for (const Measurement& m : fixed) row["fixed"].push_back(m.ToJson());
    if (planned != nullptr) row["planned"] = planned->ToJson();
    row["adaptive_vs_oracle"] = adaptive.P(0.5) / oracle->P(0.5);
    row["all_edge_vs_adaptive"] = all_edge.P(0.5) / adaptive.P(0.5);
    row["all_device_vs_adaptive"] = all_device.P(0.5) / adaptive.P(0.5);
    if (planned != nullptr) row["planned_vs_oracle"] = planned->P(0.5) / oracle->P(0.5);
    sweep.push_back(row);
    std::vector<std::string> where;
    for (const auto& [place, n] : adaptive.where) where.push_back(absl::StrCat(place, ": ", n));
    table.AddRow(
        {text, Ms(all_device.P(0.5)), Ms(all_edge.P(0.5)),
         absl::StrCat(Ms(oracle->P(0.5)), " (", oracle->variant, ")"),
         planned != nullptr ? absl::StrCat(Ms(planned->P(0.5)), " (", planned->variant, ")") : "-",
         absl::StrCat(Ms(adaptive.P(0.5)), " / ", Ms(adaptive.P(0.95))), absl::StrJoin(where, ", "),
         absl::StrFormat("%.0f", adaptive.bytes / std::max(1, adaptive.count())),
         adaptive.labelled > 0
             ? absl::StrFormat("%.1f%%", 100.0 * adaptive.correct / adaptive.labelled)
             : "-",
         absl::StrFormat("%.2f", adaptive.P(0.5) / oracle->P(0.5))});
    latency_dat << static_cast<double>(bits) / 1e6 << " " << all_device.P(0.5) << " "
                << all_edge.P(0.5) << " " << oracle->P(0.5) << " "
                << (planned != nullptr ? planned->P(0.5) : NAN) << " " << adaptive.P(0.5) << "\n";
  }
  latency_dat.close();

  // Targets, from this run's numbers.
  double edge_ratio_sum = 0, worst_adaptive = 0, worst_planned = 0, worst_device_ratio = INFINITY;
  bool device_ratio_measured = false;
  for (const json& row : sweep) {
    edge_ratio_sum += row["all_edge_vs_adaptive"].get<double>();
    worst_adaptive = std::max(worst_adaptive, row["adaptive_vs_oracle"].get<double>());
    if (row.contains("planned_vs_oracle")) {
      worst_planned = std::max(worst_planned, row["planned_vs_oracle"].get<double>());
    }
    if (row["bits_per_second"].get<double>() >= 20e6) {
      worst_device_ratio =
          std::min(worst_device_ratio, row["all_device_vs_adaptive"].get<double>());
      device_ratio_measured = true;
    }
  }
  const double mean_edge_ratio = edge_ratio_sum / static_cast<double>(sweep.size());
  json targets = {
      {"adaptive_vs_oracle_worst", worst_adaptive},
      {"adaptive_within_10pct_everywhere", worst_adaptive <= 1.10},
      {"all_edge_vs_adaptive_mean", mean_edge_ratio},
      {"all_edge_ratio_at_least_3", mean_edge_ratio >= 3.0},
      {"all_device_vs_adaptive_worst_at_20mbit_and_above",
       device_ratio_measured ? json(worst_device_ratio) : json()},
      {"all_device_ratio_at_least_2", device_ratio_measured && worst_device_ratio >= 2.0}};
  if (plan) {
    targets["planned_vs_oracle_worst"] = worst_planned;
    targets["planned_within_10pct_everywhere"] = worst_planned <= 1.10;
  }

  json trace_rows;
  if (!options.trace.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(auto steps, ParseSteps(options.trace));
    std::cerr << "== " << options.name << " trace " << options.trace << "\n";
    CLEAVE_ASSIGN_OR_RETURN(trace_rows, evaluator.RunTrace(*link, steps, oracle_by_bits));
    std::ofstream dat(options.out + "/" + options.name + "_trace.dat");
    dat << "t mbit latency oracle_p50\n";
    for (const json& row : trace_rows) {
      dat << row["t_s"].get<double>() << " " << row["mbit"].get<double>() << " "
          << row["latency_ms"].get<double>() << " " << row["oracle_p50_ms"].get<double>() << "\n";
    }
  }
  Plot(options.out, options.name, !options.trace.empty());

  (*report)["model"] = options.name;
  (*report)["bundle"] = options.bundle;
  (*report)["device_slowdown"] = options.device_slowdown;
  (*report)["rtt"] = options.rtt;
  (*report)["sweep"] = sweep;
  (*report)["targets"] = targets;
  if (!trace_rows.is_null()) (*report)["trace"] = trace_rows;

  // The readable report.
  std::string markdown = absl::StrCat(
      "### ", options.name, "\n\nDevice compute scaled x", options.device_slowdown,
      " (the runtime sleeps the extra time), RTT ", options.rtt,
      ", one request at a time; p50 latency in ms.\n\n| bandwidth | all on device | all on edge "
      "(raw) | oracle (best fixed) | planned | adaptive p50 / p95 | bytes/req | adaptive / oracle "
      "|\n|---|---|---|---|---|---|---|---|\n");
  for (const json& row : sweep) {
    absl::StrAppend(
        &markdown, "| ", row["bandwidth"].get<std::string>(), " | ",
        Ms(row["all_device"]["p50_ms"]), " | ", Ms(row["all_edge"]["p50_ms"]), " | ",
        Ms(row["oracle"]["p50_ms"]), " (", row["oracle"]["variant"].get<std::string>(), ") | ",
        row.contains("planned") ? absl::StrCat(Ms(row["planned"]["p50_ms"]), " (",
                                               row["planned"]["variant"].get<std::string>(), ")")
                                : "-",
        " | ", Ms(row["adaptive"]["p50_ms"]), " / ", Ms(row["adaptive"]["p95_ms"]), " | ",
        absl::StrFormat("%.0f", row["adaptive"]["bytes_per_request"].get<double>()), " | ",
        absl::StrFormat("%.2f", row["adaptive_vs_oracle"].get<double>()), " |\n");
  }
  absl::StrAppend(
      &markdown, "\nAdaptive within 10% of the oracle everywhere: worst ",
      absl::StrFormat("%.2f", worst_adaptive), "x (", worst_adaptive <= 1.10 ? "met" : "not met",
      "). All-on-edge / adaptive, mean over the sweep: ", absl::StrFormat("%.2f", mean_edge_ratio),
      "x (goal 3x: ", mean_edge_ratio >= 3 ? "met" : "not met", ").");
  if (device_ratio_measured) {
    absl::StrAppend(&markdown, " All-on-device / adaptive at 20 Mbit/s and above, worst: ",
                    absl::StrFormat("%.2f", worst_device_ratio),
                    "x (goal 2x: ", worst_device_ratio >= 2 ? "met" : "not met", ").");
  }
  if (plan) {
    absl::StrAppend(&markdown, " Planned / oracle, worst: ", absl::StrFormat("%.2f", worst_planned),
                    "x (goal 1.10x: ", worst_planned <= 1.10 ? "met" : "not met", ").");
  }
  absl::StrAppend(&markdown, "\n\n![", options.name, " latency](", options.name, "_latency.png)\n");
  AppendConfigurations(sweep, &markdown);
  if (!trace_rows.is_null()) {
    absl::StrAppend(&markdown, "\n![", options.name, " trace](", options.name, "_trace.png)\n");
    AppendTraceSummary(trace_rows, &markdown);
  }
  CLEAVE_RETURN_IF_ERROR(
      cleave::common::WriteFileAtomically(options.out + "/" + options.name + ".md", markdown));

  std::cout << options.name << ": device compute x" << options.device_slowdown << ", RTT "
            << options.rtt << "\n"
            << table.Render() << "targets: " << targets.dump() << "\n";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"split_eval: split execution over an emulated link against its baselines"};
  EvalOptions options;
  app.add_option("--bundle", options.bundle, "bundle folder (the edge serves it)")->required();
  app.add_option("--edge", options.edge, "host:port of the cleave-edge serving it")->required();
  app.add_option("--name", options.name, "model name for the report")->required();
  app.add_option("--plan", options.plan, "plan.json from cleave plan");
  app.add_option("--inputs", options.inputs, "fashion-mnist or random")
      ->check(CLI::IsMember({"fashion-mnist", "random"}))
      ->default_val(options.inputs);
  app.add_option("--data", options.data, "Fashion-MNIST folder")->default_val(options.data);
  app.add_option("--images", options.images, "distinct inputs to cycle through")
      ->default_val(options.images);
  app.add_option("--bandwidths", options.bandwidths, "bandwidths to sweep")
      ->delimiter(',')
      ->default_str("1mbit,5mbit,20mbit,100mbit");
  app.add_option("--rtt", options.rtt, "round-trip time added by the link")
      ->default_val(options.rtt);
  app.add_option("--device-slowdown", options.device_slowdown,
                 "device compute takes this many times longer")
      ->default_val(options.device_slowdown)
      ->check(CLI::Range(1.0, 1000.0));
  app.add_option("--requests", options.requests, "measured requests per configuration")
      ->default_val(options.requests);
  app.add_option("--max-seconds", options.max_seconds,
                 "stop a configuration after this long (at least 2 requests)")
      ->default_val(options.max_seconds);
  app.add_option("--warmup", options.warmup,
                 "unmeasured requests per configuration (at most "
                 "2 s of them)")
      ->default_val(options.warmup);
  app.add_option("--trace", options.trace,
                 "bandwidth steps for the trace run, e.g. 50mbit:20s,2mbit:20s,50mbit:20s");
  app.add_option("--out", options.out, "results folder")->default_val(options.out);
  CLI11_PARSE(app, argc, argv);
  at::set_num_threads(1);
  std::error_code error;
  std::filesystem::create_directories(options.out, error);
  json report = cleave::bench::ReportHeader("split_eval", argc, argv);
  if (absl::Status status = Run(options, &report); !status.ok()) {
    std::cerr << "split_eval: error: " << status.message() << "\n";
    return 1;
  }
  return cleave::bench::WriteJsonReport(report, options.out + "/" + options.name + ".json") ? 0 : 1;
}
