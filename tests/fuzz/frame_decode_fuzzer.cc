// libFuzzer target: arbitrary bytes through ParseFrame and DecodePayload. The input's CRC is
// rewritten first so the fuzzer reaches the checks behind the checksum (the checksum itself is
// covered by unit tests); any crash, out-of-bounds access or undefined behaviour is a bug.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cleave/common/frame_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string frame(reinterpret_cast<const char*>(data), size);
  if (frame.size() >= 16) {
    const uint32_t checksum = cleave::common::FrameChecksum(frame);
    std::memcpy(frame.data() + 12, &checksum, 4);
  }
  cleave::common::DecodeLimits limits;
  limits.max_elements = 1 << 20;  // the fuzzer's memory budget, as a server would set it
  auto parsed = cleave::common::ParseFrame(frame, limits);
  if (!parsed.ok()) return 0;
  std::vector<char> out(parsed->elements * cleave::common::FrameDtypeSize(parsed->dtype));
  (void)cleave::common::DecodePayload(*parsed, out.data());
  return 0;
}
