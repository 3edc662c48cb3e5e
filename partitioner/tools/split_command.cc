// `cleave split MODEL --input-shape S (--cuts C | --plan P) -o BUNDLE [codec flags]`: cut a
// model into a verified bundle.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/tensor_spec.h"
#include "cleave/partitioner/bundle_writer.h"
#include "cleave/partitioner/calibration.h"
#include "cleave/partitioner/model_graph.h"
#include "partitioner/tools/commands.h"

namespace cleave::cli {

std::vector<std::string> SplitList(const std::string& text) {
  return absl::StrSplit(text, ',', absl::SkipWhitespace());
}

absl::Status Split(const SplitFlags& flags) {
  CLEAVE_ASSIGN_OR_RETURN(auto shapes, cleave::common::ParseShapes(flags.input_shape));
  // Flags first: they are cheap to check, loading the model is not.
  if (flags.plan.empty() == flags.cuts.empty()) {
    return absl::InvalidArgumentError("give either --cuts or --plan");
  }
  cleave::partitioner::BundleOptions options;
  options.name = flags.name;
  CLEAVE_ASSIGN_OR_RETURN(options.codec.codec, cleave::common::ParseCodec(flags.codec));
  options.codec.zstd_level = flags.zstd_level;
  CLEAVE_ASSIGN_OR_RETURN(auto model, cleave::partitioner::ModelGraph::Load(flags.model, shapes));
  std::vector<int> ids;
  if (!flags.plan.empty()) {
    CLEAVE_ASSIGN_OR_RETURN(auto planned, ReadPlanFor(flags.plan, model->source_sha256()));
    ids = planned.cuts;
    if (!flags.codec_given) options.codec = planned.codec;
  } else {
    CLEAVE_ASSIGN_OR_RETURN(ids, model->ResolveCuts(SplitList(flags.cuts)));
  }
  options.calibration.clip_percentile = flags.clip_percentile;
  if (!flags.calibration_data.empty()) {
    if (!cleave::common::IsAffineCodec(options.codec.codec)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--calibration-data calibrates clip ranges, which codec ",
                       cleave::common::CodecName(options.codec.codec), " has none of"));
    }
    CLEAVE_ASSIGN_OR_RETURN(options.calibration_samples,
                            cleave::partitioner::LoadCalibrationImages(
                                flags.calibration_data, flags.calibration_samples, shapes.at(0)));
  }
  CLEAVE_ASSIGN_OR_RETURN(auto written,
                          cleave::partitioner::WriteBundle(*model, ids, flags.out, options));
  std::cout << "wrote bundle " << written.dir << " (" << written.num_segments << " segments, "
            << "codec " << cleave::common::CodecLabel(options.codec.codec, options.codec.zstd_level)
            << (options.calibration_samples.defined()
                    ? absl::StrCat(", clip ranges from ", options.calibration_samples.size(0),
                                   " samples")
                    : "")
            << ")\n"
            << "bundle id " << written.id << "\n"
            << "verified: segments in order reproduce " << flags.model << ", max abs difference "
            << absl::StrFormat("%.3g", written.max_abs_diff) << "\n";
  return absl::OkStatus();
}

void AddSplitCommand(CLI::App& app, absl::Status* status) {
  auto flags = std::make_shared<SplitFlags>();
  auto* split = app.add_subcommand("split", "cut a model into a verified bundle");
  split->add_option("model", flags->model, "TorchScript file")->required();
  split->add_option("--input-shape", flags->input_shape, "input shape, e.g. 1,3,224,224")
      ->required();
  split->add_option("--cuts", flags->cuts,
                    "cut ids or names from `cleave inspect`, e.g. 3,7 or layer1,layer2");
  split->add_option("--plan", flags->plan,
                    "split at the cuts (and with the codec) of a `cleave plan -o` file");
  split->add_option("-o,--output", flags->out, "bundle folder to write")->required();
  split->add_option("--name", flags->name, "bundle name (default: the model file's stem)");
  split
      ->add_option("--codec", flags->codec,
                   "activation codec: raw, fp16, bf16, int8, int8-channel, int4")
      ->default_val(flags->codec);
  split
      ->add_option("--zstd-level", flags->zstd_level,
                   "zstd after the codec (0: off; -7..-1: zstd's fast modes)")
      ->default_val(0)
      ->check(CLI::Range(cleave::common::kMinZstdLevel, cleave::common::kMaxZstdLevel));
  split->add_option("--calibration-data", flags->calibration_data,
                    "Fashion-MNIST folder whose training images calibrate clip ranges");
  split
      ->add_option("--calibration-samples", flags->calibration_samples, "calibration images to use")
      ->default_val(flags->calibration_samples)
      ->check(CLI::PositiveNumber);
  split
      ->add_option("--clip-percentile", flags->clip_percentile,
                   "clip range keeps values between the (100-p)th and p-th percentile")
      ->default_val(flags->clip_percentile);
  split->callback([flags, split, status] {
    flags->codec_given = split->count("--codec") + split->count("--zstd-level") > 0;
    *status = Split(*flags);
  });
}

}  // namespace cleave::cli
