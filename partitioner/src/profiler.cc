#include "cleave/partitioner/profiler.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "cleave/common/machine.h"
#include "cleave/common/stats.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"
#include "nlohmann/json.hpp"
#include "partitioner/src/json_document.h"

namespace cleave::partitioner {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kFormatName[] = "cleave.profile";

TimingStats Summarize(const std::vector<double>& ms) {
  TimingStats stats;
  stats.median_ms = common::Percentile(ms, 0.5);
  stats.p10_ms = common::Percentile(ms, 0.1);
  stats.p90_ms = common::Percentile(ms, 0.9);
  stats.mean_ms = common::Mean(ms);
  stats.runs = static_cast<int>(ms.size());
  return stats;
}

// Runs the segments in order on `inputs`; with `ms`, adds each segment's time to it.
absl::Status RunChain(std::vector<torch::jit::Module>& segments, std::vector<c10::IValue> inputs,
                      std::vector<std::vector<double>>* ms) {
  try {
    for (size_t i = 0; i < segments.size(); ++i) {
      const Clock::time_point start = Clock::now();
      c10::IValue output = segments[i].forward(std::move(inputs));
      if (ms != nullptr) {
        (*ms)[i].push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
      inputs = {std::move(output)};
    }
  } catch (const c10::Error& error) {
    return absl::InvalidArgumentError(error.what_without_backtrace());
  }
  return absl::OkStatus();
}

// Restores LibTorch's intra-op thread count when it goes out of scope.
class IntraOpThreads {
 public:
  explicit IntraOpThreads(int threads) : previous_(at::get_num_threads()) {
    at::set_num_threads(threads);
  }
  ~IntraOpThreads() { at::set_num_threads(previous_); }

 private:
  const int previous_;
};

}  // namespace

std::vector<c10::IValue> SampleBatch(const ModelGraph& model, int64_t batch) {
  std::vector<c10::IValue> inputs;
  for (const c10::IValue& input : model.sample_inputs()) {
    if (!input.isTensor() || input.toTensor().dim() == 0) {
      inputs.push_back(input);
      continue;
    }
    const at::Tensor row = input.toTensor().narrow(0, 0, 1);
    std::vector<int64_t> repeats(row.dim(), 1);
    repeats[0] = batch;
    inputs.emplace_back(row.repeat(repeats));
  }
  return inputs;
}

// Long because its two halves share the segments, the inputs and the profile being filled:
// first the cut list and the segment chain, then the timing of that chain at every batch size.
absl::StatusOr<ModelProfile> ProfileModel(const ModelGraph& model, const ProfileOptions& options) {
  if (options.runs < 1) return absl::InvalidArgumentError("--runs must be at least 1");
  if (options.batch_sizes.empty()) return absl::InvalidArgumentError("no batch size to profile");
  for (int64_t batch : options.batch_sizes) {
    if (batch < 1) {
      return absl::InvalidArgumentError(absl::StrCat("batch size ", batch, " must be at least 1"));
    }
  }
  ModelProfile profile;
  profile.model_file = model.path();
  profile.model_sha256 = model.source_sha256();
  for (const common::TensorSpec& input : model.inputs()) {
    profile.input_shapes.push_back(input.shape);
  }
  profile.granularity = options.granularity == Granularity::kNode ? "node" : "module";
  const std::vector<CutPoint> cuts = model.Cuts(options.granularity);
  std::vector<int> interior;
  for (const CutPoint& cut : cuts) {
    if (cut.info.id != common::kInputCutId) interior.push_back(cut.info.id);
  }
  if (interior.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model.path(), " has no cut inside at ", profile.granularity,
                     " granularity: there is nothing to split",
                     profile.granularity == "module" ? " (try --granularity node)" : ""));
  }
  CLEAVE_ASSIGN_OR_RETURN(std::vector<torch::jit::Module> segments, model.Split(interior));
  if (options.optimize) {
    for (torch::jit::Module& segment : segments) {
      segment = common::OptimizeForInference(std::move(segment));
    }
  }
  // The candidate list starts at the input: segment i runs from cuts[i] to cuts[i + 1].
  common::CutInfo input;
  input.id = common::kInputCutId;
  input.name = "input";
  // With several inputs the "cut" at the input carries all of them.
  for (const common::TensorSpec& spec : model.inputs()) {
    if (input.tensor.shape.empty()) input.tensor = spec;
    input.bytes +=
        common::NumElements(spec.shape) * static_cast<int64_t>(c10::elementSize(spec.dtype));
  }
  profile.cuts.push_back(input);
  int64_t macs_before = 0;
  for (const CutPoint& cut : cuts) {
    if (cut.info.id == common::kInputCutId) continue;
    profile.cuts.push_back(cut.info);
    SegmentProfile segment;
    segment.begin_cut = profile.cuts[profile.cuts.size() - 2].id;
    segment.end_cut = cut.info.id;
    segment.macs = cut.macs_before - macs_before;
    macs_before = cut.macs_before;
    profile.segments.push_back(segment);
  }
  SegmentProfile last;
  last.begin_cut = profile.cuts.back().id;
  last.macs = model.total_macs() - macs_before;
  profile.segments.push_back(last);
  std::vector<at::Tensor> outputs;
  CLEAVE_RETURN_IF_ERROR(common::FlattenTensors(model.sample_output(), &outputs));
  for (const at::Tensor& output : outputs) {
    profile.output_bytes.push_back(static_cast<int64_t>(output.nbytes()));
  }

  IntraOpThreads threads(options.intra_op_threads);
  c10::InferenceMode inference;
  const int64_t total =
      static_cast<int64_t>(options.batch_sizes.size()) * (options.warmup + options.runs);
  int64_t done = 0;
  std::string rejected;
  for (int64_t batch : options.batch_sizes) {
    const std::vector<c10::IValue> inputs = SampleBatch(model, batch);
    if (absl::Status works = RunChain(segments, inputs, nullptr); !works.ok()) {
      absl::StrAppend(&rejected, rejected.empty() ? "" : "; ", "batch ", batch, ": ",
                      works.message());
      done += options.warmup + options.runs;
      continue;
    }
    for (int i = 0; i < options.warmup; ++i) {
      CLEAVE_RETURN_IF_ERROR(RunChain(segments, inputs, nullptr));
      if (options.on_progress) options.on_progress(++done, total);
    }
    std::vector<std::vector<double>> ms(segments.size());
    for (int i = 0; i < options.runs; ++i) {
      CLEAVE_RETURN_IF_ERROR(RunChain(segments, inputs, &ms));
      if (options.on_progress) options.on_progress(++done, total);
    }
    for (size_t s = 0; s < segments.size(); ++s) {
      profile.segments[s].by_batch[batch] = Summarize(ms[s]);
    }
  }
  if (profile.segments.front().by_batch.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model.path(), " rejected every batch size: ", rejected));
  }
  profile.machine = common::CpuModel();
  profile.cores = common::CpuCores();
  profile.intra_op_threads = options.intra_op_threads;
  profile.warmup = options.warmup;
  profile.date = common::UtcNow();
  return profile;
}

