#!/usr/bin/env python3
"""Generate the PyTorch conformance fixtures for atrous.

What it writes
    One file per case, ``<out>/<op>__<case>.safetensors``, for the ops conv2d,
    batch_norm, adaptive_avg_pool2d, interpolate (bilinear), relu, max_pool2d,
    add, cat and cross_entropy.  Each file holds the case's inputs (named after
    the torch.nn.functional arguments: x, weight, bias, a, b, x0, x1, ...,
    target), ``dy`` (the random upstream gradient, same shape as the output;
    absent for cross_entropy, whose scalar loss is differentiated directly),
    ``out`` (the expected output) and ``grad_<input>`` for every
    differentiable float input.  batch_norm cases with training=true also hold
    ``running_mean_out`` / ``running_var_out`` (running stats after the
    forward, as F.batch_norm updates them in place).

    Inputs are drawn in float32 (torch.randn); everything is then computed in
    float64 from those float32-representable values and cast back to float32,
    so the expected values are exact up to one f32 rounding.

Format (safetensors, written by hand)
    8-byte little-endian u64 header length N, then N bytes of JSON header
    (padded with spaces so that 8 + N is a multiple of 8), then the raw
    little-endian tensor bytes, contiguous, in header order.  Header:
    ``{"<name>": {"dtype": "F32"|"I64"|"I32"|"U8", "shape": [...],
    "data_offsets": [begin, end]}, ..., "__metadata__": {"op": "<op>",
    "attrs": "<JSON string>"}}``.  Tensors are ordered by element size
    (8-byte dtypes first) so that each tensor's offset is naturally aligned
    for typed-array views; scalars have shape [].

How to run
    apt-get install python3-torch        # Debian's PyTorch
    python3 tools/gen_fixtures.py [--out DIR] [--seed S] [--random-shapes]

    Default out is test/fixtures, default seed 0.  --random-shapes perturbs
    every case's shapes (parity, batch, channels, sizes) while keeping what
    defines the case, so the suite can be re-run on fresh fixtures.  Output is
    deterministic for a given (seed, --random-shapes); every case draws from
    its own generator derived from the seed and the case name.
    (If `python3` is a pyenv/venv interpreter without torch, use
    /usr/bin/python3.)
"""

import argparse
import json
import os
import random
import struct
import sys
import zlib

import torch
import torch.nn.functional as F

DTYPES = {
    torch.float32: ("F32", 4),
    torch.int64: ("I64", 8),
    torch.int32: ("I32", 4),
    torch.uint8: ("U8", 1),
}


