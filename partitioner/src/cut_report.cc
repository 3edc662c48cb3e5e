#include "cleave/partitioner/cut_report.h"

#include "absl/strings/str_cat.h"
#include "cleave/common/text_table.h"
#include "nlohmann/json.hpp"

namespace cleave::partitioner {

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
                    {"module_boundary", cut.module_boundary}});
  }
  const nlohmann::json document = {{"model", model.path()},
                                   {"sha256", model.source_sha256()},
                                   {"inputs", inputs},
                                   {"cuts", list}};
  return document.dump(2) + "\n";
}

std::string CutsToTable(const std::vector<CutPoint>& cuts) {
  common::TextTable table({"id", "name", "shape", "dtype", "bytes"});
  for (const CutPoint& cut : cuts) {
    table.AddRow({absl::StrCat(cut.info.id), cut.info.name,
                  common::FormatShape(cut.info.tensor.shape),
                  common::DtypeName(cut.info.tensor.dtype), absl::StrCat(cut.info.bytes)});
  }
  return table.Render();
}

}  // namespace cleave::partitioner
