#include "cleave/partitioner/model_graph.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cleave/common/files.h"
#include "cleave/common/sha256.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"

namespace cleave::partitioner {
namespace {

using torch::jit::Graph;
using torch::jit::Node;
using torch::jit::Value;

// Seed of the sample input: fixed so shapes, verification data and bundle bytes are
// reproducible.
constexpr uint64_t kSampleSeed = 20261124;

// Wraps `graph` (whose input 0 is `self`) as the forward method of a new attribute-free
// module, which TorchScript can save and load like any other.
torch::jit::Module ModuleFromGraph(const std::shared_ptr<Graph>& graph,
                                   const std::string& class_name) {
  auto unit = std::make_shared<torch::jit::CompilationUnit>();
  auto type = c10::ClassType::create(c10::QualifiedName("__torch__.cleave." + class_name), unit,
                                     /*is_module=*/true);
  unit->register_type(type);
  torch::jit::Module module(unit, type);
  graph->inputs()[0]->setType(type);
  torch::jit::Function* forward =
      unit->create_function(c10::QualifiedName(*type->name(), "forward"), graph);
  type->addMethod(forward);
  return module;
}

// The module path a node was inlined from, e.g. {"layer2", "1", "conv1"}.
std::vector<std::string> ModulePath(const Node* node) {
  std::vector<std::string> path;
  if (auto callstack = node->callstack()) {
    for (const auto& entry : (*callstack)->vec()) {
      const auto& instance = std::get<2>(entry);
      // Modules scripted in Python record the top-level call as instance "SELF": not a name
      // a user wrote, so leave it out ("layer2", not "SELF.layer2").
      if (instance && instance->instance_name() != "SELF") {
        path.push_back(instance->instance_name());
      }
    }
  }
  return path;
}

// The position in the top-level block that contains `node` (possibly nested in an If/Loop).
size_t TopLevelPosition(Node* node, const Graph& graph,
                        const std::unordered_map<const Node*, size_t>& positions,
                        size_t end_position) {
  while (node->owningBlock() != graph.block()) node = node->owningBlock()->owningNode();
  if (node == graph.return_node()) return end_position;
  return positions.at(node);
}

// Readable cut name: the outermost module that has just finished ("layer2"), or else the
// module path and the op before the cut ("layer1.0/relu").
std::string CutName(const std::vector<std::string>& before, const std::vector<std::string>& after,
                    const Node* node_before, bool* module_boundary) {
  size_t common = 0;
  while (common < before.size() && common < after.size() && before[common] == after[common]) {
    ++common;
  }
  *module_boundary = before.size() > common || after.size() > common;
  if (before.size() > common) {
    return absl::StrJoin(before.begin(), before.begin() + common + 1, ".");
  }
  const std::string op = node_before->kind().toUnqualString();
  return before.empty() ? op : absl::StrCat(absl::StrJoin(before, "."), "/", op);
}

bool IsTensor(const Value* value) { return value->type()->kind() == c10::TypeKind::TensorType; }

}  // namespace

absl::StatusOr<std::unique_ptr<ModelGraph>> ModelGraph::Load(
    const std::string& path, const std::vector<common::Shape>& input_shapes) {
  CLEAVE_ASSIGN_OR_RETURN(std::string bytes, common::ReadFile(path));
  CLEAVE_ASSIGN_OR_RETURN(torch::jit::Module original,
                          common::LoadTorchScriptFromBytes(bytes, path));
  std::unique_ptr<ModelGraph> model(new ModelGraph());
  model->path_ = path;
  model->source_sha256_ = common::Sha256Hex(bytes);
  if (!original.find_method("forward")) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model has no forward method"));
  }
  // optimize_numerics=false keeps every op as the model wrote it, so the segments reproduce
  // the original output exactly instead of within folding error.
  CLEAVE_ASSIGN_OR_RETURN(
      model->frozen_,
      common::GuardTorch(absl::StatusCode::kInvalidArgument, absl::StrCat(path, ": freezing"),
                         [&] { return torch::jit::freeze(original, c10::nullopt, false); }));
  model->graph_ =
      torch::jit::toGraphFunction(model->frozen_.get_method("forward").function()).graph();
  Graph& graph = *model->graph_;

