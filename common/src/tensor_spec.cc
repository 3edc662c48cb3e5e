#include "cleave/common/tensor_spec.h"

#include <array>
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

}  // namespace cleave::common
