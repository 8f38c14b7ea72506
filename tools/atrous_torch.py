#!/usr/bin/env python3
"""The PyTorch twin of atrous's DeepLabv3: any atrous configuration, the same tensor names.

``build_model(config)`` builds, for any atrous model configuration (src/nn/configs.ts,
DeepLabV3Config: a named one such as ``mini``, ``paper-r50-os16``, ``paper-r101-cascade``,
``torchvision-deeplabv3-resnet50``, a name with overrides, or a complete custom JSON), a
``torch.nn.Module`` whose ``state_dict()`` has exactly atrous's keys and shapes
(``backbone.layer4.2.conv2.weight``, ``classifier.0.convs.1.0.weight``,
``aux_classifier.0.weight``, ``*.running_mean``, ``*.num_batches_tracked``) and that computes
what atrous computes:

* backbone: torchvision's ``Bottleneck`` units (stride in conv2, "ResNet v1.5") in layer1..layer4
  plus the paper's cascaded copies of layer4 as layer5..layer7 (``cascade``), stem and stage
  widths ``round(64 m) * (1, 2, 4, 8)``; a strided cascaded unit without projection subsamples its
  identity (a 1x1 max-pool with the stride), as atrous and TF-slim do;
* output stride chosen at run time (``set_output_stride``, atrous's ``setOutputStride``): stages
  stop striding once the stride is reached and dilate instead; Multi-Grid unit rates in layer4 and
  the cascaded blocks; the ASPP rates scale by ``ratesOutputStride / outputStride`` (rounded half
  up, at least 1);
* head: torchvision's ``ASPP`` (optionally without the image-pooling branch, any number of rates,
  the configuration's filters and dropout), torchvision's DeepLabHead extra 3x3 conv + BN + ReLU
  when ``headConv``, the 1x1 logits conv; or, without ASPP, the bare 1x1 logits conv;
  torchvision's ``FCNHead`` on layer3 as ``aux_classifier`` when ``aux``;
* batch norm with the configuration's momentum (PyTorch's convention, as atrous's) and epsilon.

``model(x)`` maps a normalised batch [n, 3, h, w] (float32, NCHW) to logits [n, classes, h, w]
upsampled bilinearly (align_corners=False) to the input size, like atrous's ``forward``;
``model(x, with_aux=True)`` returns ``(logits, aux_logits or None)``.

Checkpoints are atrous's safetensors files: ``load_atrous(path)`` returns ``(model, config,
metadata)`` with the model at the output stride the file's ``inference`` metadata states;
``save_atrous(model, config, path, metadata)`` writes ``__metadata__`` with ``format:
atrous-deeplabv3`` and the configuration as JSON, keeping the other metadata given (``inference``,
``classes``, ``dataset``, ...). Tensors: floats as F32, num_batches_tracked as I64 (the writer of
tools/export_torchvision.py).

Command line (``/usr/bin/python3``: Debian's python3-torch and python3-torchvision)::

    atrous_torch.py info FILE                          # configuration, parameters, metadata
    atrous_torch.py configs                            # the named configurations as JSON
    atrous_torch.py random --config NAME|JSON --seed S --out FILE [--classes N]
    atrous_torch.py logits --weights FILE --input X.safetensors --out Y.safetensors [--output-stride OS]

``random`` writes a randomly initialised model (PyTorch's initialisation) as an atrous
checkpoint. ``logits`` reads the tensor ``x`` [n, 3, h, w] from X and writes ``out`` (the eval-mode
logits, computed in float32) to Y; the output stride defaults to the checkpoint's.
"""

import argparse
import copy
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import export_state_dict, write_safetensors  # noqa: E402

from torchvision.models.resnet import Bottleneck  # noqa: E402
from torchvision.models.segmentation.deeplabv3 import ASPP  # noqa: E402
from torchvision.models.segmentation.fcn import FCNHead  # noqa: E402

FORMAT = "atrous-deeplabv3"

# src/nn/configs.ts CONFIGS, field for field (the opt-in test test/torch-roundtrip.test.ts
# compares the two).
_PAPER_ASPP = {"rates": [6, 12, 18], "ratesOutputStride": 16, "imagePooling": True, "channels": 256, "dropout": 0}
_PAPER_BN = {"bnMomentum": 0.0003, "bnEps": 1e-5}


