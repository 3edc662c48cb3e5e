// What machine a measurement was taken on, and when: recorded in profiles and benchmark
// reports so numbers can be traced to where they came from.
#ifndef CLEAVE_COMMON_MACHINE_H_
#define CLEAVE_COMMON_MACHINE_H_

#include <string>

namespace cleave::common {

// The CPU model from /proc/cpuinfo, or "unknown".
[[nodiscard]] std::string CpuModel();

// Hardware threads of this machine (at least 1).
[[nodiscard]] int CpuCores();

// The current time in UTC, ISO 8601 to the second ("2026-11-24T18:00:00Z").
[[nodiscard]] std::string UtcNow();

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_MACHINE_H_
