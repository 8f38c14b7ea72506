#!/usr/bin/env python3
"""Times one DeepLabv3 training step in PyTorch (CPU): the reference of `atrous bench --compare torch`.

The network is built from torchvision's own classes (tools/gen_model_fixture.py's SmallResNet,
which is torchvision's ResNet with the widths as arguments, plus torchvision's ASPP and DeepLabV3)
to match an atrous configuration (src/nn/configs.ts, given as JSON): blocks, width multiplier,
output stride, Multi-Grid rates in layer4 (set on each unit's 3x3 conv, as src/nn/resnet.ts's
planStages does), ASPP rates at that output stride with image pooling, and the head (the paper's
1x1 logits conv, or torchvision's extra 3x3 conv + BN + ReLU when headConv). Dropout is set to the
configuration's rate. The step is the one atrous's benchmark times: forward, bilinear upsampling
to the input (inside DeepLabV3.forward), cross entropy ignoring 255, backward, SGD (momentum 0.9,
weight decay 1e-4). One warm-up step, then the median of --repeats steps, wall clock.

    /usr/bin/python3 tools/torch_step.py --config '{"blocks": [3, 4, 6, 3], ...}' --n 2 --size 129

Prints one JSON object: ms (median), first_step_ms, torch version, threads, parameters.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixture as g  # noqa: E402
from torchvision.models._utils import IntermediateLayerGetter  # noqa: E402
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3  # noqa: E402


def plan_stages(units, output_stride, multi_grid):
    """src/nn/resnet.ts planStages: per stage (stride, 3x3 dilation of each unit)."""
    current, rate, plans = 4, 1, []
    for s, n in enumerate(units):
        stride, first = 1, rate
        if s > 0:
            if current < output_stride:
                stride, current = 2, current * 2
            else:
                rate *= 2
        dil = [first if i == 0 else rate for i in range(n)]
        if multi_grid and s >= 3:
            dil = [rate * multi_grid[i] for i in range(n)]
        plans.append((stride, dil))
    return plans


def build(cfg):
    os_ = cfg["outputStride"]
    width = max(1, int(round(64 * cfg["widthMultiplier"])))
    resnet = g.SmallResNet(cfg["blocks"], width, g.dilation_flags(os_))
    for layer, (_, dil) in zip([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4], plan_stages(cfg["blocks"], os_, cfg["multiGrid"])):
        for unit, d in zip(layer, dil):
            unit.conv2.dilation = (d, d)
            unit.conv2.padding = (d, d)
    backbone = IntermediateLayerGetter(resnet, return_layers={"layer4": "out"})
    a = cfg["aspp"]
    rates = [max(1, int(round(r * a["ratesOutputStride"] / os_))) for r in a["rates"]]
    c = a["channels"]
    aspp = ASPP(width * 32, rates, out_channels=c)
    aspp.project[3].p = a["dropout"]
    head = [aspp]
    if cfg["headConv"]:
        head += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
    head.append(nn.Conv2d(c, cfg["numClasses"], 1))
    return DeepLabV3(backbone, nn.Sequential(*head), None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="an atrous model configuration as JSON")
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--size", type=int, default=129)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: the CPU count)")
    args = ap.parse_args()
    cfg = json.loads(args.config)
    if cfg.get("aspp") is None or cfg.get("cascade", 0) != 0 or cfg.get("aux"):
        sys.exit("torch_step.py: only ASPP configurations without cascaded blocks or aux head are built")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    model = build(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.n, 3, args.size, args.size)
    y = torch.randint(0, cfg["numClasses"], (args.n, args.size, args.size))

    def step():
        out = model(x)["out"]
        loss = F.cross_entropy(out, y, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    print(json.dumps({
        "ms": times[len(times) // 2] * 1000, "first_step_ms": first * 1000, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters()),
    }))


if __name__ == "__main__":
    main()
