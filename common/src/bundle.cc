#include "cleave/common/bundle.h"

#include <filesystem>
#include <limits>

#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/sha256.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/torchscript_io.h"

namespace cleave::common {
namespace {

// Reads a bundle file and checks it against the size and hash the manifest gives for it,
// decrypting it in memory with `key` when it is stored encrypted; its size on disk is checked
// before it is read. REQUIRES: `key` is the manifest's key when the file is encrypted
// (CheckBundleKey).
absl::StatusOr<std::string> ReadVerified(const std::string& dir, const FileRef& ref,
                                         const BundleKey* key) {
  const std::string path = (std::filesystem::path(dir) / ref.file).string();
  const std::optional<int64_t> stored = ref.encrypted_size ? ref.encrypted_size : ref.size;
  if (stored.has_value()) {
    std::error_code error;
    const uintmax_t size = std::filesystem::file_size(path, error);
    if (!error && size != static_cast<uintmax_t>(*stored)) {
      return absl::DataLossError(absl::StrCat(path, ": ", size,
                                              " bytes does not match the manifest's ", *stored,
                                              ref.encrypted_size ? " (truncated?)" : ""));
    }
  }
  CLEAVE_ASSIGN_OR_RETURN(
      std::string bytes,
      ReadFile(path, stored.has_value() ? static_cast<uint64_t>(*stored) : kMaxFileBytes));
  if (ref.encrypted_size) {
    if (key == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(path, " is encrypted: give its key"));
    }
    auto opened = key->Open(bytes, ref.file, ref.sha256);
    if (!opened.ok()) {
      return absl::Status(opened.status().code(),
                          absl::StrCat(dir, "/", opened.status().message()));
    }
    bytes = *std::move(opened);
  }
  if (const std::string actual = Sha256Hex(bytes); actual != ref.sha256) {
    return absl::DataLossError(
        absl::StrCat(path, ": SHA-256 ", actual, " does not match the manifest's ", ref.sha256));
  }
  return bytes;
}

// OK when `key` can open the bundle's encrypted files (or it has none).
absl::Status CheckBundleKey(const std::string& dir, const BundleManifest& manifest,
                            const BundleKey* key) {
  if (manifest.encryption_key_id.empty()) return absl::OkStatus();
  if (key == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("bundle ", manifest.name, " in ", dir, " is encrypted (key id ",
                     manifest.encryption_key_id, "): give its key (--bundle-key)"));
  }
  if (key->id() != manifest.encryption_key_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("the bundle key ", key->path(), " (key id ", key->id(),
                     ") is not the key bundle ", manifest.name, " in ", dir,
                     " was encrypted with (key id ", manifest.encryption_key_id, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<at::Tensor>> ReadFrames(const std::string& dir,
                                                   const std::vector<FileRef>& refs,
                                                   const BundleKey* key) {
  std::vector<at::Tensor> tensors;
  for (const FileRef& ref : refs) {
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(dir, ref, key));
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
  auto text = ReadFile(manifest_path, kMaxTextFileBytes);
  if (!text.ok()) {
    return absl::NotFoundError(absl::StrCat(dir, " is not a bundle: ", text.status().message()));
  }
  // Under a trust policy nothing but signed bytes is parsed.
  if (options.trust != nullptr) CLEAVE_RETURN_IF_ERROR(options.trust->CheckSignatures(dir, *text));
  CLEAVE_ASSIGN_OR_RETURN(BundleManifest manifest, BundleManifest::FromJson(*text, manifest_path));
  if (options.trust != nullptr) {
    CLEAVE_RETURN_IF_ERROR(options.trust->CheckManifest(dir, BundleIdOf(*text), manifest));
  }
  CLEAVE_RETURN_IF_ERROR(CheckBundleKey(dir, manifest, options.key.get()));

  std::shared_ptr<Bundle> bundle(new Bundle());
  bundle->dir_ = dir;
  bundle->id_ = BundleIdOf(*text);
  bundle->key_ = options.key;
  const BundleKey* key = options.key.get();
  const size_t count =
      std::min(manifest.segments.size(), options.max_segments.value_or(manifest.segments.size()));
  for (size_t i = 0; i < count; ++i) {
    const FileRef& ref = manifest.segments[i].module;
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(dir, ref, key));
    CLEAVE_ASSIGN_OR_RETURN(torch::jit::Module module, LoadTorchScriptFromBytes(bytes, ref.file));
    if (options.optimize_for_inference) module = OptimizeForInference(std::move(module));
    bundle->segments_.push_back(std::move(module));
  }
  for (const ExitInfo& exit : manifest.exits) {
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, ReadVerified(dir, exit.head, key));
    CLEAVE_ASSIGN_OR_RETURN(torch::jit::Module head,
                            LoadTorchScriptFromBytes(bytes, exit.head.file));
    if (options.optimize_for_inference) head = OptimizeForInference(std::move(head));
    bundle->exit_heads_.emplace(exit.cut_id, std::move(head));
  }
  if (options.trust != nullptr) {
    // Whoever accepts this version (TrustPolicy::Accept) vouches for every file of it: the
    // segments not loaded and the verification frames are checked now too.
    std::vector<const FileRef*> unread;
    for (size_t i = count; i < manifest.segments.size(); ++i) {
      unread.push_back(&manifest.segments[i].module);
    }
    for (const FileRef& ref : manifest.verification.inputs) unread.push_back(&ref);
    for (const FileRef& ref : manifest.verification.outputs) unread.push_back(&ref);
    for (const FileRef* ref : unread) CLEAVE_RETURN_IF_ERROR(ReadVerified(dir, *ref, key).status());
  }
  bundle->manifest_ = std::move(manifest);
  if (options.measure_forward_memory) CLEAVE_RETURN_IF_ERROR(bundle->MeasureForwardMemory());
  return std::shared_ptr<const Bundle>(std::move(bundle));
}

absl::StatusOr<std::vector<at::Tensor>> Bundle::ReadVerificationInputs() const {
  return ReadFrames(dir_, manifest_.verification.inputs, key_.get());
}

absl::StatusOr<size_t> Bundle::SegmentStartingAt(int cut_id) const {
  for (size_t i = 0; i < manifest_.segments.size(); ++i) {
    if (manifest_.segments[i].begin_cut == cut_id) return i;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "cut ", cut_id, " is not a cut of bundle ", manifest_.name, " (", id_.substr(0, 12),
      "): it resumes from cuts ", manifest_.DescribeResumableCuts()));
}

