#include "cleave/partitioner/cut_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cleave/common/text_table.h"
#include "nlohmann/json.hpp"

namespace cleave::partitioner {
namespace {

std::string HumanBytes(int64_t bytes) {
  if (bytes >= (int64_t{1} << 20)) return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
  if (bytes >= 1024) return absl::StrFormat("%.1f KiB", bytes / 1024.0);
  return absl::StrCat(bytes, " B");
}

}  // namespace

std::string CutsToJson(const ModelGraph& model, const std::vector<CutPoint>& cuts) {
  nlohmann::json inputs = nlohmann::json::array();
  for (const common::TensorSpec& input : model.inputs()) {
    inputs.push_back({{"shape", input.shape}, {"dtype", common::DtypeName(input.dtype)}});
  }
  nlohmann::json list = nlohmann::json::array();
  for (const CutPoint& cut : cuts) {
    list.push_back({{"id", cut.info.id},
                    {"name", cut.info.name},
                    {"shape", cut.info.tensor.shape},
                    {"dtype", common::DtypeName(cut.info.tensor.dtype)},
                    {"bytes", cut.info.bytes},
                    {"bytes_fp32", common::NumElements(cut.info.tensor.shape) * 4},
                    {"bytes_int8", common::NumElements(cut.info.tensor.shape)},
                    {"macs_before", cut.macs_before},
                    {"param_bytes_before", cut.param_bytes_before},
                    {"module_boundary", cut.module_boundary}});
  }
  const nlohmann::json document = {{"model", model.path()},
                                   {"sha256", model.source_sha256()},
                                   {"inputs", inputs},
                                   {"total_macs", model.total_macs()},
                                   {"total_param_bytes", model.total_param_bytes()},
                                   {"cuts", list}};
  return document.dump(2) + "\n";
}

std::string CutsToTable(const std::vector<CutPoint>& cuts) {
  common::TextTable table({"id", "name", "shape", "dtype", "fp32 bytes", "int8 bytes",
                           "MMACs before", "params before"});
  for (const CutPoint& cut : cuts) {
    const int64_t elements = common::NumElements(cut.info.tensor.shape);
    table.AddRow({absl::StrCat(cut.info.id), cut.info.name,
                  common::FormatShape(cut.info.tensor.shape),
                  common::DtypeName(cut.info.tensor.dtype), absl::StrCat(elements * 4),
                  absl::StrCat(elements), absl::StrFormat("%.2f", cut.macs_before / 1e6),
                  HumanBytes(cut.param_bytes_before)});
  }
  return table.Render();
}

}  // namespace cleave::partitioner
