#!/usr/bin/env python3
"""Continue training an atrous checkpoint in PyTorch, on one or many processes (DistributedDataParallel).

Reads an atrous checkpoint (tools/atrous_torch.py builds its PyTorch twin), trains it with
atrous's recipe on a VOC-layout folder such as ``npx atrous data export`` writes, and saves an
atrous checkpoint that ``npx atrous eval / predict`` and the page load as they are:

* recipe (DeepLabv3 §4.1, as ``atrous train``): SGD with momentum 0.9 and weight decay 1e-4,
  poly learning rate lr * (1 - step / steps)^0.9 per stage, cross entropy ignoring 255, random
  scale (0.5..2, bilinear image, nearest label), crop padded with the mean (normalised 0) and 255,
  left-right flip; optionally in stages (``--recipe configs/main.json``: 700 steps at output stride
  16, then 200 at 8 with batch norm frozen, statistics and affine parameters, one optimizer);
* ``--batch`` is the global batch: each of the world's processes takes batch / world images of
  it; gradients are averaged by DDP, so the step is the one of a single process with the whole
  batch, except batch norm, which normalises each process's images (plain BN; PyTorch's
  SyncBatchNorm needs CUDA);
* the output checkpoint keeps the input's metadata (classes, normalisation) and states the
  inference settings trained at: ``inference.outputStride`` = the last stage's output stride,
  padding ``stride+1`` when the crop is k x output stride + 1 (atrous's paddingForCrop);
  ``classes`` from the data folder's atrous-dataset.json when it names them.

``--eval SPLIT`` then evaluates on rank 0 as ``atrous eval`` does: whole images in eval mode at
the checkpoint's output stride, each padded at the bottom and right with zeros (after
normalisation) to k x output stride + 1 when the padding is ``stride+1``, logits cropped back,
a confusion matrix over labelled pixels, mIoU over the classes with a non-empty union. It prints
one JSON line ``{"miou": ..., "iou": [...], "pixelAccuracy": ...}``; ``--steps 0`` only evaluates.

Data folder: DIR/JPEGImages/<id>.{jpg,png}, DIR/SegmentationClass/<id>.png (palette PNG whose
indices are the classes, 255 ignored), DIR/ImageSets/Segmentation/<split>.txt, and optionally
DIR/atrous-dataset.json ({numClasses, classNames, labelMap}).

    torchrun --nproc_per_node 2 tools/torch_ddp_train.py --init weights/mini-shapes.safetensors \\
        --data /tmp/shp --steps 20 --batch 8 --lr 0.01 --out /tmp/ddp.safetensors
    /usr/bin/python3 tools/torch_ddp_train.py --init init.safetensors --data /tmp/shp \\
        --recipe configs/main.json --out /tmp/torch.safetensors --eval val     # one process

(``torchrun`` is ``/usr/bin/python3 -m torch.distributed.run`` where the command is not on PATH;
Debian's torch 1.13 on Python 3.11 needs ``--redirects 2 --tee 1`` after ``torchrun``: it cannot
parse their default ``0``.)
Options left out take the recipe file's value, else atrous train's default.
"""

import argparse
import json
import os
import random
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atrous_torch as at  # noqa: E402

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# atrous train's defaults (src/train/options.ts) where neither a flag nor --recipe gives a value.
DEFAULTS = {"batch": 8, "lr": 0.02, "momentum": 0.9, "weightDecay": 1e-4, "power": 0.9, "scaleMin": 0.5, "scaleMax": 2.0, "seed": 0}


# data ------------------------------------------------------------------------------------------

def dataset_info(root):
    """atrous-dataset.json of a data folder ({} when absent)."""
    p = os.path.join(root, "atrous-dataset.json")
    return json.load(open(p)) if os.path.exists(p) else {}


