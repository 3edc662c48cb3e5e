#include "cleave/partitioner/script_modules.h"

#include <cmath>

namespace cleave::partitioner {
namespace {

using torch::jit::Module;

constexpr char kConvBnSource[] = R"(
def forward(self, x):
    y = torch.conv2d(x, self.weight, None, [self.stride, self.stride], [self.padding, self.padding])
    y = torch.batch_norm(y, self.bn_weight, self.bn_bias, self.running_mean, self.running_var,
                         self.training, 0.1, 1e-5, False)
    if self.relu:
        y = torch.relu(y)
    return y
)";

constexpr char kBlockSource[] = R"(
def forward(self, x):
    y = self.conv1.forward(x)
    y = self.conv2.forward(y)
    return torch.relu(y + self.shortcut.forward(x))
)";

constexpr char kIdentityBlockSource[] = R"(
def forward(self, x):
    y = self.conv1.forward(x)
    y = self.conv2.forward(y)
    return torch.relu(y + x)
)";

constexpr char kLinearSource[] = R"(
def forward(self, x):
    return torch.linear(x, self.weight, self.bias)
)";

}  // namespace

Module NewScriptModule(const std::string& name) {
  Module module(name);
  module.register_attribute("training", c10::BoolType::get(), true);
  return module;
}

Module ScriptConvBn(int64_t in, int64_t out, int64_t kernel, int64_t stride, bool relu,
                    at::Generator& generator) {
  Module module = NewScriptModule("ConvBn");
  // Kaiming-normal (fan-in) initialisation.
  const double std = std::sqrt(2.0 / static_cast<double>(in * kernel * kernel));
  module.register_parameter("weight", at::randn({out, in, kernel, kernel}, generator) * std, false);
  module.register_parameter("bn_weight", at::ones({out}), false);
  module.register_parameter("bn_bias", at::zeros({out}), false);
  module.register_buffer("running_mean", at::zeros({out}));
  module.register_buffer("running_var", at::ones({out}));
  module.register_attribute("stride", c10::IntType::get(), stride);
  module.register_attribute("padding", c10::IntType::get(), kernel / 2);
  module.register_attribute("relu", c10::BoolType::get(), relu);
  module.define(kConvBnSource);
  return module;
}

Module ScriptResidualBlock(int64_t in, int64_t out, int64_t stride, at::Generator& generator) {
  Module block = NewScriptModule("ResidualBlock");
  block.register_module("conv1", ScriptConvBn(in, out, 3, stride, true, generator));
  block.register_module("conv2", ScriptConvBn(out, out, 3, 1, false, generator));
  if (in == out && stride == 1) {
    block.define(kIdentityBlockSource);
  } else {
    block.register_module("shortcut", ScriptConvBn(in, out, 1, stride, false, generator));
    block.define(kBlockSource);
  }
  return block;
}

Module ScriptLinear(int64_t in, int64_t out, at::Generator& generator) {
  Module module = NewScriptModule("Linear");
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  module.register_parameter("weight", at::rand({out, in}, generator) * 2 * bound - bound, false);
  module.register_parameter("bias", at::rand({out}, generator) * 2 * bound - bound, false);
  module.define(kLinearSource);
  return module;
}

}  // namespace cleave::partitioner
