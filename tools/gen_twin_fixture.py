#!/usr/bin/env python3
"""Generate test/fixtures/twin/: the PyTorch twin (tools/atrous_torch.py) against atrous, per architecture feature.

For each case, a twin of an atrous configuration with random weights and non-trivial batch-norm
state (tools/gen_model_fixture.py's ``randomize``), or with the committed weights of
weights/mini-shapes.safetensors, and PyTorch's eval-mode logits on one random input at several
output strides. test/twin.test.ts loads each checkpoint in atrous and compares the logits
(normwise relative error <= 1e-4). Files, per case NAME:

    NAME.safetensors     the weights as an atrous checkpoint, written by atrous_torch.save_atrous
                         (absent for ``mini``, which uses weights/mini-shapes.safetensors)
    NAME_io.safetensors  ``x`` [1, 3, h, w] (a normalised image) and ``out.os<S>`` [1, classes, h, w]
                         for each output stride S tested, ``aux.os<S>`` where the model has the aux
                         head; __metadata__: ``weights`` (the checkpoint, relative to the
                         repository), ``config`` (JSON), ``source``

The cases cover: mini with its trained weights (Multi-Grid, ASPP with image pooling, OS 16 and 8);
paper-r50-os16 at 1/32 width (the full [3, 4, 6, 3] depth); paper-r101-cascade at 1/32 width with
fewer units (block5..block7 without projections, Multi-Grid (1, 2, 1), no ASPP; OS 128 strides
two cascaded blocks, whose identities are then subsampled); torchvision-deeplabv3-resnet50 at
1/16 width with the aux FCN head (DeepLabHead's 3x3 conv, rates (12, 24, 36) at OS 8, halved at
16); and a custom configuration (width 0.05 -> 3, four ASPP rates without image pooling, one
cascaded block, Multi-Grid (1, 3), the rates given at OS 32). References are computed in float64
from the float32 weights.

    /usr/bin/python3 tools/gen_twin_fixture.py            # writes test/fixtures/twin/ (seed 0)
"""

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, HERE)
import atrous_torch as at  # noqa: E402
from export_torchvision import write_safetensors  # noqa: E402
from gen_model_fixture import randomize  # noqa: E402

CASES = [
    {"case": "mini", "weights": "weights/mini-shapes.safetensors", "strides": [16, 8], "size": [57, 71]},
    {"case": "paper-r50", "config": {"name": "paper-r50-os16", "numClasses": 5, "widthMultiplier": 0.03125, "aspp": {"channels": 8}},
     "strides": [16, 8], "size": [45, 53]},
    {"case": "paper-cascade", "config": {"name": "paper-r101-cascade", "numClasses": 5, "blocks": [1, 1, 2, 3], "widthMultiplier": 0.03125},
     "strides": [16, 128], "size": [45, 53]},
    {"case": "torchvision-aux", "config": {"name": "torchvision-deeplabv3-resnet50", "numClasses": 5, "widthMultiplier": 0.0625, "aux": True,
                                           "aspp": {"channels": 16}},
     "strides": [8, 16], "size": [41, 47],
     "metadata": {"inference": {"outputStride": 8, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "padding": "none"},
                  "classes": ["background", "a", "b", "c", "d"], "dataset": "twin fixture"}},
    {"case": "custom", "config": {
        "name": "twin-custom", "numClasses": 4, "blocks": [2, 1, 1, 2], "cascade": 1, "widthMultiplier": 0.05, "multiGrid": [1, 3],
        "outputStride": 32, "aspp": {"rates": [1, 2, 3, 4], "ratesOutputStride": 32, "imagePooling": False, "channels": 6, "dropout": 0.1},
        "headConv": True, "aux": True, "auxDropout": 0.2, "bnMomentum": 0.05, "bnEps": 1e-3, "cropSize": 33},
     "strides": [32, 8, 64], "size": [43, 39]},
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "test", "fixtures", "twin"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    gen = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    src = f"tools/gen_twin_fixture.py seed {args.seed}, torch {torch.__version__}"
    total = 0
    for c in CASES:
        if "weights" in c:
            model, cfg, _ = at.load_atrous(os.path.join(ROOT, c["weights"]))
            weights = c["weights"]
        else:
            model = at.build_model(c["config"])
            cfg = model.config
            randomize(model, gen)
            weights = os.path.relpath(os.path.join(args.out, c["case"] + ".safetensors"), ROOT)
            total += at.save_atrous(model, cfg, os.path.join(ROOT, weights), {"source": src, **c.get("metadata", {})})
            # The reference starts from exactly the float32 values atrous reads.
            model, _, _ = at.load_atrous(os.path.join(ROOT, weights))
        model = model.double().eval()
        x = torch.randn(1, 3, *c["size"], generator=gen)
        io = [("x", x)]
        with torch.no_grad():
            for s in c["strides"]:
                model.set_output_stride(s)
                out, aux = model(x.double(), with_aux=True)
                io.append((f"out.os{s}", out.float()))
                if aux is not None:
                    io.append((f"aux.os{s}", aux.float()))
        meta = {"weights": weights, "config": json.dumps(cfg), "source": src}
        n = write_safetensors(os.path.join(args.out, c["case"] + "_io.safetensors"), io, meta)
        total += n
        params = sum(p.numel() for p in model.parameters())
        print(f"{c['case']}: {cfg['name']}, {params:,} parameters, strides {c['strides']}, io {n:,} bytes")
    print(f"{args.out}: {total:,} bytes written")


if __name__ == "__main__":
    main()