def _torchvision(name, blocks):
    return {
        "name": name, "numClasses": 21, "blocks": blocks, "cascade": 0, "widthMultiplier": 1, "multiGrid": None,
        "outputStride": 8, "aspp": {"rates": [12, 24, 36], "ratesOutputStride": 8, "imagePooling": True, "channels": 256, "dropout": 0.5},
        "headConv": True, "aux": False, "auxDropout": 0.1, "bnMomentum": 0.1, "bnEps": 1e-5, "cropSize": 513,
    }


def _paper(name, blocks, cascade, multi_grid, aspp):
    return {
        "name": name, "numClasses": 21, "blocks": blocks, "cascade": cascade, "widthMultiplier": 1, "multiGrid": multi_grid,
        "outputStride": 16, "aspp": aspp, "headConv": False, "aux": False, "auxDropout": 0.1, **_PAPER_BN, "cropSize": 513,
    }


CONFIGS = {
    "paper-r50-os16": _paper("paper-r50-os16", [3, 4, 6, 3], 0, [1, 2, 4], _PAPER_ASPP),
    "paper-r101-os16": _paper("paper-r101-os16", [3, 4, 23, 3], 0, [1, 2, 4], _PAPER_ASPP),
    "paper-r101-cascade": _paper("paper-r101-cascade", [3, 4, 23, 3], 3, [1, 2, 1], None),
    "torchvision-deeplabv3-resnet50": _torchvision("torchvision-deeplabv3-resnet50", [3, 4, 6, 3]),
    "torchvision-deeplabv3-resnet101": _torchvision("torchvision-deeplabv3-resnet101", [3, 4, 23, 3]),
    "mini": {
        "name": "mini", "numClasses": 21, "blocks": [1, 1, 1, 3], "cascade": 0, "widthMultiplier": 0.125, "multiGrid": [1, 2, 4],
        "outputStride": 16, "aspp": {"rates": [1, 2, 3], "ratesOutputStride": 16, "imagePooling": True, "channels": 64, "dropout": 0},
        "headConv": False, "aux": False, "auxDropout": 0.1, "bnMomentum": 0.1, "bnEps": 1e-5, "cropSize": 65,
    },
}

_FIELDS = ["name", "numClasses", "blocks", "cascade", "widthMultiplier", "multiGrid", "outputStride", "aspp", "headConv",
           "aux", "auxDropout", "bnMomentum", "bnEps", "cropSize"]


def js_round(x):
    """JavaScript's Math.round (half up), which atrous uses for widths and ASPP rates."""
    return math.floor(x + 0.5)


def resolve_config(obj):
    """A complete configuration from JSON (a dict or a JSON string), as atrous's configFromJSON:
    a known name fills in the missing fields (``aspp`` overrides merge into the named ASPP
    settings, ``"aspp": null`` removes it); otherwise every field must be given. Raises
    ValueError naming the first missing or bad field."""
    if isinstance(obj, str):
        obj = json.loads(obj)
    if not isinstance(obj, dict):
        raise ValueError(f"model config must be a JSON object, got {obj!r}")
    name = obj.get("name")
    if isinstance(name, str) and name in CONFIGS:
        cfg = copy.deepcopy(CONFIGS[name])
        for k, v in obj.items():
            if k == "aspp" and v is not None and cfg["aspp"] is not None:
                cfg["aspp"] = {**cfg["aspp"], **v}
            else:
                cfg[k] = copy.deepcopy(v)
    else:
        cfg = copy.deepcopy(obj)
    for k in _FIELDS:
        if k not in cfg:
            raise ValueError(f"model config '{cfg.get('name', '?')}': missing field '{k}'")
    if len(cfg["blocks"]) != 4:
        raise ValueError(f"model config '{cfg['name']}': 'blocks' must be four integers, got {cfg['blocks']}")
    if cfg["multiGrid"] is not None and len(cfg["multiGrid"]) != cfg["blocks"][3]:
        raise ValueError(f"model config '{cfg['name']}': 'multiGrid' needs one rate per unit of layer4 ({cfg['blocks'][3]})")
    if cfg["aspp"] is None and cfg["headConv"]:
        raise ValueError(f"model config '{cfg['name']}': 'headConv' must be false without ASPP")
    return cfg


