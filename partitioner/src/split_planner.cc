#include "cleave/partitioner/split_planner.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cleave/common/frame_codec.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/text_table.h"
#include "cleave/common/units.h"
#include "nlohmann/json.hpp"
#include "partitioner/src/json_document.h"

namespace cleave::partitioner {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kFormatName[] = "cleave.plan";

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

absl::Status CheckProfilesMatch(const ModelProfile& device, const ModelProfile& edge) {
  if (device.model_sha256 != edge.model_sha256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the device profile is of ", device.model_file, " (sha256 ",
        device.model_sha256.substr(0, 12), "…) but the edge profile of ", edge.model_file,
        " (sha256 ", edge.model_sha256.substr(0, 12), "…): profile the same model on both"));
  }
  std::vector<int> device_cuts, edge_cuts;
  for (const common::CutInfo& cut : device.cuts) device_cuts.push_back(cut.id);
  for (const common::CutInfo& cut : edge.cuts) edge_cuts.push_back(cut.id);
  if (device_cuts != edge_cuts) {
    return absl::InvalidArgumentError(
        "the device and edge profiles have different candidate cuts: profile both with the "
        "same --granularity");
  }
  return absl::OkStatus();
}

json CodecToJson(const common::CodecSpec& codec, bool calibrated) {
  return {{"name", common::CodecName(codec.codec)},
          {"zstd_level", codec.zstd_level},
          {"calibrated", calibrated}};
}

json CostToJson(const CutCost& cost) {
  return {{"cut_id", cost.cut_id ? json(*cost.cut_id) : json()},
          {"name", cost.name},
          {"device_ms", cost.device_ms},
          {"encode_ms", cost.encode_ms},
          {"transfer_ms", cost.transfer_ms},
          {"rtt_ms", cost.rtt_ms},
          {"decode_ms", cost.decode_ms},
          {"edge_ms", cost.edge_ms},
          {"frame_bytes", cost.frame_bytes},
          {"total_ms", cost.total_ms},
          {"expected_ms", cost.expected_ms},
          {"offload_share", cost.offload_share},
          {"feasible", cost.feasible}};
}

CutCost CostFromJson(const json& j) {
  CutCost cost;
  if (!j.at("cut_id").is_null()) cost.cut_id = j.at("cut_id").get<int>();
  cost.name = j.at("name").get<std::string>();
  cost.device_ms = j.at("device_ms").get<double>();
  cost.encode_ms = j.at("encode_ms").get<double>();
  cost.transfer_ms = j.at("transfer_ms").get<double>();
  cost.rtt_ms = j.at("rtt_ms").get<double>();
  cost.decode_ms = j.at("decode_ms").get<double>();
  cost.edge_ms = j.at("edge_ms").get<double>();
  cost.frame_bytes = j.at("frame_bytes").get<double>();
  cost.total_ms = j.at("total_ms").get<double>();
  cost.expected_ms = j.at("expected_ms").get<double>();
  cost.offload_share = j.at("offload_share").get<double>();
  cost.feasible = j.at("feasible").get<bool>();
  return cost;
}

}  // namespace

