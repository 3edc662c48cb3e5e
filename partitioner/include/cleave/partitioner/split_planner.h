// Where to split (`cleave plan`): a Neurosurgeon-style cost model over every candidate cut.
// Offloading at a cut costs the device's compute up to it, encoding the activation, moving the
// encoded frame and the answer over the link, one round trip, decoding, and the edge's compute
// from the cut on — with device and edge times from their own profiles, and frame sizes and
// codec times measured on real activations. Exit heads, when the bundle has them, turn that
// into an expected latency: samples that leave at an exit before the cut never pay the rest.
// Over a list of links the planner picks the cuts a bundle should carry so the device can move
// its split at run time. docs/PROFILE_AND_PLAN.md documents plan.json.
#ifndef CLEAVE_PARTITIONER_SPLIT_PLANNER_H_
#define CLEAVE_PARTITIONER_SPLIT_PLANNER_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/common/frame_codec.h"
#include "cleave/partitioner/model_graph.h"
#include "cleave/partitioner/profiler.h"

namespace cleave::partitioner {

struct LinkSpec {
  double bits_per_second = 0;
  double rtt_ms = 0;
};

// What crossing one candidate cut costs besides the link: measured encoded frame size and the
// codec's time on this machine (per sample).
struct CutTransfer {
  int cut_id = 0;
  double frame_bytes = 0;
  double encode_ms = 0;
  double decode_ms = 0;
  double raw_frame_bytes = 0;  // the same tensor uncompressed (the all-on-edge baseline)
};

// Encodes the activations of `samples` (the model's inputs, batch of N) at every candidate
// cut of `profile` — cut 0 being the input itself — with `codec_at(cut id)`, and raw, and
// returns the mean frame sizes and codec times per sample.
[[nodiscard]] absl::StatusOr<std::vector<CutTransfer>> MeasureCutTransfers(
    const ModelGraph& model, const ModelProfile& profile, const std::vector<c10::IValue>& samples,
    const std::function<common::CodecSpec(int)>& codec_at);

// An exit head at a cut and the share of all inputs that leave there (after earlier exits).
struct ExitExpectation {
  int cut_id = 0;
  double exit_rate = 0;
  int64_t head_macs = 0;
};

struct PlanOptions {
  std::vector<LinkSpec> links;
  std::optional<double> deadline_ms;
  // Device compute is scaled by this (an emulated slower device; 1 = as profiled).
  double device_scale = 1.0;
  std::vector<ExitExpectation> exits;
  // Only these cuts may be chosen (besides the input and all-on-device); empty: every
  // profiled candidate.
  std::vector<int> allowed_cuts;
  common::CodecSpec codec;  // recorded in the plan for `cleave split --plan`
};

// The cost of one option at one link. `cut_id` is the offload cut; all-on-device has none.
struct CutCost {
  std::optional<int> cut_id;  // empty: all on the device
  std::string name;
  double device_ms = 0, encode_ms = 0, transfer_ms = 0, rtt_ms = 0, decode_ms = 0, edge_ms = 0;
  double frame_bytes = 0;
  double total_ms = 0;       // without exits
  double expected_ms = 0;    // with exits (= total_ms without)
  double offload_share = 1;  // inputs that reach the network
  bool feasible = true;      // within the deadline
};

struct LinkPlan {
  LinkSpec link;
  std::vector<CutCost> ranked;  // fastest expected first; every candidate and all-on-device
  CutCost chosen;               // the fastest feasible one (the fastest, if none is)
  double all_device_ms = 0;
  double all_edge_ms = 0;
};

struct SplitPlan {
  static constexpr int kFormatVersion = 1;

  std::string model_file, model_sha256;
  std::vector<common::Shape> input_shapes;
  common::CodecSpec codec;
  bool calibrated = false;  // frame sizes measured with clip ranges calibrated on real data
  double device_scale = 1.0;
  std::optional<double> deadline_ms;
  std::string device_machine, edge_machine;
  std::vector<LinkPlan> links;
  // The interior cuts a bundle should carry, sorted: every link's chosen cut (the best
  // interior cut of the middle link when every link keeps the model on one side).
  std::vector<int> bundle_cuts;
  std::string note;  // why bundle_cuts holds a cut no link chose, if so

  // Canonical JSON (docs/PROFILE_AND_PLAN.md) and its parser for `cleave split --plan`.
  [[nodiscard]] std::string ToJson() const;
  [[nodiscard]] static absl::StatusOr<SplitPlan> FromJson(absl::string_view json,
                                                          absl::string_view origin);
};

// Evaluates every candidate cut of the profiles at every link. INVALID_ARGUMENT when the
// profiles are of different models or cut lists, lack batch size 1, or `transfers` does not
// cover their cuts.
// The cost of a cut is the device runtime's LatencyPolicy sum (device time before it, transfer
// and RTT, edge time after it) computed offline: from profiles instead of live estimates, with
// the codec's measured encode and decode times as terms of their own (the runtime's
// estimates absorb them), and weighed by how often the exits answer before the cut, which a
// per-request decision cannot know ahead of each request.
[[nodiscard]] absl::StatusOr<SplitPlan> PlanSplit(const ModelProfile& device,
                                                  const ModelProfile& edge,
                                                  const std::vector<CutTransfer>& transfers,
                                                  const PlanOptions& options);

// A readable ranked table for one link, with the baselines and the chosen cut marked.
[[nodiscard]] std::string LinkPlanTable(const LinkPlan& plan, bool with_exits);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_SPLIT_PLANNER_H_