  Value* self = graph.inputs()[0];
  if (self->hasUses()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": forward still uses module state after freezing; cleave needs a ",
                     "model whose forward is a pure function of its inputs"));
  }
  for (size_t i = 1; i < graph.inputs().size(); ++i) {
    model->model_inputs_.push_back(graph.inputs()[i]);
  }
  if (input_shapes.size() != model->model_inputs_.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model takes ",
                                                   model->model_inputs_.size(), " inputs but ",
                                                   input_shapes.size(), " input shapes given"));
  }

  model->FindCuts();
  CLEAVE_RETURN_IF_ERROR(model->RunSample(original, input_shapes));
  CLEAVE_RETURN_IF_ERROR(model->EstimateCosts());
  return model;
}

void ModelGraph::FindCuts() {
  Graph& graph = *graph_;
  // Liveness over the top-level sequence of compute nodes.
  std::unordered_map<const Node*, size_t> positions;
  for (Node* node : graph.nodes()) {
    if (node->kind() == c10::prim::Constant) continue;
    positions[node] = compute_.size();
    compute_.push_back(node);
  }
  const size_t count = compute_.size();
  // A value defined at position d (inputs: before 0) and last used at position u is live at
  // every cut position p with d < p <= u; starts[p] / ends[p] list the values entering and
  // leaving liveness at p.
  std::vector<std::vector<Value*>> starts(count + 2), ends(count + 2);
  auto track = [&](Value* value, size_t first_live) {
    if (!value->hasUses()) return;
    size_t last_use = 0;
    for (const torch::jit::Use& use : value->uses()) {
      last_use = std::max(last_use, TopLevelPosition(use.user, graph, positions, count));
    }
    if (last_use < first_live) return;
    starts[first_live].push_back(value);
    ends[last_use + 1].push_back(value);
  };
  for (Value* input : model_inputs_) track(input, 0);
  for (size_t d = 0; d < count; ++d) {
    for (Value* output : compute_[d]->outputs()) track(output, d + 1);
  }

  std::set<Value*> live;
  int next_id = 1;
  for (size_t p = 0; p < count; ++p) {
    for (Value* value : ends[p]) live.erase(value);
    for (Value* value : starts[p]) live.insert(value);
    if (p == 0 || live.size() != 1 || !IsTensor(*live.begin())) continue;
    CutPoint cut;
    cut.position = p;
    cut.info.name = CutName(ModulePath(compute_[p - 1]), ModulePath(compute_[p]), compute_[p - 1],
                            &cut.module_boundary);
    // Scalar-only nodes (shape checks inlined from functionals, e.g. the If that guards
    // adaptive_avg_pool2d) leave the same tensor live on both sides: one cut per tensor, the
    // first, a module boundary if either is. The model input has its own cut.
    if (model_inputs_.size() == 1 && *live.begin() == model_inputs_[0]) continue;
    if (!cut_values_.empty() && cut_values_.back() == *live.begin()) {
      cuts_.back().module_boundary |= cut.module_boundary;
      continue;
    }
    cut.info.id = next_id++;
    cuts_.push_back(std::move(cut));
    cut_values_.push_back(*live.begin());
  }
  // Names must be unique: suffix repeats ("relu", "relu_2", ...).
  std::map<std::string, int> seen;
  for (CutPoint& cut : cuts_) {
    if (int n = ++seen[cut.info.name]; n > 1) cut.info.name += absl::StrCat("_", n);
  }
}

