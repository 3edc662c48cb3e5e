// Loading and saving TorchScript modules with errors as values, and flattening a model's
// output (tensor, tuple, list, dict, nested) into the tensor list that crosses the wire.
#ifndef CLEAVE_COMMON_TORCHSCRIPT_IO_H_
#define CLEAVE_COMMON_TORCHSCRIPT_IO_H_

#include <torch/script.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// Loads a TorchScript file on the CPU. NOT_FOUND when `path` does not exist,
// INVALID_ARGUMENT when it is not a TorchScript archive.
[[nodiscard]] absl::StatusOr<torch::jit::Module> LoadTorchScript(const std::string& path);

// Loads a TorchScript archive held in memory; `name` is used in error messages.
[[nodiscard]] absl::StatusOr<torch::jit::Module> LoadTorchScriptFromBytes(const std::string& bytes,
                                                                          absl::string_view name);

// Serializes `module` to bytes. The bytes depend only on the module (no paths, no times), so
// the same module always gives the same bytes and the same hash.
[[nodiscard]] absl::StatusOr<std::string> SaveTorchScriptToBytes(const torch::jit::Module& module);

// Rewrites a loaded, frozen module for inference (torch::jit::optimize_for_inference:
// conv-batchnorm folding, fused ops, oneDNN convolutions). Batch-1 convolutions on small
// images run several times faster; results change in the last bits, not more. A module the
// passes cannot handle is returned as it was.
[[nodiscard]] torch::jit::Module OptimizeForInference(torch::jit::Module module);

// Appends every tensor in `value` depth-first (tuple (a, (b, c)) gives a, b, c; dict values in
// insertion order; int/float/bool scalars become 0-d tensors). Returns INVALID_ARGUMENT for
// values with no tensor form (strings, objects).
[[nodiscard]] absl::Status FlattenTensors(const c10::IValue& value,
                                          std::vector<at::Tensor>* tensors);

// Runs `work` and returns the most bytes LibTorch's CPU allocator held at once for tensors
// this thread allocated during it: what the work needs beyond what existed before. Counts this
// thread only (through c10's per-thread memory-reporting hook), so neither what other threads
// compute meanwhile nor intra-op threads' own allocations count.
[[nodiscard]] int64_t PeakTensorBytes(const std::function<void()>& work);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_TORCHSCRIPT_IO_H_