# --------------------------------------------------------------------------
# safetensors writer
# --------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) pairs; metadata: dict str -> str."""
    # 8-byte dtypes first, then 4, then 1 (stable), so every tensor is aligned.
    items = sorted(tensors, key=lambda kv: -DTYPES[kv[1].dtype][1])
    header = {}
    blobs = []
    offset = 0
    for name, t in items:
        dtype, _ = DTYPES[t.dtype]
        arr = t.detach().contiguous().cpu().numpy()
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    assert all(isinstance(v, str) for v in metadata.values())
    header["__metadata__"] = metadata
    hjson = json.dumps(header, separators=(",", ":")).encode("ascii")
    hjson += b" " * ((8 - (8 + len(hjson)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return 8 + len(hjson) + offset


# --------------------------------------------------------------------------
# case context: per-case RNG and shape perturbation
# --------------------------------------------------------------------------

class Ctx:
    def __init__(self, seed, name, random_shapes):
        s = zlib.crc32(f"{seed}:{name}".encode()) & 0x7FFFFFFF
        self.gen = torch.Generator().manual_seed(s)
        self.rng = random.Random(s)
        self.random_shapes = random_shapes

    def dim(self, default, lo, hi, parity=None):
        """default, or (with --random-shapes) a random int in [lo, hi],
        optionally restricted to 'odd' or 'even'."""
        if not self.random_shapes:
            return default
        choices = [v for v in range(lo, hi + 1)
                   if parity is None
                   or (parity == "odd" and v % 2 == 1)
                   or (parity == "even" and v % 2 == 0)]
        return self.rng.choice(choices)

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.gen, dtype=torch.float32)

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.gen, dtype=torch.float32)

    def randint(self, lo, hi, shape):
        return torch.randint(lo, hi, shape, generator=self.gen, dtype=torch.int64)


def run(ctx, inputs, diff, fwd, with_dy=True):
    """inputs: list of (name, tensor) (float32 or int64); diff: names that get
    gradients; fwd(dict name -> float64 tensor) -> output.  Returns the list of
    tensors to store and the float64 input dict (for side-effect inspection)."""
    t64 = {}
    for name, t in inputs:
        if t.dtype == torch.float32:
            t64[name] = t.double().requires_grad_(name in diff)
        else:
            t64[name] = t.clone()
    out = fwd(t64)
    tensors = list(inputs)
    if with_dy:
        dy = ctx.randn(*out.shape)
        out.backward(dy.double())
        tensors.append(("dy", dy))
    else:
        out.backward()
    tensors.append(("out", out.detach().float()))
    for name, _ in inputs:
        if name in diff:
            tensors.append(("grad_" + name, t64[name].grad.float()))
    return tensors, t64


# --------------------------------------------------------------------------
# cases: each yields (op, case, attrs, tensors)
# --------------------------------------------------------------------------

def conv_case(ctx, n, cin, h, w, cout, k, stride, padding, dilation, bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    inputs = [("x", ctx.randn(n, cin, h, w)), ("weight", ctx.randn(cout, cin, kh, kw))]
    if bias:
        inputs.append(("bias", ctx.randn(cout)))
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": 1}
    fwd = lambda t: F.conv2d(t["x"], t["weight"], t.get("bias"), stride=stride,
                             padding=padding, dilation=dilation, groups=1)
    tensors, _ = run(ctx, inputs, {name for name, _ in inputs}, fwd)
    return attrs, tensors


def conv2d_cases():
    for d in (1, 2, 6, 12, 18, 24, 36):
        def f(ctx, d=d):
            return conv_case(ctx, ctx.dim(2, 1, 3), ctx.dim(5, 1, 6), ctx.dim(13, 5, 14),
                             ctx.dim(11, 5, 14), ctx.dim(7, 1, 8), 3, 1, d, d, True)
        yield f"d{d}_pad{d}", f
    yield "big_d6_nobias", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 2), ctx.dim(16, 8, 16), ctx.dim(17, 12, 20), ctx.dim(17, 12, 20),
        ctx.dim(24, 8, 24), 3, 1, 6, 6, False)
    yield "stem7x7_s2", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 3), ctx.dim(3, 1, 4), ctx.dim(23, 15, 25), ctx.dim(19, 15, 25),
        ctx.dim(8, 4, 8), 7, 2, 3, 1, True)
    yield "1x1_s2_nobias", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 3), ctx.dim(6, 1, 8), ctx.dim(9, 5, 13), ctx.dim(12, 5, 13),
        ctx.dim(5, 1, 8), 1, 2, 0, 1, False)
    yield "1x1_s1", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 3), ctx.dim(6, 1, 8), ctx.dim(9, 3, 13), ctx.dim(12, 3, 13),
        ctx.dim(10, 1, 12), 1, 1, 0, 1, True)
    yield "3x3_s2", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 3), ctx.dim(4, 1, 6), ctx.dim(10, 4, 13), ctx.dim(9, 4, 13),
        ctx.dim(6, 1, 8), 3, 2, 1, 1, True)
    yield "3x3_s2_d2", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 3), ctx.dim(3, 1, 5), ctx.dim(11, 5, 13), ctx.dim(11, 5, 13),
        ctx.dim(4, 1, 6), 3, 2, 2, 2, True)
    # (h, w) pairs for dilation and padding; batch 1.
    yield "pairs_d2x3", lambda ctx: conv_case(
        ctx, 1, ctx.dim(3, 1, 5), ctx.dim(9, 5, 11), ctx.dim(10, 7, 12),
        ctx.dim(5, 1, 7), 3, 1, [2, 3], [2, 3], True)
    # Channel counts that fill the 'subgroup' kernels' tiles (>= 32 channels; smaller ones fall back
    # to the register kernels), so those kernels are checked against PyTorch too: a dilated 3x3
    # (forward / backward-data regions), a strided one (backward-data residue classes) and a
    # 21x21 map at rate 6 (the region cut is used there).
    yield "wide64_d2", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 2), 64, ctx.dim(11, 9, 13), ctx.dim(11, 9, 13), 64, 3, 1, 2, 2, True)
    yield "wide40_s2", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 2), 40, ctx.dim(13, 9, 14), ctx.dim(12, 9, 14), 36, 3, 2, 1, 1, True)
    yield "wide32_d6_map21", lambda ctx: conv_case(
        ctx, 1, 32, 21, 21, 64, 3, 1, 6, 6, False)
    # 5x5 with padding 1: output shrinks (not "same" padding).
    yield "5x5_pad1", lambda ctx: conv_case(
        ctx, ctx.dim(2, 1, 3), ctx.dim(3, 1, 5), ctx.dim(8, 3, 10), ctx.dim(7, 3, 10),
        ctx.dim(2, 1, 4), 5, 1, 1, 1, True)


