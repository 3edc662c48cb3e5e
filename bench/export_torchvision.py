"""Exports a torchvision architecture with seeded random weights as TorchScript.

Benchmarks use real architectures where only shapes and timings matter (no weights can be
downloaded here). Debian's python3-torchvision provides them. An existing OUT.pt is kept: the
seed makes every export of an architecture the same.

    /usr/bin/python3 bench/export_torchvision.py resnet18|mobilenet_v2|densenet121 OUT.pt
"""
import os
import sys

import torch
import torchvision


def main(name, out):
    if os.path.exists(out):
        return
    torch.manual_seed(1)
    model = getattr(torchvision.models, name)().eval()
    torch.jit.script(model).save(out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
