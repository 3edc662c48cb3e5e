// A loaded bundle: its manifest, its id and the TorchScript segments, checked against their
// hashes. Device and edge both load bundles through this class; the device may load only the
// first segments it can afford.
//
// Thread-safety: a Bundle is immutable after Load; every const method may be called from many
// threads at once (TorchScript inference is re-entrant).
#ifndef CLEAVE_COMMON_BUNDLE_H_
#define CLEAVE_COMMON_BUNDLE_H_

#include <torch/script.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cleave/common/manifest.h"

namespace cleave::common {

class Bundle {
 public:
  struct LoadOptions {
    // Load only the first `max_segments` segments (a device that runs the front of the model);
    // all segments when empty.
    std::optional<size_t> max_segments;
    // Optimize segments and exit heads for inference after loading (OptimizeForInference in
    // torchscript_io.h): what device and edge run. Off for tools that check bit-exactness.
    bool optimize_for_inference = false;
  };

  // Reads DIR/manifest.json, checks every segment file it loads against its SHA-256 and loads
  // it. Returns NOT_FOUND when DIR has no manifest, DATA_LOSS on a hash mismatch and
  // INVALID_ARGUMENT for a malformed manifest or segment.
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Bundle>> Load(
      const std::string& dir, const LoadOptions& options);
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<const Bundle>> Load(const std::string& dir) {
    return Load(dir, LoadOptions{});
  }

  const std::string& id() const { return id_; }
  const std::string& dir() const { return dir_; }
  const BundleManifest& manifest() const { return manifest_; }
  size_t num_loaded_segments() const { return segments_.size(); }

  // Returns the index of the segment that starts at `cut_id`; INVALID_ARGUMENT listing the
  // cuts the bundle can resume from otherwise.
  [[nodiscard]] absl::StatusOr<size_t> SegmentStartingAt(int cut_id) const;

  // Returns OK when `activation` can enter the segment starting at `cut_id`: same dtype and
  // rank as the manifest records and the same size in every dimension except dimension 0,
  // the batch. INVALID_ARGUMENT naming both shapes otherwise.
  [[nodiscard]] absl::Status CheckActivation(int cut_id, const at::Tensor& activation) const;

  // Runs segments first..last (inclusive, loaded) in order on `inputs` and returns what the
  // last one returns. Errors from LibTorch come back as INVALID_ARGUMENT.
  [[nodiscard]] absl::StatusOr<c10::IValue> RunSegments(size_t first, size_t last,
                                                        std::vector<c10::IValue> inputs) const;

  // Runs the exit head at `cut_id` on `activation` and returns its logits [N, classes].
  // NOT_FOUND when the bundle has no exit there.
  [[nodiscard]] absl::StatusOr<at::Tensor> RunExit(int cut_id, const at::Tensor& activation) const;

  // Runs the stored verification sample through every segment and compares with the original
  // model's stored output. Returns the max abs difference, or FAILED_PRECONDITION when it
  // exceeds the manifest's tolerance. REQUIRES: all segments loaded.
  [[nodiscard]] absl::StatusOr<double> Verify() const;

 private:
  Bundle() = default;

  std::string dir_;
  std::string id_;
  BundleManifest manifest_;
  std::vector<torch::jit::Module> segments_;
  std::map<int, torch::jit::Module> exit_heads_;  // by cut id
};

// Returns the largest |a - b| over the flattened outputs, or INVALID_ARGUMENT when their
// number, shapes or dtypes differ. `tolerance_exceeded` is set when some element breaks
// |a - b| <= atol + rtol * |b|.
[[nodiscard]] absl::StatusOr<double> CompareOutputs(const std::vector<at::Tensor>& actual,
                                                    const std::vector<at::Tensor>& expected,
                                                    double rtol, double atol,
                                                    bool* tolerance_exceeded);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_BUNDLE_H_
