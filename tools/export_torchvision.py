#!/usr/bin/env python3
"""Export a torchvision DeepLabv3, FCN or classification ResNet state dict as .safetensors for atrous.

What it writes
    DeepLabv3 (--model deeplabv3_resnet50|deeplabv3_resnet101): an atrous checkpoint.
    The model's state dict under torchvision's own names (``backbone.layer4.2.conv2.weight``,
    ``classifier.0.convs.1.0.weight``, ``*.running_mean``, ``*.num_batches_tracked``), float
    tensors as F32 and integer buffers as I64, with ``__metadata__``::

        {"format": "atrous-deeplabv3",
         "config": "{\"name\": \"torchvision-deeplabv3-resnet50\", \"numClasses\": 21, \"aux\": false}",
         "source": "torchvision <version>, <weights>"}

    ``config`` names one of atrous's configurations (src/nn/configs.ts) with the fields that
    differ, so ``npx atrous predict --weights OUT`` rebuilds the right network. Loading in atrous
    checks every key and shape.

    FCN (--model fcn_resnet50|fcn_resnet101) and classification ResNets (--model
    resnet50|resnet101, torchvision.models.resnet50: ``conv1``, ``bn1``, ``layer1..4``, ``fc``):
    the state dict under torchvision's names, with ``__metadata__`` ``{"format": "torchvision-fcn"
    | "torchvision-resnet", "model": "<name>", "source": ...}`` and no ``config`` (atrous has no
    FCN configuration and a classifier is no segmentation model). ``atrous train --init OUT
    --config NAME`` starts a run from its backbone (the ImageNet start of the paper): the
    backbone must fit the configuration's exactly; ``fc.*`` and the FCN heads are ignored.

How to run
    apt-get install python3-torch python3-torchvision     # Debian's PyTorch
    /usr/bin/python3 tools/export_torchvision.py --model deeplabv3_resnet50 \\
        --weights my_trained.pth --out deeplabv3_resnet50.safetensors
    /usr/bin/python3 tools/export_torchvision.py --model deeplabv3_resnet101 --random --seed 0 \\
        --out random_r101.safetensors
    /usr/bin/python3 tools/export_torchvision.py --model resnet50 \\
        --weights resnet50-11ad3fa6.pth --out resnet50-imagenet.safetensors

    --weights takes a file saved with torch.save: a state dict, or a dict holding one under
    "model" (torchvision's reference training scripts) or "state_dict". Its aux_classifier keys
    decide --aux unless given. --random writes a randomly initialised model (no download is ever
    attempted). --num-classes defaults to 21 or to what the weights hold.

The writer (``write_safetensors``) and ``export_state_dict`` are also used by
tools/gen_model_fixture.py.
"""

import argparse
import json
import struct
import sys

import torch

DTYPES = {
    torch.float32: ("F32", 4),
    torch.float64: ("F64", 8),
    torch.float16: ("F16", 2),
    torch.int64: ("I64", 8),
    torch.int32: ("I32", 4),
    torch.uint8: ("U8", 1),
}

MODELS = {
    "deeplabv3_resnet50": "torchvision-deeplabv3-resnet50",
    "deeplabv3_resnet101": "torchvision-deeplabv3-resnet101",
}
# Exported without an atrous configuration: their backbone starts a run (atrous train --init).
FCN_MODELS = ("fcn_resnet50", "fcn_resnet101")
CLASSIFICATION_MODELS = ("resnet50", "resnet101")


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) in file order; metadata: dict str -> str.
    Header padded with spaces so the data section starts at a multiple of 8."""
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors:
        dtype, _ = DTYPES[t.dtype]
        data = t.detach().contiguous().cpu().numpy().tobytes()  # little-endian on every host we run
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - (8 + len(hjson)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return 8 + len(hjson) + offset


def export_state_dict(state, prefix=""):
    """(name, tensor) pairs: floats as F32, integers as I64 (PyTorch's num_batches_tracked)."""
    out = []
    for k, v in state.items():
        v = v.detach().cpu()
        v = v.to(torch.int64) if not v.is_floating_point() else v.to(torch.float32)
        out.append((prefix + k, v))
    return out


def checkpoint_metadata(config, source):
    return {"format": "atrous-deeplabv3", "config": json.dumps(config), "source": source}


def load_weights(path):
    obj = torch.load(path, map_location="cpu")
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        sys.exit(f"{path}: expected a state dict (or a dict with 'model'/'state_dict'), got {type(obj).__name__}")
    # DataParallel checkpoints prefix every key with 'module.'.
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS) + list(FCN_MODELS) + list(CLASSIFICATION_MODELS), default="deeplabv3_resnet50")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="a torch.save'd state dict of the model")
    src.add_argument("--random", action="store_true", help="random initialisation (torchvision's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-classes", type=int)
    ap.add_argument("--aux", dest="aux", action="store_true", default=None, help="include the aux FCN head")
    ap.add_argument("--no-aux", dest="aux", action="store_false")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torchvision
    from torchvision.models import segmentation

    state = load_weights(args.weights) if args.weights else None
    if args.model in CLASSIFICATION_MODELS:
        torch.manual_seed(args.seed)
        num_classes = args.num_classes or (state["fc.weight"].shape[0] if state and "fc.weight" in state else 1000)
        model = getattr(torchvision.models, args.model)(weights=None, num_classes=num_classes)
        if state is not None:
            model.load_state_dict(state, strict=True)
        write_plain(args, model, "torchvision-resnet", torchvision.__version__)
        return
    aux = args.aux
    if aux is None:
        aux = bool(state) and any(k.startswith("aux_classifier.") for k in state)
    num_classes = args.num_classes
    if num_classes is None:
        num_classes = state["classifier.4.weight"].shape[0] if state and "classifier.4.weight" in state else 21
    torch.manual_seed(args.seed)
    model = getattr(segmentation, args.model)(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)
    if state is not None:
        if not aux:
            state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
        model.load_state_dict(state, strict=True)
    if args.model in FCN_MODELS:
        write_plain(args, model, "torchvision-fcn", torchvision.__version__)
        return
    source = f"torchvision {torchvision.__version__} {args.model}, " + (f"weights {args.weights}" if args.weights else f"random seed {args.seed}")
    config = {"name": MODELS[args.model], "numClasses": num_classes, "aux": aux}
    n = write_safetensors(args.out, export_state_dict(model.state_dict()), checkpoint_metadata(config, source))
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {len(model.state_dict())} tensors, {params:,} parameters, {n:,} bytes, config {json.dumps(config)}")


def write_plain(args, model, fmt, version):
    """A state dict without an atrous configuration (FCN, classification ResNet)."""
    source = f"torchvision {version} {args.model}, " + (f"weights {args.weights}" if args.weights else f"random seed {args.seed}")
    metadata = {"format": fmt, "model": args.model, "source": source}
    n = write_safetensors(args.out, export_state_dict(model.state_dict()), metadata)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {len(model.state_dict())} tensors, {params:,} parameters, {n:,} bytes, {fmt} {args.model}")


if __name__ == "__main__":
    main()