absl::StatusOr<std::vector<CutTransfer>> MeasureCutTransfers(
    const ModelGraph& model, const ModelProfile& profile, const std::vector<c10::IValue>& samples,
    const std::function<common::CodecSpec(int)>& codec_at) {
  if (samples.empty() || !samples[0].isTensor() || samples[0].toTensor().size(0) < 1) {
    return absl::InvalidArgumentError("measuring frame sizes needs at least one sample");
  }
  const int64_t count = samples[0].toTensor().size(0);
  std::vector<int> ids;
  for (const common::CutInfo& cut : profile.cuts) ids.push_back(cut.id);
  std::vector<at::Tensor> activations;
  if (ids.size() > 1) {
    CLEAVE_ASSIGN_OR_RETURN(
        activations, model.ActivationsAt(std::vector<int>(ids.begin() + 1, ids.end()), samples));
  }
  std::vector<CutTransfer> transfers;
  for (size_t c = 0; c < ids.size(); ++c) {
    CutTransfer transfer;
    transfer.cut_id = ids[c];
    // Several inputs go raw (the runtime quantizes a single input only).
    const common::CodecSpec spec =
        c == 0 && samples.size() > 1 ? common::CodecSpec{} : codec_at(ids[c]);
    for (int64_t i = 0; i < count; ++i) {
      std::vector<at::Tensor> tensors;
      if (c == 0) {
        for (const c10::IValue& input : samples) {
          if (input.isTensor()) tensors.push_back(input.toTensor().narrow(0, i, 1).contiguous());
        }
      } else {
        tensors.push_back(activations[c - 1].narrow(0, i, 1).contiguous());
      }
      for (const at::Tensor& tensor : tensors) {
        const Clock::time_point encode_start = Clock::now();
        CLEAVE_ASSIGN_OR_RETURN(std::string frame, common::EncodeFrame(tensor, spec));
        transfer.encode_ms += MillisSince(encode_start);
        const Clock::time_point decode_start = Clock::now();
        CLEAVE_RETURN_IF_ERROR(common::DecodeFrame(frame).status());
        transfer.decode_ms += MillisSince(decode_start);
        transfer.frame_bytes += static_cast<double>(frame.size());
        CLEAVE_ASSIGN_OR_RETURN(std::string raw, common::EncodeFrame(tensor));
        transfer.raw_frame_bytes += static_cast<double>(raw.size());
      }
    }
    transfer.frame_bytes /= static_cast<double>(count);
    transfer.raw_frame_bytes /= static_cast<double>(count);
    transfer.encode_ms /= static_cast<double>(count);
    transfer.decode_ms /= static_cast<double>(count);
    transfers.push_back(transfer);
  }
  return transfers;
}

namespace {

// What planning needs from the profiles, per segment at batch 1, gathered and checked once for
// every link.
struct SegmentCosts {
  std::vector<double> device_ms, edge_ms;
  std::map<int, CutTransfer> transfers;  // by cut id
  double response_bytes = 0;
  double total_device_ms = 0;
  double ms_per_mac = 0;                          // the device's, for exit heads
  std::map<size_t, ExitExpectation> exits_after;  // keyed by the segment the exit follows

  // Expected time when the device runs segments [0, split) and exits there may answer, and
  // `rest_ms` is what a request still unanswered at `split` costs from then on.
  double WithExits(size_t split, double rest_ms, double* offload_share) const {
    double expected = 0, reached = 1, device_so_far = 0;
    for (size_t s = 0; s < split; ++s) {
      device_so_far += device_ms[s];
      auto exit = exits_after.find(s);
      if (exit == exits_after.end()) continue;
      device_so_far += ms_per_mac * static_cast<double>(exit->second.head_macs);
      const double leave = std::min(reached, exit->second.exit_rate);
      expected += leave * device_so_far;
      reached -= leave;
    }
    *offload_share = reached;
    return expected + reached * (device_so_far + rest_ms);
  }
};

absl::StatusOr<SegmentCosts> GatherCosts(const ModelProfile& device, const ModelProfile& edge,
                                         const std::vector<CutTransfer>& transfers,
                                         const PlanOptions& options) {
  CLEAVE_RETURN_IF_ERROR(CheckProfilesMatch(device, edge));
  if (options.links.empty()) return absl::InvalidArgumentError("no link to plan for");
  for (int cut : options.allowed_cuts) {
    if (std::none_of(device.cuts.begin(), device.cuts.end(),
                     [&](const common::CutInfo& c) { return c.id == cut; })) {
      return absl::InvalidArgumentError(
          absl::StrCat("cut ", cut, " is not one of the profiled candidate cuts"));
    }
  }
  const size_t n = device.cuts.size();
  SegmentCosts costs;
  for (const CutTransfer& transfer : transfers) costs.transfers[transfer.cut_id] = transfer;
  costs.device_ms.resize(n);
  costs.edge_ms.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (costs.transfers.count(device.cuts[i].id) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("no frame size measured at cut ", device.cuts[i].id));
    }
    CLEAVE_ASSIGN_OR_RETURN(costs.device_ms[i], device.MedianMs(1, i, i));
    CLEAVE_ASSIGN_OR_RETURN(costs.edge_ms[i], edge.MedianMs(1, i, i));
    costs.device_ms[i] *= options.device_scale;
  }
  for (int64_t bytes : device.output_bytes) {
    costs.response_bytes += common::kFrameHeaderBytes + bytes;
  }
  // Exits in cut order, at candidate positions; a head's time is estimated from its MACs at
  // the device's speed per MAC.
  int64_t total_macs = 0;
  for (size_t i = 0; i < n; ++i) {
    total_macs += device.segments[i].macs;
    costs.total_device_ms += costs.device_ms[i];
  }
  costs.ms_per_mac = total_macs > 0 ? costs.total_device_ms / static_cast<double>(total_macs) : 0;
  for (const ExitExpectation& exit : options.exits) {
    const auto at = std::find_if(device.cuts.begin() + 1, device.cuts.end(),
                                 [&](const common::CutInfo& cut) { return cut.id == exit.cut_id; });
    if (at == device.cuts.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit at cut ", exit.cut_id, " is not one of the profiled candidate cuts"));
    }
    costs.exits_after[static_cast<size_t>(at - device.cuts.begin()) - 1] = exit;
  }
  return costs;
}

