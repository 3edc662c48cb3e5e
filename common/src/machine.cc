#include "cleave/common/machine.h"

#include <malloc.h>

#include <algorithm>
#include <ctime>
#include <fstream>
#include <limits>
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

namespace {

// The first number in `path`, or 0 when it cannot be read ("max", a missing file).
uint64_t ReadNumber(const char* path) {
  std::ifstream in(path);
  uint64_t value = 0;
  return in >> value ? value : 0;
}

}  // namespace

uint64_t UsableMemoryBytes() {
  uint64_t usable = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (meminfo >> key >> kib) {
    if (key == "MemTotal:") {
      usable = kib * 1024;
      break;
    }
    meminfo.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  for (const char* limit :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    const uint64_t bytes = ReadNumber(limit);
    if (bytes > 0 && (usable == 0 || bytes < usable)) usable = bytes;
  }
  return usable > 0 ? usable : uint64_t{1} << 30;  // unknown: assume 1 GiB
}

void RetainFreedMemory() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace cleave::common
