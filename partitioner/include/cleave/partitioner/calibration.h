// Clip-range calibration for the affine activation codecs: runs calibration samples through
// the model and picks, per cut, the range that keeps all but the rarest values. Clipping those
// outliers is what keeps 8- and 4-bit activations accurate (a dynamic min/max range spends the
// grid on a handful of extreme values).
#ifndef CLEAVE_PARTITIONER_CALIBRATION_H_
#define CLEAVE_PARTITIONER_CALIBRATION_H_

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cleave/common/frame_codec.h"
#include "cleave/partitioner/model_graph.h"

namespace cleave::partitioner {

struct ClipCalibrationOptions {
  // The range keeps values between the (100 - p)th and the p-th percentile.
  double clip_percentile = 99.99;
  int64_t batch_size = 64;
};

// Returns, for each of `cut_ids`, the clip ranges `codec` needs (one, or one per channel for
// int8-channel), computed over the activations of `samples` ([N, ...], the model's single
// input). INVALID_ARGUMENT for a non-affine codec, an empty sample set or a bad percentile.
[[nodiscard]] absl::StatusOr<std::vector<std::vector<common::ClipRange>>> CalibrateClipRanges(
    const ModelGraph& model, const std::vector<int>& cut_ids, const at::Tensor& samples,
    common::Codec codec, const ClipCalibrationOptions& options = {});

// Loads the first `count` Fashion-MNIST training images in `dir` as calibration samples and
// checks they fit a model whose input is `input_shape` ([N, C, H, W]). INVALID_ARGUMENT names
// both shapes when they do not.
[[nodiscard]] absl::StatusOr<at::Tensor> LoadCalibrationImages(const std::string& dir,
                                                               int64_t count,
                                                               const common::Shape& input_shape);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_CALIBRATION_H_
