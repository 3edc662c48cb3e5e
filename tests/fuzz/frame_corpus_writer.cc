// Writes a seed corpus for the frame fuzzer: one valid frame per codec, with and without
// zstd, so fuzzing starts from every decoder path. Usage: frame_corpus_writer DIR
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "cleave/common/frame_codec.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  using cleave::common::Codec;
  std::vector<float> values(2 * 3 * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.37f - 2.0f;
  const cleave::common::TensorView view{
      values.data(), cleave::common::FrameDtype::kFloat32, {2, 3, 4}};
  int written = 0;
  for (Codec codec : {Codec::kRaw, Codec::kFloat16, Codec::kBFloat16, Codec::kInt8,
                      Codec::kInt8PerChannel, Codec::kInt4}) {
    for (int zstd : {0, 3}) {
      auto frame = cleave::common::EncodeFrameBytes(view, {codec, zstd, {}});
      if (!frame.ok()) {
        std::fprintf(stderr, "encode failed: %s\n", std::string(frame.status().message()).c_str());
        return 1;
      }
      const std::string path = std::string(argv[1]) + "/" + cleave::common::CodecName(codec) +
                               "-zstd" + std::to_string(zstd) + ".frame";
      std::ofstream(path, std::ios::binary) << *frame;
      ++written;
    }
  }
  std::printf("wrote %d seed frames to %s\n", written, argv[1]);
  return 0;
}