absl::Status ModelGraph::RunSample(torch::jit::Module& original,
                                   const std::vector<common::Shape>& input_shapes) {
  const size_t count = compute_.size();
  // Run the sample once through the original model (reference output) and once through a
  // probe that also returns every cut tensor (shapes).
  auto generator = at::make_generator<at::CPUGeneratorImpl>(kSampleSeed);
  for (const common::Shape& shape : input_shapes) {
    sample_inputs_.push_back(at::randn(shape, generator));
    input_specs_.push_back(common::TensorSpec{shape, c10::ScalarType::Float});
  }
  auto ran = common::GuardTorch(
      absl::StatusCode::kInvalidArgument,
      absl::StrCat(path_, ": the model rejects input shape ",
                   absl::StrJoin(input_shapes, ";",
                                 [](std::string* out, const common::Shape& shape) {
                                   out->append(common::FormatShape(shape));
                                 })),
      [&] {
        c10::InferenceMode inference;
        sample_output_ = original.forward(sample_inputs_);
        std::vector<c10::IValue> probed;
        if (cuts_.empty()) return probed;
        torch::jit::Module probe = BuildSegment(0, count, cut_values_, "Probe");
        c10::IValue result = probe.forward(sample_inputs_);
        if (cuts_.size() == 1) return std::vector<c10::IValue>{result};
        return result.toTupleRef().elements().vec();
      });
  if (!ran.ok()) return ran.status();
  for (size_t i = 0; i < cuts_.size(); ++i) {
    const at::Tensor& tensor = (*ran)[i].toTensor();
    common::CutInfo& info = cuts_[i].info;
    info.tensor.shape.assign(tensor.sizes().begin(), tensor.sizes().end());
    info.tensor.dtype = tensor.scalar_type();
    info.bytes = static_cast<int64_t>(tensor.numel() * tensor.element_size());
  }
  return absl::OkStatus();
}

// Long because the MAC rules per node kind and the one sample run that measures operand
// shapes share the same per-position tallies.
absl::Status ModelGraph::EstimateCosts() {
  // Multiply-accumulate ops, by kind. Nodes nested in loops or ifs count once at their
  // top-level ancestor's position; that is an estimate, as the name says.
  auto is_mac_node = [](const Node* node) {
    const std::string kind = node->kind().toQualString();
    return kind == "aten::conv1d" || kind == "aten::conv2d" || kind == "aten::conv3d" ||
           kind == "aten::_convolution" || kind == "aten::linear" || kind == "aten::matmul" ||
           kind == "aten::mm" || kind == "aten::bmm" || kind == "aten::addmm";
  };
  std::vector<size_t> mac_positions;
  std::vector<Value*> operands;  // output, input 0, input 1 of each MAC node
  for (size_t p = 0; p < compute_.size(); ++p) {
    Node* node = compute_[p];
    if (!is_mac_node(node) || node->inputs().size() < 2 || !IsTensor(node->output()) ||
        !IsTensor(node->input(0)) || !IsTensor(node->input(1))) {
      continue;
    }
    mac_positions.push_back(p);
    operands.insert(operands.end(), {node->output(), node->input(0), node->input(1)});
  }
  std::vector<int64_t> macs(compute_.size(), 0), param_bytes(compute_.size(), 0);
  if (!operands.empty()) {
    auto shapes = common::GuardTorch(
        absl::StatusCode::kInvalidArgument, absl::StrCat(path_, ": estimating costs"), [&] {
          c10::InferenceMode inference;
          torch::jit::Module probe = BuildSegment(0, compute_.size(), operands, "CostProbe");
          return probe.forward(sample_inputs_);
        });
    if (!shapes.ok()) return shapes.status();
    const auto& values = shapes->toTupleRef().elements();
    for (size_t i = 0; i < mac_positions.size(); ++i) {
      const at::Tensor& out = values[3 * i].toTensor();
      const at::Tensor& a = values[3 * i + 1].toTensor();
      const at::Tensor& b = values[3 * i + 2].toTensor();
      const std::string kind = compute_[mac_positions[i]]->kind().toQualString();
      int64_t per_output = 0;
      if (kind.find("conv") != std::string::npos) {
        per_output = b.dim() > 0 && b.size(0) > 0 ? b.numel() / b.size(0) : 0;  // [O, I/g, k..]
      } else if (kind == "aten::linear") {
        per_output = b.dim() == 2 ? b.size(1) : b.numel();  // [out, in]
      } else if (kind == "aten::addmm") {
        per_output = b.dim() > 0 ? b.size(-1) : 0;  // addmm(bias, a, b): inner dim of a
      } else {
        per_output = a.dim() > 0 ? a.size(-1) : 0;  // matmul / mm / bmm
      }
      macs[mac_positions[i]] = out.numel() * per_output;
    }
  }
  // Parameter bytes: tensor constants, counted at their first use.
  std::set<const Value*> counted;
  std::function<void(Node*, size_t)> count_constants = [&](Node* node, size_t position) {
    for (Value* input : node->inputs()) {
      if (input->node()->kind() != c10::prim::Constant || !IsTensor(input) ||
          !counted.insert(input).second) {
        continue;
      }
      if (auto constant = torch::jit::toIValue(input); constant && constant->isTensor()) {
        const at::Tensor& tensor = constant->toTensor();
        param_bytes[position] += tensor.numel() * static_cast<int64_t>(tensor.element_size());
      }
    }
    for (torch::jit::Block* block : node->blocks()) {
      for (Node* inner : block->nodes()) count_constants(inner, position);
    }
  };
  for (size_t p = 0; p < compute_.size(); ++p) count_constants(compute_[p], p);

  int64_t running_macs = 0, running_bytes = 0;
  size_t next = 0;
  for (size_t p = 0; p <= compute_.size(); ++p) {
    while (next < cuts_.size() && cuts_[next].position == p) {
      cuts_[next].macs_before = running_macs;
      cuts_[next].param_bytes_before = running_bytes;
      ++next;
    }
    if (p < compute_.size()) {
      running_macs += macs[p];
      running_bytes += param_bytes[p];
    }
  }
  total_macs_ = running_macs;
  total_param_bytes_ = running_bytes;
  return absl::OkStatus();
}