def bn_case(ctx, shape, training, momentum, eps, offset=0.0):
    c = shape[1]
    x = ctx.randn(*shape)
    if offset:
        x = x + offset  # exact in f32 well enough: stored x is the reference input
    inputs = [
        ("x", x),
        ("weight", ctx.randn(c)),
        ("bias", ctx.randn(c)),
        ("running_mean", ctx.randn(c)),
        ("running_var", ctx.rand(c) * 1.5 + 0.25),  # random, positive
    ]
    attrs = {"training": training, "momentum": momentum, "eps": eps}
    fwd = lambda t: F.batch_norm(t["x"], t["running_mean"], t["running_var"], t["weight"],
                                 t["bias"], training=training, momentum=momentum, eps=eps)
    tensors, t64 = run(ctx, inputs, {"x", "weight", "bias"}, fwd)
    if training:
        tensors.append(("running_mean_out", t64["running_mean"].float()))
        tensors.append(("running_var_out", t64["running_var"].float()))
    return attrs, tensors


def batch_norm_cases():
    yield "train", lambda ctx: bn_case(
        ctx, [ctx.dim(2, 1, 3), ctx.dim(6, 1, 8), ctx.dim(7, 2, 9), ctx.dim(5, 2, 9)],
        True, 0.1, 1e-5)
    # Paper's decay 0.9997 (momentum 0.0003) on x = 100 + randn: large mean,
    # unit variance, tests numerically stable mean/variance sums.
    yield "train_m0003_off100", lambda ctx: bn_case(
        ctx, [ctx.dim(2, 1, 3), ctx.dim(6, 1, 8), ctx.dim(7, 2, 9), ctx.dim(5, 2, 9)],
        True, 0.0003, 1e-5, offset=100.0)
    # ASPP image-pool branch: 1x1 maps, statistics over the batch only. Batch >= 3: with two
    # values per channel the input gradient is ~eps/var times its terms, so f32 cancellation
    # alone (PyTorch's own f32 included) gives ~1e-3 relative error.
    yield "train_1x1", lambda ctx: bn_case(
        ctx, [ctx.dim(4, 3, 6), ctx.dim(8, 2, 10), 1, 1], True, 0.1, 1e-5)
    # training=false: "frozen" BN (running stats), gradients still flow.
    yield "eval", lambda ctx: bn_case(
        ctx, [ctx.dim(2, 1, 3), ctx.dim(6, 1, 8), ctx.dim(7, 1, 9), ctx.dim(5, 1, 9)],
        False, 0.1, 1e-5)
    yield "eval_eps1e3", lambda ctx: bn_case(
        ctx, [ctx.dim(3, 1, 4), ctx.dim(4, 1, 8), ctx.dim(5, 1, 9), ctx.dim(6, 1, 9)],
        False, 0.1, 1e-3)


def simple_case(ctx, shapes, fwd, attrs):
    inputs = [(name, ctx.randn(*shape)) for name, shape in shapes]
    tensors, _ = run(ctx, inputs, {name for name, _ in shapes}, fwd)
    return attrs, tensors


def adaptive_avg_pool2d_cases():
    fwd = lambda t: F.adaptive_avg_pool2d(t["x"], 1)
    for name, shape in (
        ("odd", lambda c: [c.dim(2, 1, 3), c.dim(5, 1, 8), c.dim(13, 3, 15), c.dim(11, 3, 15)]),
        ("1x1", lambda c: [c.dim(1, 1, 3), c.dim(3, 1, 8), 1, 1]),
        ("large", lambda c: [c.dim(2, 1, 2), c.dim(4, 1, 6), c.dim(33, 25, 40), c.dim(33, 25, 40)]),
    ):
        yield name, (lambda ctx, shape=shape: simple_case(
            ctx, [("x", shape(ctx))], fwd, {"output_size": 1}))


