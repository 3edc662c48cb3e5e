#include "cleave/common/machine.h"

#include <malloc.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <thread>

namespace cleave::common {

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      return line.substr(line.find(':') + 2);
    }
  }
  return "unknown";
}

int CpuCores() { return std::max(1, static_cast<int>(std::thread::hardware_concurrency())); }

std::string UtcNow() {
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return date;
}

void RetainFreedMemory() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace cleave::common