absl::StatusOr<double> ModelProfile::MedianMs(int64_t batch, size_t first,
                                              std::optional<size_t> last) const {
  const size_t end = last.has_value() ? *last + 1 : segments.size();
  double total = 0;
  for (size_t i = first; i < end && i < segments.size(); ++i) {
    auto found = segments[i].by_batch.find(batch);
    if (found == segments[i].by_batch.end()) {
      return absl::NotFoundError(
          absl::StrCat("the profile of ", model_file, " has no timings at batch size ", batch));
    }
    total += found->second.median_ms;
  }
  return total;
}

std::string ModelProfile::ToJson() const {
  json cuts_json = json::array();
  for (const common::CutInfo& cut : cuts) {
    cuts_json.push_back({{"id", cut.id},
                         {"name", cut.name},
                         {"shape", cut.tensor.shape},
                         {"dtype", common::DtypeName(cut.tensor.dtype)},
                         {"bytes", cut.bytes}});
  }
  json segments_json = json::array();
  for (const SegmentProfile& segment : segments) {
    json timings = json::object();
    for (const auto& [batch, stats] : segment.by_batch) {
      timings[std::to_string(batch)] = {{"median_ms", stats.median_ms},
                                        {"p10_ms", stats.p10_ms},
                                        {"p90_ms", stats.p90_ms},
                                        {"mean_ms", stats.mean_ms},
                                        {"runs", stats.runs}};
    }
    segments_json.push_back({{"begin_cut", segment.begin_cut},
                             {"end_cut", segment.end_cut ? json(*segment.end_cut) : json()},
                             {"macs", segment.macs},
                             {"timings", timings}});
  }
  const json document = {{"format", kFormatName},
                         {"version", kFormatVersion},
                         {"model", model_file},
                         {"model_sha256", model_sha256},
                         {"input_shapes", input_shapes},
                         {"granularity", granularity},
                         {"machine",
                          {{"cpu", machine},
                           {"cores", cores},
                           {"intra_op_threads", intra_op_threads},
                           {"date", date}}},
                         {"warmup", warmup},
                         {"cuts", cuts_json},
                         {"segments", segments_json},
                         {"output_bytes", output_bytes}};
  return document.dump(2) + "\n";
}

