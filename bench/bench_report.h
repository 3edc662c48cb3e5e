// Output helpers shared by the benchmark programs: every benchmark prints a readable table
// and writes the same numbers as JSON, with the machine and the command recorded, so a result
// in docs/PERFORMANCE.md can always be traced to how it was produced.
#ifndef CLEAVE_BENCH_BENCH_REPORT_H_
#define CLEAVE_BENCH_BENCH_REPORT_H_

#include <string>

#include "nlohmann/json.hpp"

namespace cleave::bench {

// {"benchmark", "command", "date", "machine": {"cpu", "cores"}, ...} for the report header.
nlohmann::json ReportHeader(const std::string& benchmark, int argc, char** argv);

// Writes `report` to `path` (pretty JSON); prints a line saying where. Returns false on error.
bool WriteJsonReport(const nlohmann::json& report, const std::string& path);

}  // namespace cleave::bench

#endif  // CLEAVE_BENCH_BENCH_REPORT_H_