def base_width(m):
    """Stem width round(64 m), at least 1 (src/nn/resnet.ts baseWidth)."""
    return max(1, js_round(64 * m))


def plan_stages(units, output_stride, multi_grid):
    """src/nn/resnet.ts planStages: per stage, (stride, 3x3 dilation of each unit)."""
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


def aspp_rates_at(aspp, output_stride):
    """src/nn/configs.ts asppRatesAt: rates x ratesOutputStride / outputStride, rounded, >= 1."""
    return [max(1, js_round(r * aspp["ratesOutputStride"] / output_stride)) for r in aspp["rates"]]


class Backbone(nn.Module):
    """ResNet as torchvision's IntermediateLayerGetter holds it (conv1, bn1, maxpool, layer1..),
    with layer5..layer7 for the cascaded blocks."""

    def __init__(self, cfg):
        super().__init__()
        base = base_width(cfg["widthMultiplier"])
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.units = list(cfg["blocks"]) + [cfg["blocks"][3]] * cfg["cascade"]
        self.multi_grid = cfg["multiGrid"]
        self.stages = []
        inplanes = base
        for s, n in enumerate(self.units):
            planes = base * 2 ** min(s, 3)
            layers = []
            for i in range(n):
                # A projection where the channels change: every stage's first unit except the
                # cascaded copies of layer4.
                ds = None
                if i == 0 and inplanes != planes * 4:
                    ds = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4))
                layers.append(Bottleneck(inplanes, planes, downsample=ds))
                inplanes = planes * 4
            stage = nn.Sequential(*layers)
            setattr(self, f"layer{s + 1}", stage)
            self.stages.append(stage)
        self.out_channels = inplanes
        self.aux_channels = base * 4 * 4
        self.output_stride = None

    @property
    def max_output_stride(self):
        return 4 * 2 ** (len(self.units) - 1)

    def set_output_stride(self, os_):
        if not isinstance(os_, int) or os_ < 4 or os_ > self.max_output_stride or os_ & (os_ - 1):
            raise ValueError(f"output stride must be a power of 2 in [4, {self.max_output_stride}] for {len(self.units)} stages, got {os_}")
        for stage, (stride, dil) in zip(self.stages, plan_stages(self.units, os_, self.multi_grid)):
            for i, (unit, d) in enumerate(zip(stage, dil)):
                s = stride if i == 0 else 1
                unit.conv2.stride = (s, s)
                unit.conv2.dilation = (d, d)
                unit.conv2.padding = (d, d)
                if isinstance(unit.downsample, nn.Sequential):
                    unit.downsample[0].stride = (s, s)
                else:
                    # No projection: a strided unit subsamples its identity (no weights, so the
                    # state dict does not change).
                    unit.downsample = nn.MaxPool2d(kernel_size=1, stride=s) if s > 1 else None
        self.output_stride = os_

    def forward(self, x, want_aux=False):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        aux = None
        for s, stage in enumerate(self.stages):
            x = stage(x)
            if s == 2 and want_aux:
                aux = x
        return x, aux