// Every candidate for one link (each allowed cut, and all on the device), ranked: feasible
// ones first, then by expected time.
LinkPlan PlanLink(const LinkSpec& link, const ModelProfile& device, const SegmentCosts& costs,
                  const PlanOptions& options) {
  const size_t n = device.cuts.size();
  LinkPlan link_plan;
  link_plan.link = link;
  // Time on the wire for a frame of `bytes` and the response.
  const auto transfer_ms = [&](double bytes) {
    return link.bits_per_second > 0
               ? (bytes + costs.response_bytes) * 8 / link.bits_per_second * 1000
               : 0;
  };
  for (size_t k = 0; k < n; ++k) {  // offload before segment k, at cut k
    if (k > 0 && !options.allowed_cuts.empty() &&
        std::find(options.allowed_cuts.begin(), options.allowed_cuts.end(), device.cuts[k].id) ==
            options.allowed_cuts.end()) {
      continue;
    }
    const CutTransfer& transfer = costs.transfers.at(device.cuts[k].id);
    CutCost cost;
    cost.cut_id = device.cuts[k].id;
    cost.name = device.cuts[k].name;
    for (size_t s = 0; s < k; ++s) cost.device_ms += costs.device_ms[s];
    for (size_t s = k; s < n; ++s) cost.edge_ms += costs.edge_ms[s];
    cost.encode_ms = transfer.encode_ms;
    cost.decode_ms = transfer.decode_ms;
    cost.frame_bytes = transfer.frame_bytes;
    cost.transfer_ms = transfer_ms(transfer.frame_bytes);
    cost.rtt_ms = link.rtt_ms;
    cost.total_ms = cost.device_ms + cost.encode_ms + cost.transfer_ms + cost.rtt_ms +
                    cost.decode_ms + cost.edge_ms;
    const double rest = cost.total_ms - cost.device_ms;
    cost.expected_ms = costs.WithExits(k, rest, &cost.offload_share);
    link_plan.ranked.push_back(cost);
  }
  CutCost local;
  local.name = "all on device";
  local.device_ms = costs.total_device_ms;
  local.total_ms = costs.total_device_ms;
  double reaches_end = 0;  // nothing is offloaded from the device-only plan
  local.expected_ms = costs.WithExits(n, 0, &reaches_end);
  link_plan.ranked.push_back(local);
  link_plan.all_device_ms = local.expected_ms;
  // The all-on-edge baseline sends the raw input: no codec time, the raw size.
  const CutTransfer& input = costs.transfers.at(device.cuts[0].id);
  link_plan.all_edge_ms =
      link.rtt_ms + link_plan.ranked.front().edge_ms + transfer_ms(input.raw_frame_bytes);
  for (CutCost& cost : link_plan.ranked) {
    cost.feasible = !options.deadline_ms || cost.expected_ms <= *options.deadline_ms;
  }
  std::stable_sort(link_plan.ranked.begin(), link_plan.ranked.end(),
                   [](const CutCost& a, const CutCost& b) {
                     if (a.feasible != b.feasible) return a.feasible;
                     return a.expected_ms < b.expected_ms;
                   });
  link_plan.chosen = link_plan.ranked.front();
  return link_plan;
}

