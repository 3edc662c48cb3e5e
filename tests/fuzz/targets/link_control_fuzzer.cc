// libFuzzer target: bytes as lines of the link emulator's control protocol, run against a real
// emulator (upstream: a closed port). Every line gets a reply or INVALID_ARGUMENT; none may
// crash, hang, or make the emulator read an unbounded file ("trace /dev/zero").
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "cleave/link_emulator/control_command.h"
#include "cleave/link_emulator/link_emulator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cleave::link_emulator::LinkEmulator* emulator = [] {
    cleave::link_emulator::LinkEmulatorOptions options;
    options.upstream = "127.0.0.1:1";
    return cleave::link_emulator::LinkEmulator::Start(options)->release();
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    (void)cleave::link_emulator::ExecuteControlCommand(*emulator, line);
  }
  return 0;
}
