// Cut discovery on the TorchScript graph. A model is frozen (parameters become constants) and
// inlined (submodule calls become plain nodes), so its top-level block is one sequence of
// nodes. A cut is a position in that sequence where exactly one non-constant value is live and
// that value is a tensor: everything before can run on the device, everything after on the
// edge, and only that tensor crosses. Because this works on the graph, residual and concat
// branches, tuple and dict outputs, and scripted or traced models are all handled; a cut never
// falls inside a branch (a residual block is only cut where its branches have joined).
#ifndef CLEAVE_PARTITIONER_MODEL_GRAPH_H_
#define CLEAVE_PARTITIONER_MODEL_GRAPH_H_

#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cleave/common/manifest.h"
#include "cleave/common/tensor_spec.h"

namespace cleave::partitioner {

enum class Granularity {
  kModule,  // cuts where a submodule ends or begins (the default: readable, few)
  kNode,    // every single-tensor position
};

// One candidate cut. `info.id` is stable for a given model: the ordinal of the cut among all
// node-granularity cuts, counting the model input as id 0.
struct CutPoint {
  common::CutInfo info;
  bool module_boundary = false;
  // Estimated cost of everything before the cut: multiply-accumulates of conv, linear and
  // matmul ops, and bytes of the parameters they use.
  int64_t macs_before = 0;
  int64_t param_bytes_before = 0;
  size_t position = 0;  // index into the top-level compute nodes where the cut falls
};

class ModelGraph {
 public:
  // Loads the TorchScript model at `path`, freezes and inlines it, finds every cut and runs a
  // seeded random sample of `input_shapes` (float32) through it to learn the cut shapes.
  // Errors name the file: NOT_FOUND, INVALID_ARGUMENT (not TorchScript, input shapes the model
  // rejects).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ModelGraph>> Load(
      const std::string& path, const std::vector<common::Shape>& input_shapes);

  // The cuts at `granularity`, in execution order (cut 0, the model input, first when the
  // model takes a single tensor).
  [[nodiscard]] std::vector<CutPoint> Cuts(Granularity granularity) const;

  // Builds one TorchScript module per segment for the given cut ids (strictly increasing,
  // each a cut of this model, never 0). Returns INVALID_ARGUMENT naming a bad id.
  [[nodiscard]] absl::StatusOr<std::vector<torch::jit::Module>> Split(
      const std::vector<int>& cut_ids) const;

  // Returns the cut with `id` or INVALID_ARGUMENT ("cut 12 out of range: ...").
  [[nodiscard]] absl::StatusOr<CutPoint> FindCut(int id) const;

  // Resolves cut references as a user types them: ids ("7") or names ("layer2"), in the given
  // order. INVALID_ARGUMENT names an unknown reference and lists the module-level names.
  [[nodiscard]] absl::StatusOr<std::vector<int>> ResolveCuts(
      const std::vector<std::string>& references) const;

  // Runs `inputs` through the model and returns the tensors crossing `cut_ids` (any order;
  // id 0 returns the first input). INVALID_ARGUMENT for unknown ids or rejected inputs.
  [[nodiscard]] absl::StatusOr<std::vector<at::Tensor>> ActivationsAt(
      const std::vector<int>& cut_ids, const std::vector<c10::IValue>& inputs) const;

  // The same estimates for the whole model.
  int64_t total_macs() const { return total_macs_; }
  int64_t total_param_bytes() const { return total_param_bytes_; }

  const std::string& path() const { return path_; }
  const std::string& source_sha256() const { return source_sha256_; }
  const std::vector<common::TensorSpec>& inputs() const { return input_specs_; }
  // The seeded random sample used to learn shapes, and the frozen model's output on it.
  const std::vector<c10::IValue>& sample_inputs() const { return sample_inputs_; }
  const c10::IValue& sample_output() const { return sample_output_; }
  // The frozen, inlined graph (for diagnostics).
  const std::shared_ptr<torch::jit::Graph>& graph() const { return graph_; }

 private:
  ModelGraph() = default;

  // Finds the cut points: positions in the top-level node sequence where exactly one tensor
  // is live (liveness over compute_), named after the modules on either side, unique names.
  void FindCuts();
  // Runs the sample inputs through `original` (the reference output) and through a probe that
  // returns every cut tensor (their shapes and sizes).
  absl::Status RunSample(torch::jit::Module& original,
                         const std::vector<common::Shape>& input_shapes);
  // Fills macs_before / param_bytes_before of every cut and the totals, running the sample
  // once more to learn the operand shapes of the top-level conv / linear / matmul nodes.
  absl::Status EstimateCosts();

  // Returns a module whose forward runs compute nodes [begin, end): its inputs are the model's
  // inputs when begin == 0, else the value live at `begin`; it returns `outputs`.
  torch::jit::Module BuildSegment(size_t begin, size_t end,
                                  const std::vector<torch::jit::Value*>& outputs,
                                  const std::string& class_name) const;

  std::string path_;
  std::string source_sha256_;
  torch::jit::Module frozen_;
  std::shared_ptr<torch::jit::Graph> graph_;
  std::vector<torch::jit::Node*> compute_;        // top-level nodes except constants
  std::vector<torch::jit::Value*> model_inputs_;  // graph inputs without `self`
  std::vector<CutPoint> cuts_;                    // all node-granularity cuts
  std::vector<torch::jit::Value*> cut_values_;    // the tensor crossing cuts_[i]
  std::vector<common::TensorSpec> input_specs_;
  int64_t total_macs_ = 0;
  int64_t total_param_bytes_ = 0;
  std::vector<c10::IValue> sample_inputs_;
  c10::IValue sample_output_;
};

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_MODEL_GRAPH_H_
