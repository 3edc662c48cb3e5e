// The codec on its own, on plain buffers and without LibTorch (tensor_frame_test.cc covers the
// at::Tensor adapter and every rejection of a corrupt field).
#include "cleave/common/frame_codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

namespace cleave::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<float> Ramp(size_t count) {
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) values[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  return values;
}

TensorView View(const std::vector<float>& values, std::vector<int64_t> shape) {
  return TensorView{values.data(), FrameDtype::kFloat32, std::move(shape)};
}

std::vector<float> Decode(const std::string& frame) {
  auto parsed = ParseFrame(frame);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok()) return {};
  std::vector<float> out(parsed->elements);
  EXPECT_TRUE(DecodePayload(*parsed, out.data()).ok());
  return out;
}

TEST(FrameCodecTest, RawAndZstdRoundTripBitExact) {
  const std::vector<float> values = Ramp(2 * 3 * 4);
  for (int level : {0, 1, -3}) {
    auto frame = EncodeFrameBytes(View(values, {2, 3, 4}), CodecSpec{Codec::kRaw, level, {}});
    ASSERT_TRUE(frame.ok()) << frame.status();
    const std::vector<float> decoded = Decode(*frame);
    ASSERT_EQ(decoded.size(), values.size());
    EXPECT_EQ(std::memcmp(decoded.data(), values.data(), values.size() * sizeof(float)), 0);
  }
}

TEST(FrameCodecTest, HeaderDeclaresTheTensorWithoutTheChecksum) {
  const std::vector<float> values = Ramp(6);
  std::string frame = *EncodeFrameBytes(View(values, {1, 6}), CodecSpec{Codec::kInt8, 3, {}});
  frame.back() ^= 1;  // breaks the checksum, not the header
  auto header = ParseFrameHeader(frame);
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->codec, Codec::kInt8);
  EXPECT_TRUE(header->zstd);
  EXPECT_EQ(header->dtype, FrameDtype::kFloat32);
  EXPECT_THAT(header->shape, ElementsAre(1, 6));
  EXPECT_EQ(header->elements, 6u);
  auto full = ParseFrame(frame);
  EXPECT_TRUE(absl::IsInvalidArgument(full.status())) << full.status();
  EXPECT_THAT(std::string(full.status().message()), HasSubstr("checksum"));
}

TEST(FrameCodecTest, LimitsAreCheckedOnTheHeaderBeforeAnythingIsDecoded) {
  const std::vector<float> values = Ramp(64);
  const std::string frame = *EncodeFrameBytes(View(values, {4, 16}), CodecSpec{});
  DecodeLimits elements;
  elements.max_elements = 63;
  EXPECT_TRUE(absl::IsInvalidArgument(ParseFrameHeader(frame, elements).status()));
  DecodeLimits rank;
  rank.max_rank = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(ParseFrameHeader(frame, rank).status()));
  EXPECT_TRUE(ParseFrameHeader(frame).ok());
}

TEST(FrameCodecTest, AffineCodecsStayWithinHalfAStepOfTheirRange) {
  const std::vector<float> values = Ramp(256);
  const auto [low, high] = std::minmax_element(values.begin(), values.end());
  for (const auto& [codec, levels] :
       {std::pair{Codec::kInt8, 255.0f}, std::pair{Codec::kInt4, 15.0f}}) {
    const std::vector<float> decoded =
        Decode(*EncodeFrameBytes(View(values, {1, 256}), CodecSpec{codec, 0, {}}));
    ASSERT_EQ(decoded.size(), values.size());
    const float half_step = (*high - *low) / levels / 2.0f;
    for (size_t i = 0; i < values.size(); ++i) {
      EXPECT_LE(std::fabs(decoded[i] - values[i]), half_step * 1.001f) << CodecName(codec) << i;
    }
  }
}

TEST(FrameCodecTest, EncoderRefusesWhatItCannotCarry) {
  const std::vector<int32_t> ints(4, 7);
  const TensorView view{ints.data(), FrameDtype::kInt32, {4}};
  EXPECT_TRUE(EncodeFrameBytes(view, CodecSpec{}).ok());  // raw carries any dtype
  EXPECT_TRUE(
      absl::IsInvalidArgument(EncodeFrameBytes(view, CodecSpec{Codec::kInt8, 0, {}}).status()));
  const std::vector<float> values = Ramp(4);
  EXPECT_TRUE(absl::IsInvalidArgument(
      EncodeFrameBytes(View(values, {4}), CodecSpec{Codec::kRaw, kMaxZstdLevel + 1, {}}).status()));
}

TEST(FrameCodecTest, SizeEstimateIsTheHeaderPlusTheCodecsSymbols) {
  EXPECT_EQ(EstimateFrameBytes(0, CodecSpec{}), kFrameHeaderBytes);
  EXPECT_EQ(EstimateFrameBytes(1000, CodecSpec{}), kFrameHeaderBytes + 4000);
  EXPECT_EQ(EstimateFrameBytes(1000, CodecSpec{Codec::kFloat16, 0, {}}), kFrameHeaderBytes + 2000);
  EXPECT_EQ(EstimateFrameBytes(1000, CodecSpec{Codec::kInt8, 0, {}}), kFrameHeaderBytes + 1000);
  EXPECT_EQ(EstimateFrameBytes(1000, CodecSpec{Codec::kInt4, 0, {}}), kFrameHeaderBytes + 500);
  EXPECT_LT(EstimateFrameBytes(1000, CodecSpec{Codec::kInt8, 3, {}}),
            EstimateFrameBytes(1000, CodecSpec{Codec::kInt8, 0, {}}));
  // A real raw frame of a rank-2 tensor is within the estimate's header allowance.
  const std::vector<float> values = Ramp(1000);
  const std::string frame = *EncodeFrameBytes(View(values, {10, 100}), CodecSpec{});
  EXPECT_LE(static_cast<double>(frame.size()), EstimateFrameBytes(1000, CodecSpec{}));
}

TEST(FrameCodecTest, CodecNamesAndDtypeSizes) {
  for (Codec codec : {Codec::kRaw, Codec::kFloat16, Codec::kBFloat16, Codec::kInt8,
                      Codec::kInt8PerChannel, Codec::kInt4}) {
    auto parsed = ParseCodec(CodecName(codec));
    ASSERT_TRUE(parsed.ok()) << CodecName(codec);
    EXPECT_EQ(*parsed, codec);
  }
  EXPECT_TRUE(absl::IsInvalidArgument(ParseCodec("int3").status()));
  EXPECT_EQ(CodecLabel(Codec::kInt8, 1), "int8+zstd1");
  EXPECT_EQ(CodecLabel(Codec::kInt8, -3), "int8+zstd-3");
  EXPECT_EQ(FrameDtypeSize(FrameDtype::kFloat32), 4u);
  EXPECT_EQ(FrameDtypeSize(FrameDtype::kBFloat16), 2u);
  EXPECT_EQ(FrameDtypeSize(FrameDtype::kBool), 1u);
  EXPECT_EQ(FrameDtypeSize(static_cast<FrameDtype>(77)), 0u);
  EXPECT_TRUE(IsAffineCodec(Codec::kInt4));
  EXPECT_FALSE(IsAffineCodec(Codec::kBFloat16));
}

}  // namespace
}  // namespace cleave::common