// The cuts the bundle carries: every link's chosen interior cut or, when every link keeps the
// whole model on one side, the middle link's best interior cut (with a note saying so).
absl::Status ChooseBundleCuts(SplitPlan* plan) {
  std::set<int> cuts;
  for (const LinkPlan& link_plan : plan->links) {
    const auto& chosen = link_plan.chosen.cut_id;
    if (chosen && *chosen != common::kInputCutId) cuts.insert(*chosen);
  }
  if (cuts.empty()) {
    const LinkPlan& middle = plan->links[plan->links.size() / 2];
    for (const CutCost& cost : middle.ranked) {
      if (cost.cut_id && *cost.cut_id != common::kInputCutId) {
        cuts.insert(*cost.cut_id);
        plan->note = absl::StrCat(
            "every link keeps the whole model on one side; the bundle carries the best interior "
            "cut at ",
            common::FormatBitRate(static_cast<uint64_t>(middle.link.bits_per_second)), " (",
            cost.name, ") so it can still be split");
        break;
      }
    }
  }
  if (cuts.empty()) {
    return absl::InvalidArgumentError("the profiles have no interior cut to put in a bundle");
  }
  plan->bundle_cuts.assign(cuts.begin(), cuts.end());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SplitPlan> PlanSplit(const ModelProfile& device, const ModelProfile& edge,
                                    const std::vector<CutTransfer>& transfers,
                                    const PlanOptions& options) {
  CLEAVE_ASSIGN_OR_RETURN(const SegmentCosts costs, GatherCosts(device, edge, transfers, options));
  SplitPlan plan;
  plan.model_file = device.model_file;
  plan.model_sha256 = device.model_sha256;
  plan.input_shapes = device.input_shapes;
  plan.codec = options.codec;
  plan.device_scale = options.device_scale;
  plan.deadline_ms = options.deadline_ms;
  plan.device_machine = device.machine;
  plan.edge_machine = edge.machine;
  for (const LinkSpec& link : options.links) {
    plan.links.push_back(PlanLink(link, device, costs, options));
  }
  CLEAVE_RETURN_IF_ERROR(ChooseBundleCuts(&plan));
  return plan;
}

std::string LinkPlanTable(const LinkPlan& plan, bool with_exits) {
  std::vector<std::string> header = {"rank", "where",  "device ms", "encode",   "transfer",
                                     "rtt",  "decode", "edge ms",   "total ms", "frame bytes"};
  if (with_exits) {
    header.push_back("expected ms");
    header.push_back("offloaded");
  }
  header.push_back("");
  common::TextTable table(header);
  int rank = 0;
  for (const CutCost& cost : plan.ranked) {
    const bool input = cost.cut_id && *cost.cut_id == common::kInputCutId;
    std::string where = cost.cut_id ? absl::StrCat("cut ", *cost.cut_id, " ", cost.name)
                                    : std::string("all on device");
    if (input) where = "input to the edge (encoded)";
    std::string mark;
    if (&cost == &plan.ranked.front()) mark = "<- chosen";
    if (!cost.feasible) mark += mark.empty() ? "misses deadline" : ", misses deadline";
    std::vector<std::string> row = {absl::StrCat(++rank),
                                    where,
                                    absl::StrFormat("%.3f", cost.device_ms),
                                    absl::StrFormat("%.3f", cost.encode_ms),
                                    absl::StrFormat("%.3f", cost.transfer_ms),
                                    absl::StrFormat("%.3f", cost.rtt_ms),
                                    absl::StrFormat("%.3f", cost.decode_ms),
                                    absl::StrFormat("%.3f", cost.edge_ms),
                                    absl::StrFormat("%.3f", cost.total_ms),
                                    cost.cut_id ? absl::StrFormat("%.0f", cost.frame_bytes) : "-"};
    if (with_exits) {
      row.push_back(absl::StrFormat("%.3f", cost.expected_ms));
      row.push_back(absl::StrFormat("%.1f%%", 100 * cost.offload_share));
    }
    row.push_back(mark);
    table.AddRow(row);
  }
  return table.Render();
}

std::string SplitPlan::ToJson() const {
  json links_json = json::array();
  for (const LinkPlan& link : links) {
    json ranked = json::array();
    for (const CutCost& cost : link.ranked) ranked.push_back(CostToJson(cost));
    links_json.push_back({{"bandwidth_bits_per_second", link.link.bits_per_second},
                          {"rtt_ms", link.link.rtt_ms},
                          {"chosen", CostToJson(link.chosen)},
                          {"all_device_ms", link.all_device_ms},
                          {"all_edge_ms", link.all_edge_ms},
                          {"ranked", ranked}});
  }
  json codec_json = CodecToJson(codec, calibrated);
  const json document = {{"format", kFormatName},
                         {"version", kFormatVersion},
                         {"model", model_file},
                         {"model_sha256", model_sha256},
                         {"input_shapes", input_shapes},
                         {"codec", codec_json},
                         {"device_scale", device_scale},
                         {"deadline_ms", deadline_ms ? json(*deadline_ms) : json()},
                         {"device_machine", device_machine},
                         {"edge_machine", edge_machine},
                         {"links", links_json},
                         {"bundle_cuts", bundle_cuts},
                         {"note", note}};
  return document.dump(2) + "\n";
}

absl::StatusOr<SplitPlan> SplitPlan::FromJson(absl::string_view text, absl::string_view origin) {
  SplitPlan plan;
  auto read = [&plan](const json& j) -> absl::Status {
    plan.model_file = j.at("model").get<std::string>();
    plan.model_sha256 = j.at("model_sha256").get<std::string>();
    plan.input_shapes = j.at("input_shapes").get<std::vector<common::Shape>>();
    const json& codec = j.at("codec");
    CLEAVE_ASSIGN_OR_RETURN(plan.codec.codec,
                            common::ParseCodec(codec.at("name").get<std::string>()));
    plan.codec.zstd_level = codec.at("zstd_level").get<int>();
    plan.calibrated = codec.value("calibrated", false);
    plan.device_scale = j.at("device_scale").get<double>();
    if (!j.at("deadline_ms").is_null()) plan.deadline_ms = j.at("deadline_ms").get<double>();
    plan.device_machine = j.at("device_machine").get<std::string>();
    plan.edge_machine = j.at("edge_machine").get<std::string>();
    for (const json& link : j.at("links")) {
      LinkPlan parsed;
      parsed.link.bits_per_second = link.at("bandwidth_bits_per_second").get<double>();
      parsed.link.rtt_ms = link.at("rtt_ms").get<double>();
      parsed.chosen = CostFromJson(link.at("chosen"));
      parsed.all_device_ms = link.at("all_device_ms").get<double>();
      parsed.all_edge_ms = link.at("all_edge_ms").get<double>();
      for (const json& cost : link.at("ranked")) parsed.ranked.push_back(CostFromJson(cost));
      plan.links.push_back(std::move(parsed));
    }
    plan.bundle_cuts = j.at("bundle_cuts").get<std::vector<int>>();
    plan.note = j.at("note").get<std::string>();
    return absl::OkStatus();
  };
  CLEAVE_RETURN_IF_ERROR(
      ReadDocument(text, kFormatName, kFormatVersion, "plan", "cleave plan -o", origin, read));
  if (plan.bundle_cuts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, " lists no bundle cuts"));
  }
  return plan;
}

}  // namespace cleave::partitioner