def interp_shapes(ctx, kind):
    """(input shape, output size) for each interpolate case kind."""
    if kind == "x2":
        n, c, h, w = ctx.dim(2, 1, 3), ctx.dim(3, 1, 4), ctx.dim(5, 2, 7), ctx.dim(4, 2, 7)
        return [n, c, h, w], [2 * h, 2 * w]
    if kind == "x4":
        n, c, h, w = ctx.dim(2, 1, 3), ctx.dim(3, 1, 4), ctx.dim(5, 2, 6), ctx.dim(5, 2, 6)
        return [n, c, h, w], [4 * h, 4 * w]
    if kind == "x8":
        n, c, h, w = 1, ctx.dim(3, 1, 3), ctx.dim(5, 2, 6), ctx.dim(5, 2, 6)
        return [n, c, h, w], [8 * h, 8 * w]
    if kind == "x16":
        n, c, h, w = 1, ctx.dim(2, 1, 2), ctx.dim(3, 2, 4), ctx.dim(4, 2, 4)
        return [n, c, h, w], [16 * h, 16 * w]
    if kind == "nonint":
        n, c, h, w = ctx.dim(2, 1, 3), ctx.dim(3, 1, 4), ctx.dim(7, 3, 8), ctx.dim(5, 3, 8)
        def up(v, default):  # v < out < 3v, not a multiple of v
            if not ctx.random_shapes:
                return default
            return ctx.rng.choice([o for o in range(v + 1, 3 * v) if o % v != 0])
        return [n, c, h, w], [up(h, 17), up(w, 13)]
    if kind == "down":
        n, c, h, w = ctx.dim(2, 1, 3), ctx.dim(3, 1, 4), ctx.dim(17, 8, 18), ctx.dim(13, 8, 18)
        oh = ctx.dim(7, 2, h - 1)
        ow = ctx.dim(5, 2, w - 1)
        return [n, c, h, w], [oh, ow]
    if kind == "n1k":  # (n-1)*k+1: align_corners=True grid lands exactly on pixels
        h, k = ctx.dim(9, 3, 9), ctx.dim(2, 2, 4)
        w = h if not ctx.random_shapes else ctx.dim(9, 3, 9)
        return [1, ctx.dim(2, 1, 3), h, w], [(h - 1) * k + 1, (w - 1) * k + 1]
    if kind == "from1x1":  # ASPP image-pool upsample
        return [ctx.dim(1, 1, 2), ctx.dim(2, 1, 4), 1, 1], [ctx.dim(5, 2, 9), ctx.dim(6, 2, 9)]
    raise ValueError(kind)


def interpolate_cases():
    for kind in ("x2", "x4", "x8", "x16", "nonint", "down", "n1k", "from1x1"):
        for ac in (False, True):
            def f(ctx, kind=kind, ac=ac):
                shape, size = interp_shapes(ctx, kind)
                fwd = lambda t: F.interpolate(t["x"], size=size, mode="bilinear", align_corners=ac)
                return simple_case(ctx, [("x", shape)], fwd,
                                   {"size": size, "mode": "bilinear", "align_corners": ac})
            yield f"{kind}_ac{int(ac)}", f


def relu_cases():
    yield "basic", lambda ctx: simple_case(
        ctx, [("x", [ctx.dim(2, 1, 3), ctx.dim(3, 1, 5), ctx.dim(7, 1, 9), ctx.dim(5, 1, 9)])],
        lambda t: F.relu(t["x"]), {})


def max_pool2d_cases():
    attrs = {"kernel_size": 3, "stride": 2, "padding": 1}
    fwd = lambda t: F.max_pool2d(t["x"], 3, stride=2, padding=1)
    for name, shape in (
        ("odd", lambda c: [c.dim(2, 1, 3), c.dim(3, 1, 4), c.dim(13, 5, 15, "odd"), c.dim(11, 5, 15, "odd")]),
        ("even", lambda c: [c.dim(2, 1, 3), c.dim(3, 1, 4), c.dim(8, 4, 14, "even"), c.dim(8, 4, 14, "even")]),
        ("tiny", lambda c: [c.dim(1, 1, 2), c.dim(2, 1, 3), c.dim(2, 1, 3), c.dim(3, 1, 3)]),
    ):
        # randn: continuous values, so no ties inside a window.
        yield name, (lambda ctx, shape=shape: simple_case(ctx, [("x", shape(ctx))], fwd, attrs))


