#include "cleave/common/tensor_spec.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace cleave::common