absl::Status Bundle::CheckActivation(int cut_id, const TensorSpec& declared,
                                     int64_t max_batch) const {
  CLEAVE_ASSIGN_OR_RETURN(size_t index, SegmentStartingAt(cut_id));
  const std::vector<TensorSpec>& inputs = manifest_.segments[index].inputs;
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("cut ", cut_id, " takes ", inputs.size(),
                                                   " inputs; a request carries one tensor"));
  }
  // The message is prefixed only on failure: this runs for every request an edge admits.
  absl::Status fits = CheckBatchedTensor("activation", declared, inputs[0], 1, max_batch);
  if (fits.ok()) return fits;
  return absl::InvalidArgumentError(absl::StrCat("cut ", cut_id, ": ", fits.message()));
}

absl::Status Bundle::CheckActivation(int cut_id, const at::Tensor& activation) const {
  const TensorSpec actual{Shape(activation.sizes().begin(), activation.sizes().end()),
                          activation.scalar_type()};
  return CheckActivation(cut_id, actual, std::numeric_limits<int64_t>::max());
}

int64_t Bundle::OutputBytes(int64_t batch) const {
  const int64_t sample_batch = SampleBatch();
  int64_t bytes = 0;
  for (const TensorSpec& output : manifest_.segments.back().outputs) {
    int64_t elements = NumElements(output.shape);
    if (!output.shape.empty() && output.shape[0] == sample_batch) {
      elements = elements / sample_batch * batch;
    }
    bytes += elements * static_cast<int64_t>(c10::elementSize(output.dtype));
  }
  return bytes;
}

