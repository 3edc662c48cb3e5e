// libFuzzer target: bytes as lines of the link emulator's control protocol, run against a real
// emulator (upstream: a socket that listens and never accepts). Every line gets a reply or
// INVALID_ARGUMENT; none may crash, hang, or make the emulator read an unbounded file ("trace
// /dev/zero").
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_split.h"
#include "cleave/link_emulator/control_command.h"
#include "cleave/link_emulator/link_emulator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cleave::link_emulator::LinkEmulator* emulator = [] {
    // The emulator checks that its upstream answers: a listening socket nobody accepts on.
    const int upstream = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(upstream, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
        listen(upstream, 64) != 0 ||
        getsockname(upstream, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      __builtin_trap();
    }
    cleave::link_emulator::LinkEmulatorOptions options;
    options.upstream = "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
    auto started = cleave::link_emulator::LinkEmulator::Start(options);
    if (!started.ok()) __builtin_trap();
    return started->release();
  }();
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    (void)cleave::link_emulator::ExecuteControlCommand(*emulator, line);
  }
  return 0;
}
