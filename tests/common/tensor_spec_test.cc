#include "cleave/common/tensor_spec.h"

#include <gtest/gtest.h>

#include <limits>
#include <string>

namespace cleave::common {
namespace {

TEST(TensorSpecTest, ParsesCommaAndXSeparatedShapes) {
  EXPECT_EQ(*ParseShape("1,3,224,224"), (Shape{1, 3, 224, 224}));
  EXPECT_EQ(*ParseShape(" 1x3x8x8 "), (Shape{1, 3, 8, 8}));
  EXPECT_EQ(*ParseShapes("1,3;1,10"), (std::vector<Shape>{{1, 3}, {1, 10}}));
}

TEST(TensorSpecTest, RejectsBadShapesNamingTheDimension) {
  for (const char* bad : {"", "1,,3", "1,-3", "1,0", "a,b", "1.5"}) {
    auto shape = ParseShape(bad);
    EXPECT_FALSE(shape.ok()) << bad;
    EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_NE(ParseShape("1,x3").status().message().find("dimension"), std::string::npos);
}

TEST(TensorSpecTest, DtypeNamesRoundTrip) {
  for (auto dtype : {c10::ScalarType::Float, c10::ScalarType::Half, c10::ScalarType::Long,
                     c10::ScalarType::Bool}) {
    EXPECT_EQ(*ParseDtype(DtypeName(dtype)), dtype);
  }
  EXPECT_FALSE(ParseDtype("float33").ok());
}

TEST(TensorSpecTest, FormatsAndCountsShapes) {
  EXPECT_EQ(FormatShape({1, 3, 8, 8}), "1x3x8x8");
  EXPECT_EQ(FormatShape({}), "scalar");
  EXPECT_EQ(NumElements({2, 3, 4}), 24);
  EXPECT_EQ(NumElements({}), 1);
}

TEST(TensorSpecTest, BatchedTensorCheckNamesTheDimensionThatDiffers) {
  const TensorSpec expected{{1, 16, 8, 8}, c10::ScalarType::Float};
  auto check = [&](const TensorSpec& actual, int64_t min_batch, int64_t max_batch) {
    return std::string(
        CheckBatchedTensor("activation", actual, expected, min_batch, max_batch).message());
  };
  EXPECT_TRUE(
      CheckBatchedTensor("a", {{4, 16, 8, 8}, c10::ScalarType::Float}, expected, 1, 4).ok());
  EXPECT_EQ(check({{2674, 16, 8, 8}, c10::ScalarType::Float}, 1, 1),
            "activation is float32 2674x16x8x8: dimension 0 (the batch) is 2674, not 1; the "
            "bundle expects float32 1x16x8x8");
  EXPECT_EQ(check({{5, 16, 8, 8}, c10::ScalarType::Float}, 1, 4),
            "activation is float32 5x16x8x8: dimension 0 (the batch) is 5, outside 1..4; the "
            "bundle expects float32 Bx16x8x8 with B from 1 to 4");
  EXPECT_EQ(check({{0, 16, 8, 8}, c10::ScalarType::Float}, 1, 4).find("outside 1..4") !=
                std::string::npos,
            true);
  EXPECT_EQ(check({{1, 16, 8, 9000}, c10::ScalarType::Float}, 1, 1),
            "activation is float32 1x16x8x9000: dimension 3 is 9000, not 8; the bundle expects "
            "float32 1x16x8x8");
  EXPECT_EQ(check({{1, 16, 8}, c10::ScalarType::Float}, 1, 1),
            "activation is float32 1x16x8: rank 3 is not 4; the bundle expects float32 1x16x8x8");
  EXPECT_EQ(check({{1, 16, 8, 8}, c10::ScalarType::Double}, 1, 1),
            "activation is float64 1x16x8x8: dtype float64 is not float32; the bundle expects "
            "float32 1x16x8x8");
  EXPECT_EQ(check({{1, 16, 8, 9}, c10::ScalarType::Float}, 1, std::numeric_limits<int64_t>::max()),
            "activation is float32 1x16x8x9: dimension 3 is 9, not 8; the bundle expects "
            "float32 Bx16x8x8 with any batch B >= 1");
  // A scalar has no batch: it must match exactly.
  const TensorSpec scalar{{}, c10::ScalarType::Float};
  EXPECT_TRUE(CheckBatchedTensor("s", scalar, scalar, 1, 1).ok());
  EXPECT_FALSE(CheckBatchedTensor("s", {{1}, c10::ScalarType::Float}, scalar, 1, 1).ok());
}

}  // namespace
}  // namespace cleave::common