int64_t Bundle::SampleBatch() const {
  if (manifest_.inputs.empty() || manifest_.inputs[0].shape.empty()) return 1;
  return std::max<int64_t>(1, manifest_.inputs[0].shape[0]);
}

std::vector<TensorSpec> Bundle::OutputsFor(int64_t batch) const {
  const int64_t sample_batch = SampleBatch();
  std::vector<TensorSpec> outputs = manifest_.segments.back().outputs;
  for (TensorSpec& output : outputs) {
    if (!output.shape.empty() && output.shape[0] == sample_batch) output.shape[0] = batch;
  }
  return outputs;
}

absl::Status Bundle::MeasureForwardMemory() {
  if (segments_.size() != manifest_.segments.size()) {
    return absl::FailedPreconditionError("measuring forward memory needs every segment loaded");
  }
  if (manifest_.verification.inputs.empty()) return absl::OkStatus();  // nothing to run
  CLEAVE_ASSIGN_OR_RETURN(std::vector<at::Tensor> inputs,
                          ReadFrames(dir_, manifest_.verification.inputs, key_.get()));
  std::vector<c10::IValue> values(inputs.begin(), inputs.end());
  const size_t last = segments_.size() - 1;
  for (size_t s = 0; s < segments_.size(); ++s) {
    if (values.size() == 1 && values[0].isTensor() && values[0].toTensor().dim() > 0) {
      // The sample at its batch and at twice it, twice over: the first runs of a TorchScript
      // graph profile it and allocate differently, so the later pair is what serving sees.
      const at::Tensor sample = values[0].toTensor();
      const at::Tensor doubled = at::cat({sample, sample}, 0);
      int64_t peak[2] = {0, 0};
      for (int round = 0; round < 4; ++round) {
        absl::Status run;
        const int64_t bytes = PeakTensorBytes(
            [&] { run = RunSegments(s, last, {round % 2 == 0 ? sample : doubled}).status(); });
        CLEAVE_RETURN_IF_ERROR(run);
        peak[round % 2] = bytes;
      }
      ForwardMemory& memory = forward_memory_[manifest_.segments[s].begin_cut];
      memory.per_sample = std::max<int64_t>(0, (peak[1] - peak[0]) / sample.size(0));
      memory.fixed = std::max<int64_t>(0, peak[0] - memory.per_sample * sample.size(0));
    }
    CLEAVE_ASSIGN_OR_RETURN(c10::IValue next, RunSegments(s, s, values));
    values = {std::move(next)};
  }
  return absl::OkStatus();
}

int64_t Bundle::ForwardBytes(int cut_id, int64_t batch) const {
  auto measured = forward_memory_.find(cut_id);
  if (measured == forward_memory_.end()) return 2 * LargestActivationBytes(cut_id, batch);
  return measured->second.fixed + measured->second.per_sample * batch;
}

int64_t Bundle::LargestActivationBytes(int cut_id, int64_t batch) const {
  int64_t largest = 0;
  bool reached = cut_id == kInputCutId;
  if (reached) {
    for (const TensorSpec& input : manifest_.inputs) {
      largest = std::max<int64_t>(
          largest, NumElements(input.shape) * static_cast<int64_t>(c10::elementSize(input.dtype)));
    }
  }
  for (const CutInfo& cut : manifest_.cuts) {
    reached = reached || cut.id == cut_id;
    if (reached) largest = std::max(largest, cut.bytes);
  }
  return largest / SampleBatch() * batch;
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
                          ReadFrames(dir_, manifest_.verification.inputs, key_.get()));
  CLEAVE_ASSIGN_OR_RETURN(std::vector<at::Tensor> expected,
                          ReadFrames(dir_, manifest_.verification.outputs, key_.get()));
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
