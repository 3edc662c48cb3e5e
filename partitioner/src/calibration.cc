#include "cleave/partitioner/calibration.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "cleave/common/idx_dataset.h"
#include "cleave/common/status_macros.h"

namespace cleave::partitioner {
namespace {

// The p-th percentile along dimension 1 of a [rows, values] tensor, by order statistic.
at::Tensor PercentileRows(const at::Tensor& rows, double percentile) {
  const int64_t count = rows.size(1);
  const auto k = static_cast<int64_t>(std::ceil(percentile / 100.0 * static_cast<double>(count)));
  return std::get<0>(at::kthvalue(rows, std::clamp<int64_t>(k, 1, count), 1));
}

}  // namespace

absl::StatusOr<std::vector<std::vector<common::ClipRange>>> CalibrateClipRanges(
    const ModelGraph& model, const std::vector<int>& cut_ids, const at::Tensor& samples,
    common::Codec codec, const ClipCalibrationOptions& options) {
  if (!common::IsAffineCodec(codec)) {
    return absl::InvalidArgumentError(
        absl::StrCat("codec ", common::CodecName(codec), " has no clip range to calibrate"));
  }
  if (!samples.defined() || samples.dim() == 0 || samples.size(0) == 0) {
    return absl::InvalidArgumentError("no calibration samples");
  }
  if (!(options.clip_percentile > 50.0 && options.clip_percentile <= 100.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("clip percentile ", options.clip_percentile, " out of range (50, 100]"));
  }
  // Collect every cut's activations over the samples, batch by batch.
  std::vector<std::vector<at::Tensor>> batches(cut_ids.size());
  for (int64_t begin = 0; begin < samples.size(0); begin += options.batch_size) {
    const at::Tensor batch =
        samples.slice(0, begin, std::min(samples.size(0), begin + options.batch_size));
    CLEAVE_ASSIGN_OR_RETURN(std::vector<at::Tensor> activations,
                            model.ActivationsAt(cut_ids, {batch}));
    for (size_t i = 0; i < cut_ids.size(); ++i) batches[i].push_back(activations[i]);
  }
  return common::GuardTorch(absl::StatusCode::kInvalidArgument, "calibrating clip ranges", [&] {
    std::vector<std::vector<common::ClipRange>> ranges;
    for (size_t i = 0; i < cut_ids.size(); ++i) {
      const at::Tensor all = at::cat(batches[i], 0).to(at::kFloat);
      // Rows are what shares a range: the whole tensor, or one channel (dimension 1).
      const at::Tensor rows = codec == common::Codec::kInt8PerChannel && all.dim() >= 2
                                  ? all.transpose(0, 1).reshape({all.size(1), -1})
                                  : all.reshape({1, -1});
      const at::Tensor high = PercentileRows(rows, options.clip_percentile);
      const at::Tensor low = PercentileRows(rows, 100.0 - options.clip_percentile);
      std::vector<common::ClipRange> cut_ranges;
      for (int64_t r = 0; r < rows.size(0); ++r) {
        cut_ranges.push_back({low[r].item<float>(), high[r].item<float>()});
      }
      ranges.push_back(std::move(cut_ranges));
    }
    return ranges;
  });
}

absl::StatusOr<at::Tensor> LoadCalibrationImages(const std::string& dir, int64_t count,
                                                 const common::Shape& input_shape) {
  CLEAVE_ASSIGN_OR_RETURN(auto data, common::LoadFashionMnist(dir, "train", count));
  const common::Shape image(data.images.sizes().begin() + 1, data.images.sizes().end());
  if (input_shape.size() != image.size() + 1 ||
      !std::equal(image.begin(), image.end(), input_shape.begin() + 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration images from ", dir, " are ", common::FormatShape(image),
                     " but the model input is ", common::FormatShape(input_shape)));
  }
  return data.images;
}

}  // namespace cleave::partitioner
