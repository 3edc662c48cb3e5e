// Reader for IDX files (the MNIST / Fashion-MNIST format, plain or gzip-compressed), with every
// size checked: a bad magic, a truncated file or an image/label count mismatch is an error that
// names the file, never a crash.
#ifndef CLEAVE_COMMON_IDX_DATASET_H_
#define CLEAVE_COMMON_IDX_DATASET_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

// Where Debian's dataset-fashion-mnist package installs the data.
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

struct LabeledImages {
  at::Tensor images;  // float32 [N, 1, H, W], pixel / 255
  at::Tensor labels;  // int64 [N]
};

// Reads an unsigned-byte IDX file (gzip-compressed when it ends in .gz) into a uint8 tensor
// whose shape is the file's dimensions. INVALID_ARGUMENT / DATA_LOSS name the problem.
[[nodiscard]] absl::StatusOr<at::Tensor> ReadIdxFile(const std::string& path);

// Loads split "train" or "t10k" from `dir`, which holds <split>-images-idx3-ubyte and
// <split>-labels-idx1-ubyte, each optionally with a .gz suffix. Keeps the first `limit`
// samples when given.
[[nodiscard]] absl::StatusOr<LabeledImages> LoadFashionMnist(
    const std::string& dir, absl::string_view split, std::optional<int64_t> limit = std::nullopt);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_IDX_DATASET_H_
