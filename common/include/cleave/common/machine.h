// What machine a measurement was taken on, and when: recorded in profiles and benchmark
// reports so numbers can be traced to where they came from. Also process-wide allocator
// tuning for programs that run forwards in a loop.
#ifndef CLEAVE_COMMON_MACHINE_H_
#define CLEAVE_COMMON_MACHINE_H_

#include <cstdint>
#include <string>

namespace cleave::common {

// The CPU model from /proc/cpuinfo, or "unknown".
[[nodiscard]] std::string CpuModel();

// Hardware threads of this machine (at least 1).
[[nodiscard]] int CpuCores();

// The current time in UTC, ISO 8601 to the second ("2026-11-24T18:00:00Z").
[[nodiscard]] std::string UtcNow();

// Memory this process may use: the machine's physical memory, or the memory limit of its
// control group (cgroup v2 memory.max or v1 memory.limit_in_bytes) when that is lower. What
// a server sizes its default budgets from.
[[nodiscard]] uint64_t UsableMemoryBytes();

// Makes glibc's malloc keep freed memory for reuse instead of returning it to the kernel:
// blocks up to 64 MiB come from the heap rather than fresh mmaps, and heaps are trimmed only
// above 256 MiB free. A server running forwards in a loop otherwise unmaps and re-faults its
// activation buffers on every batch (tens of thousands of page faults a second). Call once,
// early in main, before starting threads.
void RetainFreedMemory();

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_MACHINE_H_
