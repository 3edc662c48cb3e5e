#include "cleave/partitioner/exit_heads.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "cleave/common/files.h"
#include "cleave/common/status_macros.h"
#include "cleave/common/torchscript_io.h"
#include "cleave/common/trust.h"
#include "cleave/partitioner/script_modules.h"

namespace cleave::partitioner {
namespace {

using torch::jit::Module;

constexpr char kPoolLinearSource[] = R"(
def forward(self, x):
    if x.dim() == 4:
        x = torch.mean(x, [2, 3])
    return self.fc.forward(x)
)";

constexpr char kConvPoolLinearSource[] = R"(
def forward(self, x):
    x = self.conv.forward(x)
    return self.fc.forward(torch.mean(x, [2, 3]))
)";

}  // namespace

absl::StatusOr<HeadKind> ParseHeadKind(absl::string_view name) {
  if (name == "pool-linear") return HeadKind::kPoolLinear;
  if (name == "conv-pool-linear") return HeadKind::kConvPoolLinear;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown head '", name, "': expected pool-linear or conv-pool-linear"));
}

const char* HeadKindName(HeadKind kind) {
  return kind == HeadKind::kConvPoolLinear ? "conv-pool-linear" : "pool-linear";
}

absl::StatusOr<Module> BuildExitHead(HeadKind kind, const common::Shape& activation,
                                     int64_t classes, at::Generator& generator) {
  if (activation.size() != 4 && !(activation.size() == 2 && kind == HeadKind::kPoolLinear)) {
    return absl::InvalidArgumentError(
        absl::StrCat("an exit head of kind ", HeadKindName(kind), " needs a [N, C, H, W]",
                     kind == HeadKind::kPoolLinear ? " or [N, C]" : "", " activation, not ",
                     common::FormatShape(activation)));
  }
  const int64_t channels = activation[1];
  Module head = NewScriptModule("ExitHead");
  if (kind == HeadKind::kPoolLinear) {
    head.register_module("fc", ScriptLinear(channels, classes, generator));
    head.define(kPoolLinearSource);
  } else {
    // Stride 2 on large maps: the head pools right after, so resolution buys little and a
    // full-resolution conv would cost the device as much as a backbone layer.
    const int64_t width = std::max<int64_t>(32, channels);
    const int64_t stride = std::min(activation[2], activation[3]) >= 8 ? 2 : 1;
    head.register_module("conv", ScriptConvBn(channels, width, 3, stride, true, generator));
    head.register_module("fc", ScriptLinear(width, classes, generator));
    head.define(kConvPoolLinearSource);
  }
  head.eval();
  return head;
}

int64_t EstimateExitHeadMacs(HeadKind kind, const common::Shape& activation, int64_t classes) {
  const int64_t channels = activation.size() >= 2 ? activation[1] : 0;
  if (kind == HeadKind::kPoolLinear || activation.size() != 4) return channels * classes;
  const int64_t width = std::max<int64_t>(32, channels);
  const int64_t stride = std::min(activation[2], activation[3]) >= 8 ? 2 : 1;
  const int64_t positions =
      ((activation[2] + stride - 1) / stride) * ((activation[3] + stride - 1) / stride);
  return positions * 9 * channels * width + width * classes;
}

