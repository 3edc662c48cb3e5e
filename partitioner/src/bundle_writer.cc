#include "cleave/partitioner/bundle_writer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "cleave/common/bundle.h"
#include "cleave/common/files.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_frame.h"
#include "cleave/common/torchscript_io.h"

namespace cleave::partitioner {
namespace {

namespace fs = std::filesystem;

constexpr char kManifestFile[] = "manifest.json";

// Writes `bytes` as the staged bundle's file `relative` and returns its reference for the
// manifest.
absl::StatusOr<common::FileRef> WriteBundleFile(common::StagedFolder& staged,
                                                const std::string& relative,
                                                const std::string& bytes) {
  CLEAVE_RETURN_IF_ERROR(staged.Write(relative, bytes));
  return common::FileRefFor(relative, bytes);
}

// Refuses a `dir` that is neither missing, empty nor a bundle, so a typo never replaces
// someone's data.
absl::Status CheckReplaceable(const std::string& dir) {
  std::error_code error;
  if (!fs::exists(dir, error)) return absl::OkStatus();
  if (!fs::is_directory(dir, error)) {
    return absl::InvalidArgumentError(absl::StrCat(dir, " exists and is not a folder"));
  }
  if (fs::is_empty(dir, error) || fs::exists(fs::path(dir) / kManifestFile, error)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat(dir, " is not empty and holds no bundle; refusing to write into it"));
}

std::vector<common::TensorSpec> SpecsOf(const std::vector<at::Tensor>& tensors) {
  std::vector<common::TensorSpec> specs;
  for (const at::Tensor& tensor : tensors) {
    specs.push_back(
        {common::Shape(tensor.sizes().begin(), tensor.sizes().end()), tensor.scalar_type()});
  }
  return specs;
}

absl::StatusOr<std::vector<common::FileRef>> WriteFrames(common::StagedFolder& staged,
                                                         const std::string& prefix,
                                                         const std::vector<at::Tensor>& tensors) {
  std::vector<common::FileRef> refs;
  for (size_t i = 0; i < tensors.size(); ++i) {
    CLEAVE_ASSIGN_OR_RETURN(std::string frame, common::EncodeFrame(tensors[i]));
    CLEAVE_ASSIGN_OR_RETURN(common::FileRef ref,
                            WriteBundleFile(staged, absl::StrCat(prefix, i, ".frame"), frame));
    refs.push_back(std::move(ref));
  }
  return refs;
}

}  // namespace

// Long because every step writes into the one staged folder and the one manifest that name
// each other's files (segments, codecs, sample, check), and the order is the crash-safety
// argument: written aside, checked, then swapped in whole.
absl::StatusOr<WrittenBundle> WriteBundle(const ModelGraph& model, const std::vector<int>& cut_ids,
                                          const std::string& dir, const BundleOptions& options) {
  if (cut_ids.empty()) return absl::InvalidArgumentError("no cuts given: name at least one");
  if (!options.codec.ranges.empty()) {
    return absl::InvalidArgumentError("clip ranges come from calibration, not from options");
  }
  CLEAVE_ASSIGN_OR_RETURN(std::vector<torch::jit::Module> segments, model.Split(cut_ids));
  CLEAVE_RETURN_IF_ERROR(CheckReplaceable(dir));
  // Written aside and swapped in whole: the folder holds the old or the new bundle, whenever
  // this process is stopped, and a watching edge never sees a mix.
  CLEAVE_ASSIGN_OR_RETURN(common::StagedFolder staged, common::StagedFolder::Begin(dir));

  common::BundleManifest manifest;
  manifest.name = options.name.empty() ? fs::path(model.path()).stem().string() : options.name;
  manifest.source = {fs::path(model.path()).filename().string(), model.source_sha256()};
  manifest.inputs = model.inputs();
  // Only a single float input can be quantized as a whole; several inputs go raw.
  const bool quantize_input = manifest.inputs.size() == 1 && manifest.inputs[0].dtype == at::kFloat;
  if (quantize_input) manifest.input_codec = options.codec;
  std::vector<int64_t> macs_at = {0}, param_bytes_at = {0};  // before each boundary
  for (int id : cut_ids) {
    CLEAVE_ASSIGN_OR_RETURN(CutPoint cut, model.FindCut(id));
    cut.info.codec = options.codec;
    manifest.cuts.push_back(cut.info);
    macs_at.push_back(cut.macs_before);
    param_bytes_at.push_back(cut.param_bytes_before);
  }
  macs_at.push_back(model.total_macs());
  param_bytes_at.push_back(model.total_param_bytes());
  if (common::IsAffineCodec(options.codec.codec) && options.calibration_samples.defined()) {
    // One pass over the samples calibrates the input (when quantized) and every cut.
    std::vector<int> calibrated = cut_ids;
    if (quantize_input) calibrated.insert(calibrated.begin(), common::kInputCutId);
    CLEAVE_ASSIGN_OR_RETURN(auto ranges,
                            CalibrateClipRanges(model, calibrated, options.calibration_samples,
                                                options.codec.codec, options.calibration));
    const size_t first_cut = quantize_input ? 1 : 0;
    if (quantize_input) manifest.input_codec.ranges = ranges[0];
    for (size_t i = first_cut; i < ranges.size(); ++i) {
      manifest.cuts[i - first_cut].codec.ranges = ranges[i];
    }
  }
  std::vector<at::Tensor> outputs;
  CLEAVE_RETURN_IF_ERROR(common::FlattenTensors(model.sample_output(), &outputs));
  for (size_t i = 0; i < segments.size(); ++i) {
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, common::SaveTorchScriptToBytes(segments[i]));
    common::SegmentInfo segment;
    CLEAVE_ASSIGN_OR_RETURN(segment.module,
                            WriteBundleFile(staged, absl::StrCat("segment_", i, ".pt"), bytes));
    segment.begin_cut = i == 0 ? common::kInputCutId : manifest.cuts[i - 1].id;
    segment.macs = macs_at[i + 1] - macs_at[i];
    segment.param_bytes = param_bytes_at[i + 1] - param_bytes_at[i];
    if (i == 0) {
      segment.inputs = manifest.inputs;
    } else {
      segment.inputs = {manifest.cuts[i - 1].tensor};
    }
    if (i < manifest.cuts.size()) {
      segment.end_cut = manifest.cuts[i].id;
      segment.outputs = {manifest.cuts[i].tensor};
    } else {
      segment.outputs = SpecsOf(outputs);
    }
    manifest.segments.push_back(std::move(segment));
  }
  std::vector<at::Tensor> inputs;
  for (const c10::IValue& input : model.sample_inputs()) inputs.push_back(input.toTensor());
  CLEAVE_ASSIGN_OR_RETURN(manifest.verification.inputs,
                          WriteFrames(staged, "verify/input_", inputs));
  CLEAVE_ASSIGN_OR_RETURN(manifest.verification.outputs,
                          WriteFrames(staged, "verify/output_", outputs));
  CLEAVE_RETURN_IF_ERROR(manifest.Validate());

  const std::string json = manifest.ToJson();
  CLEAVE_RETURN_IF_ERROR(staged.Write(kManifestFile, json));

  // Checked before it replaces anything: a bundle that fails its own check never reaches a
  // folder a server watches, and the old one stays.
  CLEAVE_ASSIGN_OR_RETURN(std::shared_ptr<const common::Bundle> bundle,
                          common::Bundle::Load(staged.path()));
  CLEAVE_ASSIGN_OR_RETURN(double max_abs_diff, bundle->Verify());
  CLEAVE_RETURN_IF_ERROR(staged.Commit());
  WrittenBundle written;
  written.dir = dir;
  written.id = bundle->id();
  written.num_segments = segments.size();
  written.max_abs_diff = max_abs_diff;
  return written;
}

}  // namespace cleave::partitioner
