// TorchScript building blocks defined from source in C++ (no Python): the layers the reference
// model, exit heads and test models are made of. Every module has a `training` attribute, so
// Module::train / eval work, and its parameters are registered for torch::optim.
#ifndef CLEAVE_PARTITIONER_SCRIPT_MODULES_H_
#define CLEAVE_PARTITIONER_SCRIPT_MODULES_H_

#include <torch/script.h>

#include <cstdint>
#include <string>

namespace cleave::partitioner {

// An empty module of class `name` with a `training` attribute; callers add members and
// define forward.
[[nodiscard]] torch::jit::Module NewScriptModule(const std::string& name);

// conv (kernel x kernel, `stride`, same padding, no bias) + batch norm (+ ReLU).
// Kaiming-normal weights from `generator`.
[[nodiscard]] torch::jit::Module ScriptConvBn(int64_t in, int64_t out, int64_t kernel,
                                              int64_t stride, bool relu, at::Generator& generator);

// Two 3x3 ConvBn (first with ReLU) plus a shortcut (identity, or a 1x1 ConvBn when the shape
// changes), then ReLU: a ResNet basic block. Children: conv1, conv2[, shortcut].
[[nodiscard]] torch::jit::Module ScriptResidualBlock(int64_t in, int64_t out, int64_t stride,
                                                     at::Generator& generator);

// y = x W^T + b with PyTorch's default uniform(-1/sqrt(in), 1/sqrt(in)) initialisation.
[[nodiscard]] torch::jit::Module ScriptLinear(int64_t in, int64_t out, at::Generator& generator);

}  // namespace cleave::partitioner

#endif  // CLEAVE_PARTITIONER_SCRIPT_MODULES_H_
