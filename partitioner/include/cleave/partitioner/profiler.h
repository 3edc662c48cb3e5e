// Per-machine cost measurements for split planning (`cleave profile`). The model is split at
// every candidate cut and each segment between consecutive candidates is timed on this
// machine — warm-up runs first, then the median and spread of N runs — at batch size 1 and a
// few larger ones. A profile belongs to one machine: make one on the device and one on the
// edge, and `cleave plan` combines them. docs/PROFILE_AND_PLAN.md documents profile.json.
#ifndef CLEAVE_PARTITIONER_PROFILER_H_
#define CLEAVE_PARTITIONER_PROFILER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cleave/common/manifest.h"
#include "cleave/partitioner/model_graph.h"

namespace cleave::partitioner {

// Summary of repeated timings of one thing, in milliseconds.
struct TimingStats {
  double median_ms = 0;
  double p10_ms = 0;
  double p90_ms = 0;
  double mean_ms = 0;
  int runs = 0;
};

// One segment between consecutive candidate cuts; `end_cut` empty for the last one.
struct SegmentProfile {
  int begin_cut = common::kInputCutId;
  std::optional<int> end_cut;
  int64_t macs = 0;                         // at batch size 1 (the inspect estimate)
  std::map<int64_t, TimingStats> by_batch;  // batch size -> timings
};

struct ModelProfile {
  static constexpr int kFormatVersion = 1;

  std::string model_file;    // as given (informational)
  std::string model_sha256;  // what a plan checks profiles against
  std::vector<common::Shape> input_shapes;
  std::string granularity;               // "module" or "node"
  std::vector<common::CutInfo> cuts;     // candidate cuts in order, the input (id 0) first
  std::vector<SegmentProfile> segments;  // cuts[i] -> cuts[i + 1] (or the output)
  std::vector<int64_t> output_bytes;     // the model's flattened outputs at batch size 1
  std::string machine;                   // CPU model
  int cores = 0;
  int intra_op_threads = 1;
  int warmup = 0;
  std::string date;  // UTC, ISO 8601

  // Sum of the segments' median time at `batch` from segment `first` on (to the end when
  // `last` is empty). NOT_FOUND when the profile lacks that batch size.
  [[nodiscard]] absl::StatusOr<double> MedianMs(int64_t batch, size_t first,
                                                std::optional<size_t> last = std::nullopt) const;

  // Canonical JSON (docs/PROFILE_AND_PLAN.md) and its parser; `origin` names the file in errors.
  [[nodiscard]] std::string ToJson() const;
  [[nodiscard]] static absl::StatusOr<ModelProfile> FromJson(absl::string_view json,
                                                             absl::string_view origin);
};

struct ProfileOptions {
  Granularity granularity = Granularity::kModule;
  int runs = 20;
  int warmup = 3;
  std::vector<int64_t> batch_sizes = {1, 4, 16};
  int intra_op_threads = 1;
  // Time the segments as device and edge run them: optimized for inference (OptimizeForInference).
  bool optimize = true;
  // Called after each timed forward: (done, total).
  std::function<void(int64_t, int64_t)> on_progress;
};

// Times every segment of `model` between its candidate cuts. Batch sizes the model rejects
// (a reshape that fixes the batch, say) are left out of the profile, not an error, unless no
// batch size works. INVALID_ARGUMENT for runs < 1, no batch size, or a model without cuts.
[[nodiscard]] absl::StatusOr<ModelProfile> ProfileModel(const ModelGraph& model,
                                                        const ProfileOptions& options);

// The model's inputs with their batch dimension (dimension 0) set to `batch`, built from the
// model's seeded sample by repeating its first row.
[[nodiscard]] std::vector<c10::IValue> SampleBatch(const ModelGraph& model, int64_t batch);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_PROFILER_H_