def load_split(root, split, mean, std, label_map=None):
    """Images and labels of a split, in file order: a list of (x [3, h, w] float32 normalised,
    y [h, w] int64 with 255 = ignore)."""
    ids = open(os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")).read().split()
    if not ids:
        raise SystemExit(f"{root}: split '{split}' is empty")
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    lut = None
    if label_map:
        lut = np.arange(256, dtype=np.int64)
        for k, v in label_map.items():
            lut[int(k)] = v
    out = []
    for i in ids:
        img = next((os.path.join(root, "JPEGImages", i + e) for e in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
                    if os.path.exists(os.path.join(root, "JPEGImages", i + e))), None)
        if img is None:
            raise SystemExit(f"{root}/JPEGImages: no image for '{i}'")
        x = torch.from_numpy(np.array(Image.open(img).convert("RGB"), dtype=np.float32)).permute(2, 0, 1) / 255
        y = np.array(Image.open(os.path.join(root, "SegmentationClass", i + ".png")), dtype=np.int64)
        if lut is not None:
            y = lut[y]
        out.append((((x - m) / s).contiguous(), torch.from_numpy(y)))
    return out


def augment(x, y, rng, crop, smin, smax):
    """The §4.1 augmentation of src/data/augment.ts: random scale (bilinear image, nearest label),
    a crop x crop window anywhere that keeps it inside the image (or the image inside it), padded
    with 0 (the normalised mean) and 255, left-right flip with probability 1/2."""
    s = rng.uniform(smin, smax)
    h, w = max(1, round(x.shape[1] * s)), max(1, round(x.shape[2] * s))
    x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    y = F.interpolate(y[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
    xo = torch.zeros(3, crop, crop)
    yo = torch.full((crop, crop), 255, dtype=torch.long)
    t = rng.randint(min(0, h - crop), max(0, h - crop))
    l = rng.randint(min(0, w - crop), max(0, w - crop))
    ys, xs, yd, xd = max(0, t), max(0, l), max(0, -t), max(0, -l)
    hh, ww = min(h - ys, crop - yd), min(w - xs, crop - xd)
    xo[:, yd:yd + hh, xd:xd + ww] = x[:, ys:ys + hh, xs:xs + ww]
    yo[yd:yd + hh, xd:xd + ww] = y[ys:ys + hh, xs:xs + ww]
    if rng.random() < 0.5:
        xo, yo = xo.flip(-1), yo.flip(-1)
    return xo, yo


# evaluation ------------------------------------------------------------------------------------

def confusion_metrics(conf):
    """Per-class IoU (None where the union is empty), their mean over the others, pixel accuracy,
    from a confusion matrix [truth, prediction] (src/train/metrics.ts)."""
    conf = conf.double()
    d = conf.diag()
    union = conf.sum(0) + conf.sum(1) - d
    iou = [float(d[k] / union[k]) if union[k] > 0 else None for k in range(len(d))]
    present = [v for v in iou if v is not None]
    return {"miou": sum(present) / len(present) if present else 0.0, "iou": iou,
            "pixelAccuracy": float(d.sum() / conf.sum()) if conf.sum() > 0 else 0.0, "pixels": int(conf.sum())}


def evaluate(model, samples, num_classes, pad_multiple):
    """Whole images through `model` (eval mode), one at a time, padded at the bottom and right
    with zeros to k x pad_multiple + 1 (pad_multiple 0: as they are); confusion_metrics."""
    model.eval()
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    with torch.no_grad():
        for x, y in samples:
            h, w = x.shape[1:]
            if pad_multiple > 1:
                ph, pw = -(-(h - 1) // pad_multiple) * pad_multiple + 1, -(-(w - 1) // pad_multiple) * pad_multiple + 1
                x = F.pad(x, (0, pw - w, 0, ph - h))
            pred = model(x[None])[0, :, :h, :w].argmax(0)
            keep = y != 255
            conf += torch.bincount(y[keep] * num_classes + pred[keep], minlength=num_classes * num_classes).view(num_classes, num_classes)
    return confusion_metrics(conf)


# training --------------------------------------------------------------------------------------

def stages_of(args, recipe, default_os):
    """[(steps, lr, output stride, freeze batch norm)] from --steps/--lr/--output-stride or the
    recipe file's "stages" (flags win: --steps with a staged recipe is an error)."""
    if recipe.get("stages"):
        if args.steps is not None or args.lr is not None:
            raise SystemExit("torch_ddp_train.py: the recipe has stages, each with its own steps and lr; drop --steps and --lr")
        unsupported = [k for k in ("freezeBackbone", "headLrMult") if k in recipe or any(k in st for st in recipe["stages"])]
        if unsupported:
            raise SystemExit(f"torch_ddp_train.py: the recipe sets {', '.join(unsupported)}, which this script does not implement")
        # A stage without an output stride takes the recipe's, else the one the checkpoint was trained at.
        base_os = recipe.get("outputStride") or default_os
        return [(st["steps"], st["lr"], st.get("outputStride", base_os), bool(st.get("freezeBatchNorm", recipe.get("freezeBatchNorm", False)))) for st in recipe["stages"]]
    steps = args.steps if args.steps is not None else recipe.get("steps")
    if steps is None:
        raise SystemExit("torch_ddp_train.py: give --steps (or a --recipe with steps or stages)")
    lr = args.lr if args.lr is not None else recipe.get("lr", DEFAULTS["lr"])
    os_ = args.output_stride or recipe.get("outputStride") or default_os
    return [(steps, lr, os_, args.freeze_bn)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--init", required=True, help="atrous checkpoint to start from")
    ap.add_argument("--data", required=True, help="VOC-layout folder (npx atrous data export)")
    ap.add_argument("--out", help="atrous checkpoint to write (rank 0)")
    ap.add_argument("--recipe", help="an atrous training config file (configs/main.json): batch, crop, lr, steps or stages, ...")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int, help="global batch, split over the processes")
    ap.add_argument("--crop", type=int, help="default: the recipe's, else the model config's cropSize")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--momentum", type=float)
    ap.add_argument("--weight-decay", type=float)
    ap.add_argument("--power", type=float)
    ap.add_argument("--scale-min", type=float)
    ap.add_argument("--scale-max", type=float)
    ap.add_argument("--output-stride", type=int, help="default: the checkpoint's inference output stride")
    ap.add_argument("--freeze-bn", action="store_true", help="batch norm frozen (statistics and affine parameters)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--split", default="train")
    ap.add_argument("--eval", metavar="SPLIT", help="evaluate on this split after training (rank 0)")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    if distributed:
        dist.init_process_group("gloo")
    say = print if rank == 0 else (lambda *a, **k: None)

    recipe = json.load(open(args.recipe)) if args.recipe else {}
    pick = lambda flag, key: flag if flag is not None else recipe.get(key, DEFAULTS[key])  # noqa: E731
    batch, momentum, wd = pick(args.batch, "batch"), pick(args.momentum, "momentum"), pick(args.weight_decay, "weightDecay")
    power, smin, smax, seed = pick(args.power, "power"), pick(args.scale_min, "scaleMin"), pick(args.scale_max, "scaleMax"), pick(args.seed, "seed")
    if batch % world:
        raise SystemExit(f"torch_ddp_train.py: --batch {batch} must be a multiple of the {world} processes")

    twin, config, meta = at.load_atrous(args.init)
    inference = json.loads(meta["inference"]) if "inference" in meta else {}
    mean, std = inference.get("mean", IMAGENET_MEAN), inference.get("std", IMAGENET_STD)
    crop = args.crop or recipe.get("crop") or config["cropSize"]
    info = dataset_info(args.data)
    classes = info.get("classNames") or (json.loads(meta["classes"]) if "classes" in meta else None)
    num_classes = info.get("numClasses") or (len(classes) if classes else config["numClasses"])
    if num_classes != config["numClasses"]:
        raise SystemExit(f"{args.init}: the model predicts {config['numClasses']} classes but {args.data} has {num_classes}")
    stages = stages_of(args, recipe, twin.output_stride)
    total = sum(s[0] for s in stages)

    torch.manual_seed(seed + rank)  # dropout masks differ per process
    train = load_split(args.data, args.split, mean, std, info.get("labelMap")) if total else []
    # Every process draws the same global batch (same seed) and takes its slice; augmentation
    # draws are per process.
    batch_rng = random.Random(seed)
    aug_rng = random.Random(seed * 1000 + rank)
    per = batch // world
    model = twin.train()
    params = [p for p in model.parameters()]
    opt = torch.optim.SGD(params, lr=stages[0][1] if stages else 0.0, momentum=momentum, weight_decay=wd)
    unused = config["aux"]  # atrous trains without the aux head: its parameters get no gradient
    say(f"{config['name']}: {sum(p.numel() for p in params):,} parameters; {len(train)} {args.split} images; {world} process(es), "
        f"batch {batch} ({per} each), crop {crop}; stages {[(s, lr, os_, fz) for s, lr, os_, fz in stages]}", flush=True)
    step, t0 = 0, time.time()
    ddp = None
    for steps, lr0, os_, freeze in stages:
        twin.set_output_stride(os_)
        for p in twin.parameters():
            p.requires_grad_(True)
        if freeze:
            twin.freeze_batch_norm(True, affine=True)
        # A new wrapper per stage: DDP fixes the set of parameters that take gradients.
        ddp = torch.nn.parallel.DistributedDataParallel(twin, find_unused_parameters=unused) if distributed else twin
        for i in range(steps):
            lr = lr0 * (1 - i / steps) ** power
            for g in opt.param_groups:
                g["lr"] = lr
            idx = [batch_rng.randrange(len(train)) for _ in range(batch)][rank * per:(rank + 1) * per]
            xb, yb = zip(*[augment(*train[j], aug_rng, crop, smin, smax) for j in idx])
            twin.train()
            if freeze:
                twin.freeze_batch_norm(True)
            loss = F.cross_entropy(ddp(torch.stack(xb)), torch.stack(yb), ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % args.log_every == 0 or step == total:
                l = loss.detach().clone()
                if distributed:
                    dist.all_reduce(l)
                    l /= world
                say(f"step {step}/{total} loss {l.item():.4f} lr {lr:.2e} {time.time() - t0:.0f}s", flush=True)

    if rank == 0 and args.out:
        out_meta = {k: v for k, v in meta.items() if k not in ("format", "config")}
        pad = "stride+1" if (crop - 1) % twin.output_stride == 0 else "none"
        out_meta["inference"] = json.dumps({"outputStride": twin.output_stride, "mean": mean, "std": std, "padding": pad})
        if classes:
            out_meta["classes"] = json.dumps(classes)
        out_meta["dataset"] = f"voc:{os.path.abspath(args.data)}"
        out_meta["step"] = str(step)
        out_meta["source"] = (f"tools/torch_ddp_train.py: {total} steps from {os.path.basename(args.init)}, {world} process(es), "
                              f"torch {torch.__version__}")
        n = at.save_atrous(twin, config, args.out, out_meta)
        say(f"{args.out}: {n:,} bytes (output stride {twin.output_stride}, padding {pad})", flush=True)
    if rank == 0 and args.eval:
        inf = {"outputStride": twin.output_stride, "padding": "stride+1" if total and (crop - 1) % twin.output_stride == 0 else inference.get("padding", "none")}
        samples = load_split(args.data, args.eval, mean, std, info.get("labelMap"))
        m = evaluate(twin, samples, num_classes, twin.output_stride if inf["padding"] == "stride+1" else 0)
        print(json.dumps({"split": args.eval, "images": len(samples), "outputStride": twin.output_stride, "padding": inf["padding"], **m}), flush=True)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
