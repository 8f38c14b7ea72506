#!/usr/bin/env python3
"""PyTorch reference for the main job's recipe: is a result a property of the engine or of the task?

Trains the torchvision-structured equivalent of atrous's `mini` (tools/gen_model_fixture.py's
build_small with mini's widths, blocks and ASPP; torchvision's DeepLabHead adds one 3x3 conv, and
Multi-Grid is left out) on a `shapes` export, with the same recipe as `atrous train` (SGD momentum
0.9, weight decay 1e-4, poly LR power 0.9, random scale / crop / flip, cross entropy ignoring 255)
and prints the per-class IoU and mIoU on the exported val split (whole images).

    npx atrous data export --dataset shapes --split train --count 3000 --format png --out /tmp/shp
    npx atrous data export --dataset shapes --split val --count 200 --format png --out /tmp/shp
    /usr/bin/python3 tools/torch_train_shapes.py root=/tmp/shp steps=900 batch=16 crop=65 lr=0.05 os=16

Options (key=value): root, steps, batch, crop, lr, os (8 | 16), wm (width multiplier), smin/smax
(scale range), adam=1 (Adam instead of SGD, for comparison only); the two-stage schedule of
configs/main.json: stage2=N (the last N of `steps` at output stride 8, lr2, poly from lr2),
lr2 (default lr / 10), freeze=1 (batch norm frozen in stage 2: running statistics used and kept,
weight and bias not trained). The main job's schedule:

    /usr/bin/python3 tools/torch_train_shapes.py root=/tmp/shp steps=900 stage2=200 lr=0.1 lr2=0.01 freeze=1
"""

import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_model_fixture as g  # noqa: E402
from torch_ddp_train import augment  # noqa: E402

torch.set_num_threads(2)
args = dict(a.split("=", 1) for a in sys.argv[1:])
steps = int(args.get("steps", 900))
batch = int(args.get("batch", 16))
crop = int(args.get("crop", 65))
lr0 = float(args.get("lr", 0.05))
os_ = int(args.get("os", 16))
wm = float(args.get("wm", 0.125))
smin = float(args.get("smin", 0.5))
smax = float(args.get("smax", 2.0))
root = args.get("root", "/tmp/shp")
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def load(split):
    ids = open(f"{root}/ImageSets/Segmentation/{split}.txt").read().split()
    x = np.stack([np.array(Image.open(f"{root}/JPEGImages/{i}.png").convert("RGB")) for i in ids]).astype(np.float32)
    y = np.stack([np.array(Image.open(f"{root}/SegmentationClass/{i}.png")) for i in ids]).astype(np.int64)
    x = (x / 255 - MEAN) / STD
    return torch.tensor(x, dtype=torch.float32).permute(0, 3, 1, 2).contiguous(), torch.tensor(y)


xt, yt = load("train")
xv, yv = load("val")
classes = int(torch.where(yt == 255, 0, yt).max()) + 1
cfg = {"numClasses": classes, "blocks": [1, 1, 1, 3], "widthMultiplier": wm,
       "aspp": {"rates": [1, 2, 3], "ratesOutputStride": 16, "channels": 64}}
model = g.build_small(cfg, os_)
model.aux_classifier = None
if args.get("adam"):
    opt = torch.optim.Adam(model.parameters(), lr=lr0)
else:
    opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=0.9, weight_decay=1e-4)
rng = random.Random(0)


stage2 = int(args.get("stage2", 0))
lr2 = float(args.get("lr2", lr0 / 10))
freeze = bool(args.get("freeze"))
steps1 = steps - stage2


def set_bn_frozen(m):
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()


t0 = time.time()
model.train()
for step in range(steps):
    if stage2 and step == steps1:
        # Stage 2: the same weights at output stride 8 (dilation is not a weight), a fresh SGD.
        m8 = g.build_small(cfg, 8)
        m8.aux_classifier = None
        m8.load_state_dict(model.state_dict())
        model = m8
        model.train()
        if freeze:
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.weight.requires_grad_(False)
                    mod.bias.requires_grad_(False)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr2, momentum=0.9, weight_decay=1e-4)
    if step < steps1:
        lr = lr0 * (1 - step / steps1) ** 0.9
    else:
        lr = lr2 * (1 - (step - steps1) / stage2) ** 0.9
    for pg in opt.param_groups:
        pg["lr"] = lr
    if freeze and step >= steps1:
        set_bn_frozen(model)
    xb, yb = zip(*[augment(xt[i], yt[i], rng, crop, smin, smax) for i in (rng.randrange(len(xt)) for _ in range(batch))])
    loss = F.cross_entropy(model(torch.stack(xb))["out"], torch.stack(yb), ignore_index=255)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 100 == 0 or step == steps - 1:
        print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
model.eval()
conf = torch.zeros(classes, classes, dtype=torch.long)
with torch.no_grad():
    for i in range(0, len(xv), 20):
        p = model(xv[i:i + 20])["out"].argmax(1)
        y = yv[i:i + 20]
        keep = y != 255
        conf += torch.bincount(y[keep] * classes + p[keep], minlength=classes * classes).view(classes, classes)
inter = conf.diag().float()
union = (conf.sum(0) + conf.sum(1) - conf.diag()).float()
iou = inter[union > 0] / union[union > 0]
print("IoU", [round(v, 3) for v in iou.tolist()], f"mIoU {iou.mean().item():.4f}")