def add_cases():
    def f(ctx):
        shape = [ctx.dim(2, 1, 3), ctx.dim(3, 1, 5), ctx.dim(7, 1, 9), ctx.dim(5, 1, 9)]
        return simple_case(ctx, [("a", shape), ("b", shape)], lambda t: t["a"] + t["b"], {})
    yield "basic", f


def cat_cases():
    def three(ctx):
        n, h, w = ctx.dim(2, 1, 3), ctx.dim(5, 1, 7), ctx.dim(4, 1, 7)
        cs = [ctx.dim(3, 1, 6), ctx.dim(5, 1, 6), ctx.dim(1, 1, 6)]
        shapes = [(f"x{i}", [n, c, h, w]) for i, c in enumerate(cs)]
        return simple_case(ctx, shapes, lambda t: torch.cat([t["x0"], t["x1"], t["x2"]], dim=1),
                           {"dim": 1})

    def two(ctx):
        shape = [ctx.dim(1, 1, 2), ctx.dim(4, 1, 6), ctx.dim(3, 1, 5), ctx.dim(3, 1, 5)]
        return simple_case(ctx, [("x0", shape), ("x1", shape)],
                           lambda t: torch.cat([t["x0"], t["x1"]], dim=1), {"dim": 1})
    yield "three", three
    yield "two", two


def ce_case(ctx, shape, ignore_frac, all_ignored=False):
    n, c, h, w = shape
    x = ctx.randn(n, c, h, w)
    target = ctx.randint(0, c, (n, h, w))
    if all_ignored:
        target = torch.full((n, h, w), 255, dtype=torch.int64)
    elif ignore_frac > 0:
        mask = ctx.rand(n, h, w) < ignore_frac
        mask.view(-1)[0] = True    # at least one ignored pixel
        mask.view(-1)[-1] = False  # at least one counted pixel
        target = torch.where(mask, torch.full_like(target, 255), target)
    attrs = {"ignore_index": 255, "reduction": "mean"}
    inputs = [("x", x), ("target", target)]
    if all_ignored:
        # PyTorch returns NaN (0/0) when every pixel is ignored; atrous defines
        # the loss as 0 and the gradient as 0 instead, so store that.
        return attrs, inputs + [("out", torch.zeros(())), ("grad_x", torch.zeros_like(x))]
    fwd = lambda t: F.cross_entropy(t["x"], t["target"], ignore_index=255, reduction="mean")
    tensors, _ = run(ctx, inputs, {"x"}, fwd, with_dy=False)
    return attrs, tensors


def cross_entropy_cases():
    def shp(c, n=2, C=5, h=7, w=6):
        return [c.dim(n, 1, 3), c.dim(C, 2, 8), c.dim(h, 1, 9), c.dim(w, 1, 9)]
    yield "mixed", lambda ctx: ce_case(ctx, shp(ctx), 0.2)
    yield "noignore", lambda ctx: ce_case(ctx, shp(ctx), 0.0)
    yield "allignored", lambda ctx: ce_case(ctx, shp(ctx), 0.0, all_ignored=True)
    yield "c21", lambda ctx: ce_case(
        ctx, [ctx.dim(1, 1, 2), 21, ctx.dim(9, 3, 11), ctx.dim(8, 3, 11)], 0.1)


OPS = [
    ("conv2d", conv2d_cases),
    ("batch_norm", batch_norm_cases),
    ("adaptive_avg_pool2d", adaptive_avg_pool2d_cases),
    ("interpolate", interpolate_cases),
    ("relu", relu_cases),
    ("max_pool2d", max_pool2d_cases),
    ("add", add_cases),
    ("cat", cat_cases),
    ("cross_entropy", cross_entropy_cases),
]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="test/fixtures", help="output folder (default test/fixtures)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--random-shapes", action="store_true",
                   help="perturb every case's shapes randomly (keeping each case's constraints)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # reproducible reductions
    os.makedirs(args.out, exist_ok=True)
    total = 0
    count = 0
    for op, cases in OPS:
        for case, fn in cases():
            name = f"{op}__{case}"
            ctx = Ctx(args.seed, name, args.random_shapes)
            attrs, tensors = fn(ctx)
            path = os.path.join(args.out, name + ".safetensors")
            size = write_safetensors(path, tensors,
                                     {"op": op, "attrs": json.dumps(attrs, separators=(",", ":"))})
            total += size
            count += 1
            desc = ", ".join(f"{n}{list(t.shape)}" for n, t in tensors if not n.startswith("grad_"))
            print(f"{path}  {size} B  {desc}")
    print(f"{count} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
