#include "cleave/common/tensor_frame.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>

namespace cleave::common {
namespace {

using ::testing::HasSubstr;

at::Tensor Sample() { return at::randn({2, 3, 4, 5}); }

std::string Encoded(const CodecSpec& spec = {}) {
  auto frame = EncodeFrame(Sample(), spec);
  EXPECT_TRUE(frame.ok()) << frame.status();
  return *frame;
}

// Rewrites the CRC-32 as docs/FRAME_FORMAT.md specifies (over bytes [0, 12) and [16, end)),
// so a test that corrupts one field exercises that field's check, not the checksum.
std::string Reseal(std::string frame) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(frame.data()), 12);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(frame.data() + 16),
              static_cast<uInt>(frame.size() - 16));
  const auto value = static_cast<uint32_t>(crc);
  std::memcpy(frame.data() + 12, &value, 4);
  return frame;
}

template <typename T>
std::string WithField(std::string frame, size_t offset, T value) {
  std::memcpy(frame.data() + offset, &value, sizeof(T));
  return Reseal(std::move(frame));
}

void ExpectRejected(const std::string& frame, const std::string& why) {
  auto decoded = DecodeFrame(frame);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr(why));
}

TEST(TensorFrameTest, RawRoundTripIsBitExactForEveryDtype) {
  for (auto dtype : {at::kFloat, at::kHalf, at::kBFloat16, at::kDouble, at::kLong, at::kInt,
                     at::kShort, at::kChar, at::kByte, at::kBool}) {
    const at::Tensor tensor = (at::randn({3, 7}) * 50).to(dtype);
    auto frame = EncodeFrame(tensor);
    ASSERT_TRUE(frame.ok()) << frame.status();
    auto decoded = DecodeFrame(*frame);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(decoded->scalar_type(), dtype);
    EXPECT_TRUE(at::equal(*decoded, tensor)) << c10::toString(dtype);
  }
}

TEST(TensorFrameTest, ZstdRoundTripIsBitExactAndSmallerOnRedundantData) {
  const at::Tensor tensor = at::relu(at::randn({64, 32, 8}));  // half zeros
  auto plain = EncodeFrame(tensor);
  auto packed = EncodeFrame(tensor, CodecSpec{Codec::kRaw, 3});
  ASSERT_TRUE(plain.ok() && packed.ok());
  EXPECT_LT(packed->size(), plain->size());
  auto decoded = DecodeFrame(*packed);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(at::equal(*decoded, tensor));
}

TEST(TensorFrameTest, NonContiguousAndScalarAndEmptyTensorsRoundTrip) {
  const at::Tensor transposed = at::randn({4, 6}).t();
  const at::Tensor scalar = at::scalar_tensor(3.5);
  const at::Tensor empty = at::empty({0, 5});
  for (const at::Tensor& tensor : {transposed, scalar, empty}) {
    auto frame = EncodeFrame(tensor);
    ASSERT_TRUE(frame.ok());
    auto decoded = DecodeFrame(*frame);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(at::equal(*decoded, tensor));
  }
}

TEST(TensorFrameTest, RejectsUndefinedTensorAndBadZstdLevel) {
  EXPECT_FALSE(EncodeFrame(at::Tensor()).ok());
  EXPECT_FALSE(EncodeFrame(Sample(), CodecSpec{Codec::kRaw, 99}).ok());
  EXPECT_FALSE(EncodeFrame(at::randn({2}, at::kComplexFloat)).ok());
}

TEST(TensorFrameTest, RejectsTruncatedHeader) {
  ExpectRejected(Encoded().substr(0, 20), "truncated");
}

TEST(TensorFrameTest, RejectsEmptyInput) { ExpectRejected("", "truncated"); }

TEST(TensorFrameTest, RejectsWrongMagic) {
  std::string frame = Encoded();
  frame[0] = 'X';
  ExpectRejected(frame, "magic");
}

TEST(TensorFrameTest, RejectsUnknownVersion) {
  ExpectRejected(WithField<uint8_t>(Encoded(), 4, 9), "version");
}

TEST(TensorFrameTest, RejectsUnknownCodec) {
  ExpectRejected(WithField<uint8_t>(Encoded(), 5, 77), "codec");
}

TEST(TensorFrameTest, RejectsUnknownDtype) {
  ExpectRejected(WithField<uint8_t>(Encoded(), 7, 42), "dtype");
}

TEST(TensorFrameTest, RejectsTruncatedPayload) {
  const std::string frame = Encoded();
  ExpectRejected(Reseal(frame.substr(0, frame.size() - 1)), "payload size mismatch");
}

TEST(TensorFrameTest, RejectsTrailingBytes) {
  ExpectRejected(Reseal(Encoded() + "junk"), "payload size");
}

TEST(TensorFrameTest, RejectsFlippedPayloadBit) {
  std::string frame = Encoded();
  frame[frame.size() - 3] ^= 0x10;
  ExpectRejected(frame, "checksum");
}

TEST(TensorFrameTest, RejectsShapeBeyondCallerLimitBeforeAllocating) {
  const std::string frame = Encoded();
  DecodeLimits limits;
  limits.max_elements = 100;  // the sample has 120
  auto decoded = DecodeFrame(frame, limits);
  ASSERT_FALSE(decoded.ok());
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("limit"));
}

TEST(TensorFrameTest, RejectsRankBeyondLimit) {
  DecodeLimits limits;
  limits.max_rank = 2;
  auto decoded = DecodeFrame(Encoded(), limits);
  ASSERT_FALSE(decoded.ok());
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("rank"));
}

TEST(TensorFrameTest, RejectsCompressionFlagOutOfRange) {
  ExpectRejected(WithField<uint8_t>(Encoded(), 6, 5), "compression");
}

TEST(TensorFrameTest, RejectsNegativeDimension) {
  ExpectRejected(WithField<int64_t>(Encoded(), 32, -2), "negative dimension");
}

TEST(TensorFrameTest, RejectsShapeThatDisagreesWithPayloadSize) {
  ExpectRejected(WithField<int64_t>(Encoded(), 32, 3), "size mismatch");
}

TEST(TensorFrameTest, RejectsHugeDeclaredShapeWithoutAllocating) {
  // 2^40 elements declared in a 1 KiB frame: refused on the limit, nothing allocated.
  ExpectRejected(WithField<int64_t>(Encoded(), 32, int64_t{1} << 40), "limit");
}

TEST(TensorFrameTest, RejectsRawPayloadSizeThatDisagreesWithValues) {
  std::string frame = Encoded();
  uint64_t raw_bytes = 0;
  std::memcpy(&raw_bytes, frame.data() + 16, 8);
  ExpectRejected(WithField<uint64_t>(frame, 16, raw_bytes + 4), "size mismatch");
}

TEST(TensorFrameTest, RejectsCorruptZstdStreamEvenWithValidChecksum) {
  // Cut the zstd stream short and fix up the sizes and checksum: only zstd can notice.
  const std::string frame = Encoded(CodecSpec{Codec::kRaw, 3});
  const size_t prefix = 32 + 8 * 4;
  std::string cut = frame.substr(0, frame.size() - 5);
  auto decoded = DecodeFrame(WithField<uint64_t>(cut, 24, cut.size() - prefix));
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TensorFrameTest, RejectsParametersOnRawCodec) {
  ExpectRejected(WithField<uint16_t>(Encoded(), 10, 3), "parameters");
}

}  // namespace
}  // namespace cleave::common
