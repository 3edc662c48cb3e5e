// Shapes and dtypes as they appear on command lines and in manifests.
#ifndef CLEAVE_COMMON_TENSOR_SPEC_H_
#define CLEAVE_COMMON_TENSOR_SPEC_H_

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cleave::common {

using Shape = std::vector<int64_t>;

// The static description of one tensor: what crosses a cut or enters a segment.
struct TensorSpec {
  Shape shape;
  c10::ScalarType dtype = c10::ScalarType::Float;

  friend bool operator==(const TensorSpec& a, const TensorSpec& b) {
    return a.shape == b.shape && a.dtype == b.dtype;
  }
};

// Parses "1,3,224,224" (also accepts 'x' as separator). Every dimension must be positive.
[[nodiscard]] absl::StatusOr<Shape> ParseShape(absl::string_view text);

// Parses several shapes separated by ';' ("1,3,32,32;1,10"), for models with several inputs.
[[nodiscard]] absl::StatusOr<std::vector<Shape>> ParseShapes(absl::string_view text);

// Formats a shape as "1x3x224x224" for tables and messages.
[[nodiscard]] std::string FormatShape(const Shape& shape);

// Number of elements of `shape` (1 for a scalar).
[[nodiscard]] int64_t NumElements(const Shape& shape);

// Returns OK when a tensor of type `actual` matches `expected` in dtype, rank and every
// dimension except dimension 0, the batch, which must lie in [min_batch, max_batch]; a scalar
// `expected` must be matched exactly. INVALID_ARGUMENT otherwise, naming `what`, the first
// dimension that differs and both types.
[[nodiscard]] absl::Status CheckBatchedTensor(absl::string_view what, const TensorSpec& actual,
                                              const TensorSpec& expected, int64_t min_batch,
                                              int64_t max_batch);

// Manifest names of dtypes: "float32", "float16", "bfloat16", "float64", "int64", "int32",
// "int16", "int8", "uint8", "bool".
[[nodiscard]] absl::StatusOr<c10::ScalarType> ParseDtype(absl::string_view name);
[[nodiscard]] std::string DtypeName(c10::ScalarType dtype);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_TENSOR_SPEC_H_
