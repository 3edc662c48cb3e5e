// libFuzzer target: bytes as the edge's JSON config file through ApplyConfigFile. Every input
// is applied or refused with INVALID_ARGUMENT; none may crash.
#include <cstdint>
#include <fstream>
#include <string>

#include "cleave/edge_server/edge_server.h"
#include "tests/fuzz/targets/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = cleave::fuzz::FuzzWorkDir() + "/edge.json";
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  cleave::edge_server::EdgeServerOptions options;
  const absl::Status status = cleave::edge_server::ApplyConfigFile(path, &options);
  if (!status.ok() && status.code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
  return 0;
}
