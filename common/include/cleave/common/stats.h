// Summary statistics for latency samples, used by CLIs and benchmarks.
#ifndef CLEAVE_COMMON_STATS_H_
#define CLEAVE_COMMON_STATS_H_

#include <vector>

namespace cleave::common {

// Returns the q-quantile (0 <= q <= 1) of `samples` by linear interpolation between closest
// ranks; 0 for no samples.
[[nodiscard]] double Percentile(std::vector<double> samples, double q);

// Returns the arithmetic mean; 0 for no samples.
[[nodiscard]] double Mean(const std::vector<double>& samples);

}  // namespace cleave::common

#endif  // CLEAVE_COMMON_STATS_H_
