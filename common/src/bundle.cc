#include "cleave/common/bundle.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/sha256.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/torchscript_io.h"

namespace cleave::common {
namespace {

// Reads a bundle file and checks it against the hash the manifest gives for it.
absl::StatusOr<std::string> ReadVerified(const std::string& dir, const FileRef& ref) {
  const std::string path = (std::filesystem::path(dir) / ref.file).string();
  CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  if (const std::string actual = Sha256Hex(bytes); actual != ref.sha256) {
    return absl::DataLossError(
        absl::StrCat(path, ": SHA-256 ", actual, " does not match the manifest's ", ref.sha256));
  }
  return bytes;
}

absl::StatusOr<std::vector<at::Tensor>> ReadFrames(const std::string& dir,
                                                   const std::vector<FileRef>& refs) {
  std::vector<at::Tensor> tensors;
  for (const FileRef& ref : refs) {
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(dir, ref));
    auto tensor = DecodeFrame(bytes);
    if (!tensor.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(ref.file, ": ", tensor.status().message()));
    }
    tensors.push_back(*std::move(tensor));
  }
  return tensors;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Bundle>> Bundle::Load(const std::string& dir,
                                                           const LoadOptions& options) {
  const std::string manifest_path = (std::filesystem::path(dir) / "manifest.json").string();
  auto text = ReadFile(manifest_path);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat(dir, " is not a bundle: ", text.status().message()));
  }
  CLEAVE_ASSIGN_OR_RETURN(BundleManifest manifest, BundleManifest::FromJson(*text, manifest_path));

  std::shared_ptr<Bundle> bundle(new Bundle());
  bundle->dir_ = dir;
  bundle->id_ = BundleIdOf(*text);
  const size_t count =
      std::min(manifest.segments.size(), options.max_segments.value_or(manifest.segments.size()));
  for (size_t i = 0; i < count; ++i) {
    const FileRef& ref = manifest.segments[i].module;
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(dir, ref));
    CLEAVE_ASSIGN_OR_RETURN(torch::jit::Module module, LoadTorchScriptFromBytes(bytes, ref.file));
    if (options.optimize_for_inference) module = OptimizeForInference(std::move(module));
    bundle->segments_.push_back(std::move(module));
  }
  for (const ExitInfo& exit : manifest.exits) {
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(dir, exit.head));
    CLEAVE_ASSIGN_OR_RETURN(torch::jit::Module head,
                            LoadTorchScriptFromBytes(bytes, exit.head.file));
    if (options.optimize_for_inference) head = OptimizeForInference(std::move(head));
    bundle->exit_heads_.emplace(exit.cut_id, std::move(head));
  }
  bundle->manifest_ = std::move(manifest);
  return std::shared_ptr<const Bundle>(std::move(bundle));
}

absl::StatusOr<size_t> Bundle::SegmentStartingAt(int cut_id) const {
  for (size_t i = 0; i < manifest_.segments.size(); ++i) {
    if (manifest_.segments[i].begin_cut == cut_id) return i;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "cut ", cut_id, " is not a cut of bundle ", manifest_.name, " (", id_.substr(0, 12),
      "): it resumes from cuts ", manifest_.DescribeResumableCuts()));
}

absl::Status Bundle::CheckActivation(int cut_id, const at::Tensor& activation) const {
  CLEAVE_ASSIGN_OR_RETURN(size_t index, SegmentStartingAt(cut_id));
  const std::vector<TensorSpec>& inputs = manifest_.segments[index].inputs;
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("cut ", cut_id, " takes ", inputs.size(),
                                                   " inputs; a request carries one tensor"));
  }
  const TensorSpec& expected = inputs[0];
  const Shape actual(activation.sizes().begin(), activation.sizes().end());
  bool fits = activation.scalar_type() == expected.dtype && actual.size() == expected.shape.size();
  for (size_t d = 1; fits && d < actual.size(); ++d) fits = actual[d] == expected.shape[d];
  if (fits) return absl::OkStatus();
  Shape wanted = expected.shape;
  std::string batch_note;
  if (!wanted.empty()) batch_note = " (dimension 0, the batch, may differ)";
  return absl::InvalidArgumentError(
      absl::StrCat("activation for cut ", cut_id, " is ", DtypeName(activation.scalar_type()), " ",
                   FormatShape(actual), "; bundle expects ", DtypeName(expected.dtype), " ",
                   FormatShape(wanted), batch_note));
}

