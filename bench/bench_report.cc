#include "bench/bench_report.h"

#include <fstream>
#include <iostream>

#include "cleave/common/machine.h"

namespace cleave::bench {

nlohmann::json ReportHeader(const std::string& benchmark, int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  return {{"benchmark", benchmark},
          {"command", command},
          {"date", common::UtcNow()},
          {"machine", {{"cpu", common::CpuModel()}, {"cores", common::CpuCores()}}}};
}

bool WriteJsonReport(const nlohmann::json& report, const std::string& path) {
  std::ofstream out(path);
  out << report.dump(2) << "\n";
  if (!out) {
    std::cerr << "cannot write " << path << "\n";
    return false;
  }
  std::cout << "JSON report: " << path << "\n";
  return true;
}

}  // namespace cleave::bench