std::vector<CutPoint> ModelGraph::Cuts(Granularity granularity) const {
  std::vector<CutPoint> result;
  if (model_inputs_.size() == 1 && IsTensor(model_inputs_[0])) {
    CutPoint input;
    input.info.id = common::kInputCutId;
    input.info.name = "input";
    input.info.tensor = input_specs_[0];
    input.info.bytes = common::NumElements(input_specs_[0].shape) * 4;
    input.module_boundary = true;
    result.push_back(std::move(input));
  }
  for (const CutPoint& cut : cuts_) {
    if (granularity == Granularity::kNode || cut.module_boundary) result.push_back(cut);
  }
  return result;
}

absl::StatusOr<CutPoint> ModelGraph::FindCut(int id) const {
  if (id >= 1 && static_cast<size_t>(id) <= cuts_.size()) return cuts_[id - 1];
  if (cuts_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cut ", id, " out of range: ", path_, " has no cut points"));
  }
  return absl::InvalidArgumentError(absl::StrCat("cut ", id, " out of range: ", path_, " has ",
                                                 cuts_.size(), " cuts (ids 1..", cuts_.size(),
                                                 "; 0 is the input)"));
}

absl::StatusOr<std::vector<at::Tensor>> ModelGraph::ActivationsAt(
    const std::vector<int>& cut_ids, const std::vector<c10::IValue>& inputs) const {
  std::vector<Value*> values;
  for (int id : cut_ids) {
    if (id == common::kInputCutId) {
      values.push_back(model_inputs_.front());
      continue;
    }
    CLEAVE_RETURN_IF_ERROR(FindCut(id).status());
    values.push_back(cut_values_[id - 1]);
  }
  if (values.empty()) return std::vector<at::Tensor>{};
  return common::GuardTorch(
      absl::StatusCode::kInvalidArgument, absl::StrCat(path_, ": running the model"), [&] {
        c10::InferenceMode inference;
        torch::jit::Module probe = BuildSegment(0, compute_.size(), values, "Probe");
        const c10::IValue result = probe.forward(inputs);
        std::vector<at::Tensor> tensors;
        if (values.size() == 1) {
          tensors.push_back(result.toTensor());
        } else {
          for (const c10::IValue& element : result.toTupleRef().elements()) {
            tensors.push_back(element.toTensor());
          }
        }
        return tensors;
      });
}

