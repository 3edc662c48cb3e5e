#include "cleave/common/tensor_spec.h"

#include <array>
#include <limits>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace cleave::common {
namespace {

constexpr std::array<std::pair<const char*, c10::ScalarType>, 10> kDtypes = {{
    {"float32", c10::ScalarType::Float},
    {"float16", c10::ScalarType::Half},
    {"bfloat16", c10::ScalarType::BFloat16},
    {"float64", c10::ScalarType::Double},
    {"int64", c10::ScalarType::Long},
    {"int32", c10::ScalarType::Int},
    {"int16", c10::ScalarType::Short},
    {"int8", c10::ScalarType::Char},
    {"uint8", c10::ScalarType::Byte},
    {"bool", c10::ScalarType::Bool},
}};

}  // namespace

absl::StatusOr<Shape> ParseShape(absl::string_view text) {
  Shape shape;
  const absl::string_view trimmed = absl::StripAsciiWhitespace(text);
  if (trimmed.empty()) return absl::InvalidArgumentError("empty shape: expected e.g. 1,3,224,224");
  for (absl::string_view part : absl::StrSplit(trimmed, absl::ByAnyChar(",x"))) {
    int64_t dim = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &dim) || dim <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad shape '", text, "': dimension '", part, "' is not a positive integer"));
    }
    shape.push_back(dim);
  }
  return shape;
}

absl::StatusOr<std::vector<Shape>> ParseShapes(absl::string_view text) {
  std::vector<Shape> shapes;
  for (absl::string_view part : absl::StrSplit(text, ';')) {
    auto shape = ParseShape(part);
    if (!shape.ok()) return shape.status();
    shapes.push_back(*std::move(shape));
  }
  return shapes;
}

std::string FormatShape(const Shape& shape) {
  return shape.empty() ? std::string("scalar") : absl::StrJoin(shape, "x");
}

int64_t NumElements(const Shape& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

absl::StatusOr<c10::ScalarType> ParseDtype(absl::string_view name) {
  for (const auto& [known, dtype] : kDtypes) {
    if (name == known) return dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype '", name, "': expected one of float32, float16, bfloat16, float64, int64, ",
      "int32, int16, int8, uint8, bool"));
}

std::string DtypeName(c10::ScalarType dtype) {
  for (const auto& [known, candidate] : kDtypes) {
    if (candidate == dtype) return known;
  }
  return c10::toString(dtype);
}

absl::Status CheckBatchedTensor(absl::string_view what, const TensorSpec& actual,
                                const TensorSpec& expected, int64_t min_batch, int64_t max_batch) {
  const bool batched = !expected.shape.empty();
  std::string problem;
  if (actual.dtype != expected.dtype) {
    problem =
        absl::StrCat("dtype ", DtypeName(actual.dtype), " is not ", DtypeName(expected.dtype));
  } else if (actual.shape.size() != expected.shape.size()) {
    problem = absl::StrCat("rank ", actual.shape.size(), " is not ", expected.shape.size());
  } else if (batched && (actual.shape[0] < min_batch || actual.shape[0] > max_batch)) {
    problem = min_batch == max_batch ? absl::StrCat("dimension 0 (the batch) is ", actual.shape[0],
                                                    ", not ", min_batch)
                                     : absl::StrCat("dimension 0 (the batch) is ", actual.shape[0],
                                                    ", outside ", min_batch, "..", max_batch);
  } else {
    for (size_t d = batched ? 1 : 0; d < actual.shape.size() && problem.empty(); ++d) {
      if (actual.shape[d] != expected.shape[d]) {
        problem =
            absl::StrCat("dimension ", d, " is ", actual.shape[d], ", not ", expected.shape[d]);
      }
    }
  }
  if (problem.empty()) return absl::OkStatus();
  std::string wanted = DtypeName(expected.dtype) + " ";
  if (batched) {
    Shape rest(expected.shape.begin() + 1, expected.shape.end());
    wanted += min_batch == max_batch ? absl::StrCat(min_batch) : "B";
    if (!rest.empty()) wanted += "x" + FormatShape(rest);
    if (max_batch == std::numeric_limits<int64_t>::max()) {
      absl::StrAppend(&wanted, " with any batch B >= ", min_batch);
    } else if (min_batch != max_batch) {
      absl::StrAppend(&wanted, " with B from ", min_batch, " to ", max_batch);
    }
  } else {
    wanted += FormatShape(expected.shape);
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " is ", DtypeName(actual.dtype), " ",
                                                 FormatShape(actual.shape), ": ", problem,
                                                 "; the bundle expects ", wanted));
}

}  // namespace cleave::common
