#include "bench/bench_report.h"

#include <ctime>
#include <fstream>
#include <iostream>
#include <thread>

namespace cleave::bench {
namespace {

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

}  // namespace

nlohmann::json ReportHeader(const std::string& benchmark, int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return {{"benchmark", benchmark},
          {"command", command},
          {"date", date},
          {"machine", {{"cpu", CpuModel()}, {"cores", std::thread::hardware_concurrency()}}}};
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
