#include "cleave/common/tensor_frame.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstring>
#include <limits>

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
  const uint32_t checksum = FrameChecksum(frame);
  std::memcpy(frame.data() + 12, &checksum, 4);
  return frame;
}

TEST(TensorFrameTest, ChecksumIsTheDocumentedCrc32) {
  const std::string frame = EncodeFrame(at::rand({3, 3})).value();
  uLong crc = crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(frame.data()), 12);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(frame.data() + 16), frame.size() - 16);
  uint32_t stored = 0;
  std::memcpy(&stored, frame.data() + 12, 4);
  EXPECT_EQ(stored, static_cast<uint32_t>(crc));
  EXPECT_EQ(FrameChecksum(frame), stored);
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
  EXPECT_THAT(
      std::string(
          EncodeFrame(Sample(), CodecSpec{Codec::kRaw, kMinZstdLevel - 1}).status().message()),
      HasSubstr("zstd level -8 out of range -7..19"));
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

TEST(TensorFrameTest, HeaderParseDeclaresTheTensorAndLeavesTheChecksumToTheFullParse) {
  std::string frame = Encoded();
  frame[frame.size() - 3] ^= 0x10;  // payload damage: only the checksum can tell
  auto header = ParseFrameHeader(frame);
  ASSERT_TRUE(header.ok()) << header.status();
  const TensorSpec declared = DeclaredTensor(*header);
  EXPECT_EQ(declared.dtype, c10::ScalarType::Float);
  EXPECT_EQ(declared.shape, (Shape{2, 3, 4, 5}));
  EXPECT_FALSE(ParseFrame(frame).ok());
  // Every other check still runs on the header alone.
  EXPECT_FALSE(ParseFrameHeader(Reseal(Encoded() + "junk")).ok());
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

TEST(TensorFrameTest, RejectsParameterCountThatDisagreesWithCodec) {
  // Two parameters declared on a raw frame, carved out of the payload: the sizes still add
  // up, so the codec's own parameter check must catch it.
  std::string frame = Encoded();
  uint64_t raw_bytes = 0;
  std::memcpy(&raw_bytes, frame.data() + 16, 8);
  frame = WithField<uint16_t>(frame, 10, 2);
  frame = WithField<uint64_t>(frame, 24, frame.size() - 64 - 8);
  ExpectRejected(frame, "parameters");
}

// ---- Lossy codecs ----------------------------------------------------------------------------

at::Tensor Decoded(const at::Tensor& tensor, const CodecSpec& spec) {
  auto frame = EncodeFrame(tensor, spec);
  EXPECT_TRUE(frame.ok()) << frame.status();
  if (!frame.ok()) return at::Tensor();
  auto decoded = DecodeFrame(*frame);
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return decoded.ok() ? *decoded : at::Tensor();
}

// Activations as they look after a ReLU, with a few large outliers.
at::Tensor Activation() {
  at::Tensor x = at::relu(at::randn({2, 8, 6, 6}));
  x.view(-1).slice(0, 0, 5).fill_(12.0);
  return x;
}

TEST(TensorFrameTest, Fp16AndBf16MatchLibTorchRounding) {
  at::Tensor values = at::randn({4096}) * 1000;
  values.slice(0, 0, 8).copy_(at::tensor({0.0f, -0.0f, 1e-6f, -3e-8f, 65504.0f, 65520.0f, 70000.0f,
                                          std::numeric_limits<float>::infinity()}));
  EXPECT_TRUE(at::equal(Decoded(values, {Codec::kFloat16}), values.to(at::kHalf).to(at::kFloat)));
  EXPECT_TRUE(
      at::equal(Decoded(values, {Codec::kBFloat16}), values.to(at::kBFloat16).to(at::kFloat)));
  const at::Tensor nan = at::full({3}, std::numeric_limits<float>::quiet_NaN());
  EXPECT_TRUE(Decoded(nan, {Codec::kFloat16}).isnan().all().item<bool>());
  EXPECT_TRUE(Decoded(nan, {Codec::kBFloat16}).isnan().all().item<bool>());
}

TEST(TensorFrameTest, Int8PerTensorStaysWithinHalfAStep) {
  const at::Tensor x = Activation();
  const float scale = (x.max().item<float>() - x.min().item<float>()) / 255.0f;
  const at::Tensor decoded = Decoded(x, {Codec::kInt8});
  EXPECT_LE((decoded - x).abs().max().item<float>(), scale / 2 * (1 + 1e-5f));
  auto frame = EncodeFrame(x, {Codec::kInt8});
  EXPECT_EQ(frame->size(), 32 + 8 * 4 + 4 * 2 + static_cast<size_t>(x.numel()));
}

TEST(TensorFrameTest, Int8ClipRangeClampsOutliersAndNarrowsTheStep) {
  const at::Tensor x = Activation();
  const ClipRange range{0.0f, 4.0f};
  const at::Tensor decoded = Decoded(x, {Codec::kInt8, 0, {range}});
  const at::Tensor inside = x <= range.max;
  const float scale = (range.max - range.min) / 255.0f;
  EXPECT_LE((decoded - x).masked_select(inside).abs().max().item<float>(), scale / 2 * (1 + 1e-5f));
  EXPECT_TRUE(at::allclose(decoded.masked_select(~inside),
                           at::full({(~inside).sum().item<int64_t>()}, range.max)));
}

TEST(TensorFrameTest, Int8PerChannelUsesEachChannelsOwnStep) {
  at::Tensor x = at::randn({3, 4, 5, 5});
  x.select(1, 2).mul_(100);  // one channel with a much wider range
  const at::Tensor decoded = Decoded(x, {Codec::kInt8PerChannel});
  for (int64_t c = 0; c < 4; ++c) {
    const at::Tensor channel = x.select(1, c);
    const float scale = (channel.max().item<float>() - channel.min().item<float>()) / 255.0f;
    EXPECT_LE((decoded.select(1, c) - channel).abs().max().item<float>(), scale / 2 * (1 + 1e-5f))
        << "channel " << c;
  }
  std::vector<ClipRange> ranges(4, ClipRange{-1.0f, 1.0f});
  const at::Tensor clipped = Decoded(x, {Codec::kInt8PerChannel, 0, ranges});
  EXPECT_LE(clipped.abs().max().item<float>(), 1.0f + 1e-6f);
}

TEST(TensorFrameTest, Int4StaysWithinHalfAStepAndPacksTwoPerByte) {
  const at::Tensor x = at::rand({7, 9});  // odd count: the last byte holds one value
  const float scale = (x.max().item<float>() - x.min().item<float>()) / 15.0f;
  const at::Tensor decoded = Decoded(x, {Codec::kInt4});
  EXPECT_LE((decoded - x).abs().max().item<float>(), scale / 2 * (1 + 1e-5f));
  EXPECT_EQ(EncodeFrame(x, {Codec::kInt4})->size(), 32 + 8 * 2 + 4 * 2 + 32u);
}

TEST(TensorFrameTest, ZstdIsLosslessOnTopOfEveryCodec) {
  const at::Tensor x = Activation();
  for (Codec codec : {Codec::kRaw, Codec::kFloat16, Codec::kBFloat16, Codec::kInt8,
                      Codec::kInt8PerChannel, Codec::kInt4}) {
    EXPECT_TRUE(at::equal(Decoded(x, {codec, 3}), Decoded(x, {codec, 0}))) << CodecName(codec);
  }
  EXPECT_LT(EncodeFrame(x, {Codec::kInt8, 3})->size(), EncodeFrame(x, {Codec::kInt8})->size());
}

TEST(TensorFrameTest, ZstdFastModesAreLosslessAndStillCompress) {
  // Half the channels silent, as after a ReLU: long runs every level can find.
  at::Tensor x = at::relu(at::randn({2, 8, 16, 16}));
  x.slice(1, 0, 4).zero_();
  for (int level : {-1, -3, kMinZstdLevel}) {
    EXPECT_TRUE(at::equal(Decoded(x, {Codec::kInt8, level}), Decoded(x, {Codec::kInt8, 0})))
        << level;
    EXPECT_LT(EncodeFrame(x, {Codec::kInt8, level})->size(), EncodeFrame(x, {Codec::kInt8})->size())
        << level;
  }
  EXPECT_EQ(CodecLabel(Codec::kInt8, -3), "int8+zstd-3");
  EXPECT_EQ(CodecLabel(Codec::kInt4, 1), "int4+zstd1");
  EXPECT_EQ(CodecLabel(Codec::kRaw, 0), "raw");
}

TEST(TensorFrameTest, ConstantAndEmptyTensorsQuantize) {
  const at::Tensor constant = at::full({10}, 3.25f);
  EXPECT_TRUE(at::equal(Decoded(constant, {Codec::kInt8}), constant));
  EXPECT_EQ(Decoded(at::empty({0, 4}), {Codec::kInt4}).numel(), 0);
}

TEST(TensorFrameTest, CodecNamesRoundTrip) {
  for (Codec codec : {Codec::kRaw, Codec::kFloat16, Codec::kBFloat16, Codec::kInt8,
                      Codec::kInt8PerChannel, Codec::kInt4}) {
    EXPECT_EQ(*ParseCodec(CodecName(codec)), codec);
  }
  EXPECT_FALSE(ParseCodec("int3").ok());
}

TEST(TensorFrameTest, EncoderRejectsSpecsTheCodecCannotHonour) {
  EXPECT_THAT(std::string(EncodeFrame(at::ones({4}, at::kLong), {Codec::kInt8}).status().message()),
              HasSubstr("float32"));
  EXPECT_THAT(
      std::string(EncodeFrame(at::ones({4}), {Codec::kRaw, 0, {{0, 1}}}).status().message()),
      HasSubstr("no clip range"));
  EXPECT_THAT(std::string(EncodeFrame(at::ones({1, 3, 2}), {Codec::kInt8PerChannel, 0, {{0, 1}}})
                              .status()
                              .message()),
              HasSubstr("3 channels"));
  EXPECT_THAT(std::string(EncodeFrame(at::ones({4}), {Codec::kInt8PerChannel}).status().message()),
              HasSubstr("rank >= 2"));
  EXPECT_THAT(
      std::string(EncodeFrame(at::ones({4}), {Codec::kInt8, 0, {{2, 1}}}).status().message()),
      HasSubstr("min exceeds max"));
  at::Tensor infinite = at::ones({4});
  infinite[1] = std::numeric_limits<float>::infinity();
  EXPECT_THAT(std::string(EncodeFrame(infinite, {Codec::kInt8}).status().message()),
              HasSubstr("infinite"));
}

TEST(TensorFrameTest, NanQuantizesToTheRangeMinimum) {
  at::Tensor x = at::arange(10, at::kFloat);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(Decoded(x, {Codec::kInt8})[3].item<float>(), 0.0f);
}

TEST(TensorFrameTest, RejectsNonFiniteOrZeroScale) {
  const std::string frame = EncodeFrame(at::rand({2, 3}), {Codec::kInt8}).value();
  const size_t scale_offset = 32 + 8 * 2 + 4;
  ExpectRejected(WithField<float>(frame, scale_offset, 0.0f), "positive scale");
  ExpectRejected(WithField<float>(frame, scale_offset, std::numeric_limits<float>::infinity()),
                 "finite");
}

TEST(TensorFrameTest, RejectsChannelAxisOnPerTensorCodec) {
  const std::string frame = EncodeFrame(at::rand({2, 3}), {Codec::kInt8}).value();
  ExpectRejected(WithField<uint8_t>(frame, 9, 1), "channel axis");
}

TEST(TensorFrameTest, RejectsQuantizedCodecDecodingToOtherDtype) {
  const std::string frame = EncodeFrame(at::rand({2, 3}), {Codec::kInt8}).value();
  ExpectRejected(WithField<uint8_t>(frame, 7, 5), "float32 only");
}

}  // namespace
}  // namespace cleave::common