absl::StatusOr<c10::IValue> Bundle::RunSegments(size_t first, size_t last,
                                                std::vector<c10::IValue> inputs) const {
  if (first > last || last >= segments_.size()) {
    return absl::OutOfRangeError(absl::StrCat(
        "segments ", first, "..", last, " requested; bundle has ", segments_.size(), " loaded"));
  }
  const auto context = [first, last] {
    return absl::StrCat("running segment ", first, ".. ", last);
  };
  return GuardTorch(absl::StatusCode::kInvalidArgument, context, [&] {
    c10::InferenceMode inference;
    c10::IValue value;
    for (size_t i = first; i <= last; ++i) {
      torch::jit::Module segment = segments_[i];
      value = segment.forward(std::move(inputs));
      inputs = {value};
    }
    return value;
  });
}

absl::StatusOr<at::Tensor> Bundle::RunExit(int cut_id, const at::Tensor& activation) const {
  auto it = exit_heads_.find(cut_id);
  if (it == exit_heads_.end()) {
    return absl::NotFoundError(
        absl::StrCat("bundle ", manifest_.name, " has no exit at cut ", cut_id));
  }
  const auto context = [cut_id] { return absl::StrCat("running the exit head at cut ", cut_id); };
  return GuardTorch(absl::StatusCode::kInvalidArgument, context, [&] {
    c10::InferenceMode inference;
    torch::jit::Module head = it->second;
    return head.forward({activation}).toTensor();
  });
}

absl::StatusOr<double> Bundle::Verify() const {
  if (segments_.size() != manifest_.segments.size()) {
    return absl::FailedPreconditionError("Verify needs every segment loaded");
  }
  CLEAVE_ASSIGN_OR_RETURN(std::vector<at::Tensor> inputs,
                          ReadFrames(dir_, manifest_.verification.inputs));
  CLEAVE_ASSIGN_OR_RETURN(std::vector<at::Tensor> expected,
                          ReadFrames(dir_, manifest_.verification.outputs));
  std::vector<c10::IValue> values(inputs.begin(), inputs.end());
  CLEAVE_ASSIGN_OR_RETURN(c10::IValue output, RunSegments(0, segments_.size() - 1, values));
  std::vector<at::Tensor> actual;
  CLEAVE_RETURN_IF_ERROR(FlattenTensors(output, &actual));
  bool exceeded = false;
  CLEAVE_ASSIGN_OR_RETURN(double max_diff,
                          CompareOutputs(actual, expected, manifest_.verification.rtol,
                                         manifest_.verification.atol, &exceeded));
  if (exceeded) {
    return absl::FailedPreconditionError(
        absl::StrCat("segments do not reproduce the original model: max abs difference ", max_diff,
                     " exceeds atol ", manifest_.verification.atol, " + rtol ",
                     manifest_.verification.rtol, " * |expected|"));
  }
  return max_diff;
}

absl::StatusOr<double> CompareOutputs(const std::vector<at::Tensor>& actual,
                                      const std::vector<at::Tensor>& expected, double rtol,
                                      double atol, bool* tolerance_exceeded) {
  if (actual.size() != expected.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("output has ", actual.size(), " tensors; expected ", expected.size()));
  }
  double max_diff = 0.0;
  *tolerance_exceeded = false;
  for (size_t i = 0; i < actual.size(); ++i) {
    if (!actual[i].sizes().equals(expected[i].sizes()) ||
        actual[i].scalar_type() != expected[i].scalar_type()) {
      return absl::InvalidArgumentError(
          absl::StrCat("output ", i, " is ", DtypeName(actual[i].scalar_type()), " ",
                       FormatShape(Shape(actual[i].sizes().begin(), actual[i].sizes().end())),
                       "; expected ", DtypeName(expected[i].scalar_type()), " ",
                       FormatShape(Shape(expected[i].sizes().begin(), expected[i].sizes().end()))));
    }
    if (actual[i].numel() == 0) continue;
    const at::Tensor a = actual[i].to(at::kDouble);
    const at::Tensor b = expected[i].to(at::kDouble);
    const at::Tensor diff = (a - b).abs();
    max_diff = std::max(max_diff, diff.max().item<double>());
    if ((diff > atol + rtol * b.abs()).any().item<bool>()) *tolerance_exceeded = true;
  }
  return max_diff;
}

}  // namespace cleave::common
