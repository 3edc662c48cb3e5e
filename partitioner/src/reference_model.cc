#include "cleave/partitioner/reference_model.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/sgd.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "cleave/common/status_macros.h"
#include "cleave/partitioner/script_modules.h"

namespace cleave::partitioner {
namespace {

using torch::jit::Module;

// Fashion-MNIST pixel statistics, applied inside the model so callers feed raw [0, 1] images.
constexpr char kNetSource[] = R"(
def forward(self, x):
    x = (x - 0.2860) / 0.3530
    x = self.stem.forward(x)
    x = self.layer1.forward(x)
    x = self.layer2.forward(x)
    x = self.layer3.forward(x)
    x = torch.mean(x, [2, 3])
    return self.fc.forward(x)
)";

}  // namespace

Module BuildReferenceModel(uint64_t seed) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  Module net = NewScriptModule("FashionResNet");
  net.register_module("stem", ScriptConvBn(1, 16, 3, 1, true, generator));
  net.register_module("layer1", ScriptResidualBlock(16, 16, 1, generator));
  net.register_module("layer2", ScriptResidualBlock(16, 32, 2, generator));
  net.register_module("layer3", ScriptResidualBlock(32, 64, 2, generator));
  net.register_module("fc", ScriptLinear(64, 10, generator));
  net.define(kNetSource);
  net.eval();
  return net;
}

absl::StatusOr<TrainReport> TrainClassifier(Module& model, const common::LabeledImages& data,
                                            const TrainOptions& options) {
  const int64_t count = data.images.size(0);
  if (count == 0) return absl::InvalidArgumentError("no training samples");
  return common::GuardTorch(absl::StatusCode::kInvalidArgument, "training", [&] {
    at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(options.seed);
    std::vector<at::Tensor> parameters;
    for (const at::Tensor& parameter : model.parameters()) {
      parameter.set_requires_grad(true);
      parameters.push_back(parameter);
    }
    torch::optim::SGD optimizer(parameters, torch::optim::SGDOptions(options.learning_rate)
                                                .momentum(0.9)
                                                .nesterov(true)
                                                .weight_decay(options.weight_decay));
    const int64_t batches = (count + options.batch_size - 1) / options.batch_size;
    const int64_t total_steps = batches * options.epochs;
    const int64_t warmup = std::max<int64_t>(1, total_steps / 20);
    TrainReport report;
    model.train(true);
    int64_t step = 0;
    for (int epoch = 0; epoch < options.epochs; ++epoch) {
      const at::Tensor order = at::randperm(count, generator);
      double loss_sum = 0.0;
      int64_t correct = 0, seen = 0;
      for (int64_t b = 0; b < batches; ++b, ++step) {
        // Linear warm-up, then cosine decay to zero.
        const double lr = step < warmup
                              ? options.learning_rate * static_cast<double>(step + 1) / warmup
                              : 0.5 * options.learning_rate *
                                    (1.0 + std::cos(M_PI * static_cast<double>(step - warmup) /
                                                    static_cast<double>(total_steps - warmup)));
        for (auto& group : optimizer.param_groups()) {
          static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
        }
        const at::Tensor index =
            order.slice(0, b * options.batch_size, std::min(count, (b + 1) * options.batch_size));
        at::Tensor images = data.images.index_select(0, index);
        const at::Tensor labels = data.labels.index_select(0, index);
        // Horizontal flips of a random half of the batch: cheap augmentation that Fashion-MNIST
        // (symmetric garments) rewards.
        const at::Tensor flip = at::rand({images.size(0), 1, 1, 1}, generator) < 0.5;
        images = at::where(flip, images.flip({3}), images);

        optimizer.zero_grad();
        const at::Tensor logits = model.forward({images}).toTensor();
        const at::Tensor loss = at::cross_entropy_loss(logits, labels);
        loss.backward();
        optimizer.step();

        loss_sum += loss.item<double>() * static_cast<double>(labels.size(0));
        correct += logits.argmax(1).eq(labels).sum().item<int64_t>();
        seen += labels.size(0);
        if (options.on_batch) {
          options.on_batch(epoch, b + 1, batches, loss_sum / static_cast<double>(seen),
                           static_cast<double>(correct) / static_cast<double>(seen));
        }
      }
      report.final_loss = loss_sum / static_cast<double>(seen);
      report.train_accuracy = static_cast<double>(correct) / static_cast<double>(seen);
    }
    for (const at::Tensor& parameter : model.parameters()) parameter.set_requires_grad(false);
    model.eval();
    return report;
  });
}

absl::StatusOr<double> EvaluateAccuracy(Module& model, const common::LabeledImages& data,
                                        int64_t batch_size) {
  return common::GuardTorch(absl::StatusCode::kInvalidArgument, "evaluating", [&] {
    c10::InferenceMode inference;
    model.eval();
    const int64_t count = data.images.size(0);
    int64_t correct = 0;
    for (int64_t begin = 0; begin < count; begin += batch_size) {
      const int64_t end = std::min(count, begin + batch_size);
      const at::Tensor logits = model.forward({data.images.slice(0, begin, end)}).toTensor();
      correct += logits.argmax(1).eq(data.labels.slice(0, begin, end)).sum().item<int64_t>();
    }
    return count == 0 ? 0.0 : static_cast<double>(correct) / static_cast<double>(count);
  });
}

}  // namespace cleave::partitioner
