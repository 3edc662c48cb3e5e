// What `cleave inspect` prints: the cut table for people and the JSON for tools.
#ifndef CLEAVE_PARTITIONER_CUT_REPORT_H_
#define CLEAVE_PARTITIONER_CUT_REPORT_H_

#include <string>
#include <vector>

#include "cleave/partitioner/model_graph.h"

namespace cleave::partitioner {

// {"model", "sha256", "inputs", "total_macs", "total_param_bytes", "cuts": [{"id", "name",
// "shape", "dtype", "bytes", "bytes_fp32", "bytes_int8", "macs_before", "param_bytes_before",
// "module_boundary"}, ...]}
[[nodiscard]] std::string CutsToJson(const ModelGraph& model, const std::vector<CutPoint>& cuts);

// One row per cut: id, name, shape, dtype, fp32 and int8 bytes, MACs and parameters before.
[[nodiscard]] std::string CutsToTable(const std::vector<CutPoint>& cuts);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_CUT_REPORT_H_