class DeepLabV3Twin(nn.Module):
    """atrous's DeepLabV3 (src/nn/deeplabv3.ts) in PyTorch: ``backbone``, ``classifier`` and the
    optional ``aux_classifier``, with atrous's state-dict keys and shapes."""

    def __init__(self, config):
        super().__init__()
        cfg = resolve_config(config)
        self.config = cfg
        self.backbone = Backbone(cfg)
        cin = self.backbone.out_channels
        a = cfg["aspp"]
        if a is not None:
            c = a["channels"]
            aspp = ASPP(cin, aspp_rates_at(a, cfg["outputStride"]), out_channels=c)
            if not a["imagePooling"]:
                aspp.convs = nn.ModuleList(list(aspp.convs)[:-1])
                aspp.project[0] = nn.Conv2d(len(aspp.convs) * c, c, 1, bias=False)
            aspp.project[3].p = a["dropout"]
            head = [aspp]
            if cfg["headConv"]:
                head += [nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
            head.append(nn.Conv2d(c, cfg["numClasses"], 1))
        else:
            head = [nn.Conv2d(cin, cfg["numClasses"], 1)]
        self.classifier = nn.Sequential(*head)
        if cfg["aux"]:
            self.aux_classifier = FCNHead(self.backbone.aux_channels, cfg["numClasses"])
            self.aux_classifier[3].p = cfg["auxDropout"]
        else:
            self.aux_classifier = None
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = cfg["bnMomentum"]
                m.eps = cfg["bnEps"]
        self.set_output_stride(cfg["outputStride"])

    @property
    def aspp(self):
        """The ASPP module (classifier.0), or None without ASPP."""
        return self.classifier[0] if self.config["aspp"] is not None else None

    @property
    def num_classes(self):
        return self.config["numClasses"]

    @property
    def output_stride(self):
        return self.backbone.output_stride

    def set_output_stride(self, os_, aspp_rates=None):
        """The same weights at another output stride (atrous's setOutputStride): the backbone
        trades striding for atrous rate and the ASPP rates scale with it, unless ``aspp_rates``
        gives them. Returns self."""
        self.backbone.set_output_stride(os_)
        if self.aspp is not None:
            rates = aspp_rates if aspp_rates is not None else aspp_rates_at(self.config["aspp"], os_)
            branches = list(self.aspp.convs)[1:1 + len(self.config["aspp"]["rates"])]
            if len(rates) != len(branches):
                raise ValueError(f"ASPP has {len(branches)} atrous branches, got {len(rates)} rates")
            for b, r in zip(branches, rates):
                b[0].dilation = (r, r)
                b[0].padding = (r, r)
        elif aspp_rates is not None:
            raise ValueError(f"configuration '{self.config['name']}' has no ASPP to take rates {aspp_rates}")
        return self

    def freeze_batch_norm(self, freeze=True, affine=False):
        """atrous's freezeBatchNorm: batch norm normalises with (and keeps) its running statistics
        even in training mode; with affine=True its weight and bias stop requiring gradients.
        Call again after every ``train()`` (which puts the BN modules back in training mode)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                if freeze:
                    m.eval()
                if affine:
                    m.weight.requires_grad_(not freeze)
                    m.bias.requires_grad_(not freeze)
        return self

    def forward(self, x, with_aux=False):
        size = x.shape[-2:]
        feats, aux = self.backbone(x, with_aux and self.aux_classifier is not None)
        out = F.interpolate(self.classifier(feats), size=size, mode="bilinear", align_corners=False)
        if not with_aux:
            return out
        if aux is not None:
            aux = F.interpolate(self.aux_classifier(aux), size=size, mode="bilinear", align_corners=False)
        return out, aux


def build_model(config):
    """The twin of an atrous configuration (a dict, a JSON string or a configuration name)."""
    if isinstance(config, str) and config in CONFIGS:
        config = {"name": config}
    return DeepLabV3Twin(config)


# safetensors ---------------------------------------------------------------------------------

ST_DTYPES = {
    "F32": torch.float32, "F64": torch.float64, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file: an ordered dict name -> tensor (the file's
    dtype, CPU) and the ``__metadata__`` dict of strings. Raises ValueError on a malformed file."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise ValueError(f"{path}: header of {n} bytes runs past the end of the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", None) or {}
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in ST_DTYPES:
            raise ValueError(f"{path}: tensor '{name}' has dtype {info['dtype']} (known: {', '.join(ST_DTYPES)})")
        dt = ST_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        item = torch.empty(0, dtype=dt).element_size()
        count = math.prod(info["shape"])
        if end - start != count * item or base + end > len(data):
            raise ValueError(f"{path}: tensor '{name}': data_offsets {info['data_offsets']} do not fit shape {info['shape']} {info['dtype']}")
        t = torch.frombuffer(data, dtype=dt, count=count, offset=base + start) if count else torch.empty(0, dtype=dt)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, metadata


def unwrap(model):
    """The model inside a DistributedDataParallel / DataParallel wrapper."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def load_atrous(path, output_stride=None):
    """(model, config, metadata) from an atrous checkpoint: the twin of ``__metadata__.config``
    with the file's tensors loaded strictly (every key and shape must match), in eval mode, at
    ``output_stride`` or else the output stride of ``__metadata__.inference`` or else the
    configuration's. Raises ValueError when the file has no config or a tensor does not fit."""
    tensors, metadata = read_safetensors(path)
    if "config" not in metadata:
        raise ValueError(f"{path}: no __metadata__.config: not an atrous checkpoint (write one with tools/export_torchvision.py)")
    config = resolve_config(json.loads(metadata["config"]))
    model = DeepLabV3Twin(config)
    state = model.state_dict()
    for k, v in tensors.items():
        if k not in state:
            raise ValueError(f"{path}: unexpected tensor '{k}' for configuration '{config['name']}'")
        if tuple(v.shape) != tuple(state[k].shape):
            raise ValueError(f"{path}: tensor '{k}' has shape {list(v.shape)}, the model wants {list(state[k].shape)}")
    missing = [k for k in state if k not in tensors]
    if missing:
        raise ValueError(f"{path}: missing tensor '{missing[0]}' ({len(missing)} missing)")
    model.load_state_dict({k: v.to(state[k].dtype) for k, v in tensors.items()}, strict=True)
    os_ = output_stride
    if os_ is None and "inference" in metadata:
        os_ = json.loads(metadata["inference"]).get("outputStride")
    if os_ is not None:
        model.set_output_stride(int(os_))
    return model.eval(), config, metadata


def save_atrous(model, config, path, metadata=None):
    """Writes ``model`` (the twin, or a DDP wrapper of it) as an atrous checkpoint: its state dict
    (F32, num_batches_tracked I64) and ``__metadata__`` = ``metadata`` (strings; ``inference``,
    ``classes``, ``dataset`` and any other key are kept) with ``format`` and ``config`` (the
    resolved configuration as JSON) set. Returns the file size in bytes."""
    cfg = resolve_config(config)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    meta["format"] = FORMAT
    meta["config"] = json.dumps(cfg)
    return write_safetensors(path, export_state_dict(unwrap(model).state_dict()), meta)


# command line ---------------------------------------------------------------------------------

def _config_arg(s):
    return json.loads(s) if s.strip().startswith("{") else {"name": s}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("info", help="configuration, parameter count and metadata of a checkpoint")
    p.add_argument("file")
    sub.add_parser("configs", help="the named configurations as JSON")
    p = sub.add_parser("random", help="write a randomly initialised twin as an atrous checkpoint")
    p.add_argument("--config", required=True, help="a configuration name or JSON")
    p.add_argument("--classes", type=int, help="numClasses override")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p = sub.add_parser("logits", help="eval-mode logits of a checkpoint on the tensor 'x' of a safetensors file")
    p.add_argument("--weights", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--output-stride", type=int)
    args = ap.parse_args()
    torch.set_num_threads(1)

    if args.cmd == "configs":
        print(json.dumps(CONFIGS))
    elif args.cmd == "info":
        model, cfg, meta = load_atrous(args.file)
        params = sum(p.numel() for p in model.parameters())
        print(json.dumps({"config": cfg, "parameters": params, "tensors": len(model.state_dict()), "outputStride": model.output_stride,
                          "metadata": {k: v for k, v in meta.items() if k != "config"}}, indent=1))
    elif args.cmd == "random":
        cfg = _config_arg(args.config)
        if args.classes is not None:
            cfg["numClasses"] = args.classes
        torch.manual_seed(args.seed)
        model = build_model(cfg)
        n = save_atrous(model, model.config, args.out, {"source": f"tools/atrous_torch.py random seed {args.seed}, torch {torch.__version__}"})
        print(f"{args.out}: {model.config['name']}, {sum(p.numel() for p in model.parameters()):,} parameters, {n:,} bytes")
    elif args.cmd == "logits":
        model, _, _ = load_atrous(args.weights, args.output_stride)
        tensors, _ = read_safetensors(args.input)
        with torch.no_grad():
            out = model(tensors["x"].float())
        write_safetensors(args.out, [("out", out)], {"outputStride": str(model.output_stride)})


if __name__ == "__main__":
    main()