absl::StatusOr<ModelProfile> ModelProfile::FromJson(absl::string_view text,
                                                    absl::string_view origin) {
  ModelProfile profile;
  auto read = [&profile](const json& j) -> absl::Status {
    profile.model_file = j.at("model").get<std::string>();
    profile.model_sha256 = j.at("model_sha256").get<std::string>();
    profile.input_shapes = j.at("input_shapes").get<std::vector<common::Shape>>();
    profile.granularity = j.at("granularity").get<std::string>();
    const json& machine = j.at("machine");
    profile.machine = machine.at("cpu").get<std::string>();
    profile.cores = machine.at("cores").get<int>();
    profile.intra_op_threads = machine.at("intra_op_threads").get<int>();
    profile.date = machine.at("date").get<std::string>();
    profile.warmup = j.at("warmup").get<int>();
    for (const json& cut : j.at("cuts")) {
      common::CutInfo info;
      info.id = cut.at("id").get<int>();
      info.name = cut.at("name").get<std::string>();
      info.tensor.shape = cut.at("shape").get<common::Shape>();
      CLEAVE_ASSIGN_OR_RETURN(info.tensor.dtype,
                              common::ParseDtype(cut.at("dtype").get<std::string>()));
      info.bytes = cut.at("bytes").get<int64_t>();
      profile.cuts.push_back(info);
    }
    for (const json& segment : j.at("segments")) {
      SegmentProfile parsed;
      parsed.begin_cut = segment.at("begin_cut").get<int>();
      if (!segment.at("end_cut").is_null()) parsed.end_cut = segment.at("end_cut").get<int>();
      parsed.macs = segment.at("macs").get<int64_t>();
      for (const auto& [batch, stats] : segment.at("timings").items()) {
        TimingStats timing;
        timing.median_ms = stats.at("median_ms").get<double>();
        timing.p10_ms = stats.at("p10_ms").get<double>();
        timing.p90_ms = stats.at("p90_ms").get<double>();
        timing.mean_ms = stats.at("mean_ms").get<double>();
        timing.runs = stats.at("runs").get<int>();
        parsed.by_batch[std::stoll(batch)] = timing;
      }
      profile.segments.push_back(std::move(parsed));
    }
    profile.output_bytes = j.at("output_bytes").get<std::vector<int64_t>>();
    return absl::OkStatus();
  };
  CLEAVE_RETURN_IF_ERROR(
      ReadDocument(text, kFormatName, kFormatVersion, "profile", "cleave profile", origin, read));
  // The segments must chain through the cuts, or a plan would combine the wrong timings.
  if (profile.cuts.empty() || profile.segments.size() != profile.cuts.size()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": ", profile.segments.size(),
                                                   " segments for ", profile.cuts.size(),
                                                   " cuts (expected one segment per cut)"));
  }
  for (size_t i = 0; i < profile.segments.size(); ++i) {
    const SegmentProfile& segment = profile.segments[i];
    const bool last = i + 1 == profile.cuts.size();
    const bool chains =
        segment.begin_cut == profile.cuts[i].id &&
        (last ? !segment.end_cut.has_value() : segment.end_cut == profile.cuts[i + 1].id);
    if (!chains) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": segment ", i,
                                                     " does not run from cut ", profile.cuts[i].id,
                                                     " to the next candidate cut"));
    }
    if (segment.by_batch.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": segment ", i, " has no timings"));
    }
  }
  return profile;
}

}  // namespace cleave::partitioner
