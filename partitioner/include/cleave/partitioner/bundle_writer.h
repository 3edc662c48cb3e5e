// Writes a bundle: the segments of a model cut at chosen cuts, a verification sample and the
// manifest, then proves the written bundle reproduces the original model. The same model, cuts
// and options always give byte-identical files and so the same bundle id.
#ifndef CLEAVE_PARTITIONER_BUNDLE_WRITER_H_
#define CLEAVE_PARTITIONER_BUNDLE_WRITER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cleave/common/frame_codec.h"
#include "cleave/partitioner/calibration.h"
#include "cleave/partitioner/model_graph.h"

namespace cleave::partitioner {

struct BundleOptions {
  std::string name;  // defaults to the model file's stem
  // The codec every cut's activation is encoded with.
  common::CodecSpec codec;
  // For affine codecs: samples ([N, ...] model inputs) to calibrate clip ranges on. Without
  // them the ranges are dynamic (each frame's min and max).
  at::Tensor calibration_samples;
  ClipCalibrationOptions calibration;
};

struct WrittenBundle {
  std::string dir;
  std::string id;
  size_t num_segments = 0;
  double max_abs_diff = 0.0;  // segments in order vs the original model, on the sample
};

// Splits `model` at `cut_ids` into `dir` (created if needed; an existing bundle there is
// replaced, any other non-empty folder is refused) and verifies it by loading it back. Returns
// INVALID_ARGUMENT for bad cut ids, FAILED_PRECONDITION when verification fails.
[[nodiscard]] absl::StatusOr<WrittenBundle> WriteBundle(const ModelGraph& model,
                                                        const std::vector<int>& cut_ids,
                                                        const std::string& dir,
                                                        const BundleOptions& options);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_BUNDLE_WRITER_H_