absl::Status VisitActivations(
    const common::Bundle& bundle, const at::Tensor& images, const std::vector<int>& cuts,
    int64_t batch_size,
    const std::function<absl::Status(int64_t, const std::map<int, at::Tensor>&)>& visit) {
  if (cuts.empty()) return absl::InvalidArgumentError("no cuts to visit");
  const int last_cut = *std::max_element(cuts.begin(), cuts.end());
  std::vector<std::pair<size_t, int>> stops;  // (segment index, cut it ends at)
  for (int cut : cuts) {
    const common::CutInfo* info = bundle.manifest().FindCut(cut);
    if (info == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("cut ", cut, " is not a cut of bundle ", bundle.manifest().name,
                       " (its cuts: ", bundle.manifest().DescribeResumableCuts(), ")"));
    }
  }
  CLEAVE_ASSIGN_OR_RETURN(const size_t after_last, bundle.SegmentStartingAt(last_cut));
  for (int64_t begin = 0; begin < images.size(0); begin += batch_size) {
    c10::IValue value = images.slice(0, begin, std::min(images.size(0), begin + batch_size));
    std::map<int, at::Tensor> activations;
    for (size_t segment = 0; segment < after_last; ++segment) {
      CLEAVE_ASSIGN_OR_RETURN(value, bundle.RunSegments(segment, segment, {value}));
      const std::optional<int> end = bundle.manifest().segments[segment].end_cut;
      if (end && std::find(cuts.begin(), cuts.end(), *end) != cuts.end()) {
        // Inference-mode tensors cannot enter autograd: hand out ordinary copies.
        activations[*end] = value.toTensor().clone();
      }
    }
    CLEAVE_RETURN_IF_ERROR(visit(begin, activations));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Module>> TrainExitHeads(const common::Bundle& bundle,
                                                   const std::vector<int>& cut_ids,
                                                   const common::LabeledImages& data,
                                                   const ExitTrainingOptions& options) {
  if (cut_ids.empty()) return absl::InvalidArgumentError("no exit cuts given");
  const int64_t count = data.images.size(0);
  if (count == 0) return absl::InvalidArgumentError("no training samples");
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
  std::vector<Module> heads;
  std::vector<at::Tensor> parameters;
  for (int cut : cut_ids) {
    const common::CutInfo* info = bundle.manifest().FindCut(cut);
    if (info == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cut ", cut, " is not a cut of bundle ", bundle.manifest().name,
          ": exits go where segments end (cuts ", bundle.manifest().DescribeResumableCuts(), ")"));
    }
    CLEAVE_ASSIGN_OR_RETURN(
        Module head, BuildExitHead(options.kind, info->tensor.shape, options.classes, generator));
    for (const at::Tensor& parameter : head.parameters()) {
      parameter.set_requires_grad(true);
      parameters.push_back(parameter);
    }
    head.train(true);
    heads.push_back(std::move(head));
  }
  absl::Status status = common::GuardTorch(
      absl::StatusCode::kInvalidArgument, "training exit heads", [&]() -> absl::Status {
        // Adam: heads are small and see few steps; it converges far faster than SGD here.
        torch::optim::Adam optimizer(parameters, torch::optim::AdamOptions(options.learning_rate));
        const int64_t batches = (count + options.batch_size - 1) / options.batch_size;
        const int64_t total_steps = batches * options.epochs;
        int64_t step = 0;
        for (int epoch = 0; epoch < options.epochs; ++epoch) {
          const at::Tensor order = at::randperm(count, generator);
          const at::Tensor images = data.images.index_select(0, order);
          const at::Tensor labels = data.labels.index_select(0, order);
          double loss_sum = 0.0;
          int64_t correct = 0, seen = 0, batch = 0;
          CLEAVE_RETURN_IF_ERROR(VisitActivations(
              bundle, images, cut_ids, options.batch_size,
              [&](int64_t begin, const std::map<int, at::Tensor>& activations) -> absl::Status {
                const double lr = 0.5 * options.learning_rate *
                                  (1.0 + std::cos(M_PI * static_cast<double>(step++) /
                                                  static_cast<double>(total_steps)));
                for (auto& group : optimizer.param_groups()) {
                  static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
                }
                const at::Tensor target =
                    labels.slice(0, begin, begin + activations.begin()->second.size(0));
                optimizer.zero_grad();
                at::Tensor loss = at::zeros({});
                for (size_t h = 0; h < heads.size(); ++h) {
                  const at::Tensor logits =
                      heads[h].forward({activations.at(cut_ids[h])}).toTensor();
                  loss = loss + at::cross_entropy_loss(logits, target);
                  correct += logits.argmax(1).eq(target).sum().item<int64_t>();
                }
                loss.backward();
                optimizer.step();
                loss_sum += loss.item<double>() * static_cast<double>(target.size(0));
                seen += target.size(0);
                if (options.on_batch) {
                  const double heads_seen = static_cast<double>(seen * heads.size());
                  options.on_batch(epoch, ++batch, batches,
                                   loss_sum / static_cast<double>(seen) / heads.size(),
                                   static_cast<double>(correct) / heads_seen);
                }
                return absl::OkStatus();
              }));
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return status;
  for (Module& head : heads) {
    for (const at::Tensor& parameter : head.parameters()) parameter.set_requires_grad(false);
    head.eval();
  }
  return heads;
}

absl::StatusOr<std::string> RewriteManifest(const std::string& dir,
                                            const common::BundleManifest& manifest) {
  CLEAVE_RETURN_IF_ERROR(manifest.Validate());
  const std::string json = manifest.ToJson();
  // Signatures covered the old bytes: they go first, so the bundle is never left signed for
  // bytes nobody signed (`cleave sign` signs the new ones).
  std::error_code error;
  std::filesystem::remove(std::filesystem::path(dir) / common::kSignaturesFile, error);
  CLEAVE_RETURN_IF_ERROR(
      common::WriteFileAtomically((std::filesystem::path(dir) / "manifest.json").string(), json));
  return common::BundleIdOf(json);
}

absl::StatusOr<std::string> AddExitsToBundle(const std::string& dir,
                                             const std::vector<int>& cut_ids,
                                             const std::vector<Module>& heads, HeadKind kind) {
  if (cut_ids.size() != heads.size()) {
    return absl::InvalidArgumentError("one head per exit cut");
  }
  CLEAVE_ASSIGN_OR_RETURN(auto bundle, common::Bundle::Load(dir));
  common::BundleManifest manifest = bundle->manifest();
  // The bundle is rebuilt aside and swapped in whole (its segments carried over unchanged), so
  // the folder holds the old or the new bundle whenever this process is stopped.
  CLEAVE_ASSIGN_OR_RETURN(common::StagedFolder staged, common::StagedFolder::Begin(dir));
  std::set<std::string> written;
  for (size_t i = 0; i < cut_ids.size(); ++i) {
    CLEAVE_ASSIGN_OR_RETURN(std::string bytes, common::SaveTorchScriptToBytes(heads[i]));
    const std::string file = absl::StrCat("exit_", cut_ids[i], ".pt");
    CLEAVE_RETURN_IF_ERROR(staged.Write(file, bytes));
    written.insert(file);
    common::ExitInfo exit;
    exit.cut_id = cut_ids[i];
    exit.head = common::FileRefFor(file, bytes);
    exit.kind = HeadKindName(kind);
    const common::CutInfo* cut = manifest.FindCut(cut_ids[i]);
    if (cut == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("cut ", cut_ids[i], " is not a cut of ", dir));
    }
    // Per sample: the manifest's shapes carry the sample batch in dimension 0.
    common::Shape one = cut->tensor.shape;
    if (!one.empty()) one[0] = 1;
    // Every head kind ends in the linear layer "fc", whose weight is [classes, features].
    const int64_t classes = heads[i].attr("fc").toModule().attr("weight").toTensor().size(0);
    exit.macs = EstimateExitHeadMacs(kind, one, classes);
    auto& exits = manifest.exits;
    exits.erase(std::remove_if(exits.begin(), exits.end(),
                               [&](const common::ExitInfo& e) { return e.cut_id == exit.cut_id; }),
                exits.end());
    exits.push_back(std::move(exit));
  }
  std::sort(manifest.exits.begin(), manifest.exits.end(),
            [](const auto& a, const auto& b) { return a.cut_id < b.cut_id; });
  for (const std::string& file : manifest.Files()) {
    if (written.count(file) == 0) CLEAVE_RETURN_IF_ERROR(staged.Keep(file));
  }
  CLEAVE_ASSIGN_OR_RETURN(std::string id, RewriteManifest(staged.path(), manifest));
  CLEAVE_RETURN_IF_ERROR(staged.Commit());
  return id;
}

}  // namespace cleave::partitioner