absl::StatusOr<std::vector<int>> ModelGraph::ResolveCuts(
    const std::vector<std::string>& references) const {
  std::vector<int> ids;
  for (const std::string& reference : references) {
    int id = 0;
    if (absl::SimpleAtoi(reference, &id)) {
      ids.push_back(id);
      continue;
    }
    auto named = std::find_if(cuts_.begin(), cuts_.end(),
                              [&](const CutPoint& cut) { return cut.info.name == reference; });
    if (named == cuts_.end()) {
      std::vector<std::string> names;
      for (const CutPoint& cut : Cuts(Granularity::kModule)) names.push_back(cut.info.name);
      return absl::InvalidArgumentError(absl::StrCat("unknown cut '", reference, "' in ", path_,
                                                     "; module-level cuts are ",
                                                     absl::StrJoin(names, ", ")));
    }
    ids.push_back(named->info.id);
  }
  return ids;
}

absl::StatusOr<std::vector<torch::jit::Module>> ModelGraph::Split(
    const std::vector<int>& cut_ids) const {
  std::vector<size_t> bounds = {0};
  std::vector<Value*> ends;
  for (size_t i = 0; i < cut_ids.size(); ++i) {
    if (cut_ids[i] == common::kInputCutId) {
      return absl::InvalidArgumentError(
          "cut 0 is the model input: a split needs cuts inside the model");
    }
    if (i > 0 && cut_ids[i] <= cut_ids[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cut ids must be strictly increasing: ", cut_ids[i], " follows ", cut_ids[i - 1]));
    }
    CLEAVE_ASSIGN_OR_RETURN(CutPoint cut, FindCut(cut_ids[i]));
    bounds.push_back(cut.position);
    ends.push_back(cut_values_[cut_ids[i] - 1]);
  }
  bounds.push_back(compute_.size());
  std::vector<torch::jit::Module> segments;
  for (size_t i = 0; i + 1 < bounds.size(); ++i) {
    const std::vector<Value*> outputs =
        i < ends.size() ? std::vector<Value*>{ends[i]}
                        : std::vector<Value*>(graph_->outputs().begin(), graph_->outputs().end());
    auto segment = common::GuardTorch(absl::StatusCode::kInternal, "building segment", [&] {
      return BuildSegment(bounds[i], bounds[i + 1], outputs, absl::StrCat("Segment", i));
    });
    if (!segment.ok()) return segment.status();
    segments.push_back(*std::move(segment));
  }
  return segments;
}

torch::jit::Module ModelGraph::BuildSegment(size_t begin, size_t end,
                                            const std::vector<Value*>& outputs,
                                            const std::string& class_name) const {
  auto segment = std::make_shared<Graph>();
  segment->addInput("self");
  std::unordered_map<Value*, Value*> env;
  auto add_input = [&](Value* original) {
    env[original] = segment->addInput()->copyMetadata(original);
  };
  if (begin == 0) {
    for (Value* input : model_inputs_) add_input(input);
  } else {
    for (size_t i = 0; i < cuts_.size(); ++i) {
      if (cuts_[i].position == begin) add_input(cut_values_[i]);
    }
  }
  // Values from outside the range are either the segment input or top-level constants, which
  // are copied into every segment that needs them.
  std::function<Value*(Value*)> lookup = [&](Value* value) -> Value* {
    if (auto it = env.find(value); it != env.end()) return it->second;
    Node* definition = value->node();
    TORCH_CHECK(definition->kind() == c10::prim::Constant, "segment needs value %",
                value->debugName(), " from outside its range");
    Node* copy = segment->createClone(definition, lookup);
    segment->appendNode(copy);
    env[value] = copy->output();
    return copy->output();
  };
  for (size_t i = begin; i < end; ++i) {
    Node* copy = segment->createClone(compute_[i], lookup);
    segment->appendNode(copy);
    for (size_t o = 0; o < copy->outputs().size(); ++o) {
      env[compute_[i]->outputs()[o]] = copy->outputs()[o];
    }
  }
  // A method returns exactly one value: several outputs travel as a tuple.
  if (outputs.size() == 1) {
    segment->registerOutput(lookup(outputs[0]));
  } else {
    std::vector<Value*> values;
    for (Value* output : outputs) values.push_back(lookup(output));
    segment->registerOutput(segment->insertNode(segment->createTuple(values))->output());
  }
  segment->lint();
  return ModuleFromGraph(segment, class_name);
}

}  // namespace cleave::partitioner
