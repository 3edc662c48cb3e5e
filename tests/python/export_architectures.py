"""Exports real architecture families as TorchScript for the partitioner's tests.

Every family cut discovery must handle, each scripted and traced, with seeded random weights
(only graph structure matters here) at small input sizes so the suite stays fast, plus models
whose output is a named tuple or a dict, models with control flow and with several inputs.
Writes OUT_DIR/<name>.pt and OUT_DIR/models.json: [{"name", "file", "input_shapes"}].

    /usr/bin/python3 export_architectures.py OUT_DIR
"""
import json
import os
import sys
from typing import Dict, NamedTuple

import torch
import torchvision.models as models
from torchvision.models.vision_transformer import VisionTransformer


class Pair(NamedTuple):
    logits: torch.Tensor
    features: torch.Tensor


class NamedTupleOutput(torch.nn.Module):
    """A small CNN whose output is a named tuple."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x) -> Pair:
        features = self.body(self.stem(x)).mean([2, 3])
        return Pair(self.fc(features), features)


class DictOutput(NamedTupleOutput):
    def forward(self, x) -> Dict[str, torch.Tensor]:
        features = self.body(self.stem(x)).mean([2, 3])
        return {"logits": self.fc(features), "features": features}


class ControlFlow(NamedTupleOutput):
    """Data-dependent control flow: cuts only in the top-level block, never inside the if."""

    def forward(self, x):
        h = self.stem(x)
        if bool(h.mean() > 0.5):
            h = self.body(h)
        else:
            h = h * 2.0
        return self.fc(h.mean([2, 3]))


class TwoInputs(NamedTupleOutput):
    """An image and a second sensor vector, fused after the image stem."""

    def __init__(self):
        super().__init__()
        self.sensor = torch.nn.Linear(4, 8)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, image, reading):
        features = self.body(self.stem(image)).mean([2, 3])
        return self.fc(torch.cat([features, self.sensor(reading)], 1))


def families():
    """(name, constructor, input shapes, also traced)."""
    image = [[1, 3, 64, 64]]
    return [
        ("resnet18", lambda: models.resnet18(), image, True),
        ("mobilenet_v2", lambda: models.mobilenet_v2(), image, True),
        ("densenet121", lambda: models.densenet121(), image, True),
        ("googlenet", lambda: models.googlenet(aux_logits=False, init_weights=True), image, True),
        ("shufflenet_v2", lambda: models.shufflenet_v2_x0_5(), image, True),
        ("efficientnet_b0", lambda: models.efficientnet_b0(), image, True),
        ("squeezenet", lambda: models.squeezenet1_1(), image, True),
        ("vit", lambda: VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                          hidden_dim=32, mlp_dim=64, num_classes=10),
         [[1, 3, 32, 32]], True),
        ("named_tuple_output", NamedTupleOutput, [[1, 3, 16, 16]], False),
        ("dict_output", DictOutput, [[1, 3, 16, 16]], False),
        ("control_flow", ControlFlow, [[1, 3, 16, 16]], False),
        ("two_inputs", TwoInputs, [[1, 3, 16, 16], [1, 4]], True),
    ]


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(1)
    index = []
    for name, build, shapes, traced in families():
        model = build().eval()
        examples = tuple(torch.rand(shape) for shape in shapes)
        variants = [("scripted", torch.jit.script(model))]
        if traced:
            with torch.no_grad():
                variants.append(("traced", torch.jit.trace(model, examples)))
        for kind, module in variants:
            file = f"{name}_{kind}.pt"
            module.save(os.path.join(out_dir, file))
            index.append({"name": f"{name}_{kind}", "file": file, "input_shapes": shapes})
    with open(os.path.join(out_dir, "models.json"), "w") as out:
        json.dump(index, out, indent=2)


if __name__ == "__main__":
    main(sys.argv[1])
