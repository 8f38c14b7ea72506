#!/usr/bin/env python3
"""Times one DeepLabv3 training step in PyTorch (CPU): the reference of `atrous bench --compare torch`.

The network is the PyTorch twin of the atrous configuration (tools/atrous_torch.py, from
torchvision's Bottleneck, ASPP and FCNHead; src/nn/configs.ts, given as JSON): the same layers,
output stride, Multi-Grid rates, ASPP rates and options, head and dropout rates, so the two time
the same network. The step is the one atrous's benchmark times: forward, bilinear upsampling
to the input (inside DeepLabV3.forward), cross entropy ignoring 255, backward, SGD (momentum 0.9,
weight decay 1e-4). One warm-up step, then the median of --repeats steps, wall clock.

    /usr/bin/python3 tools/torch_step.py --config '{"blocks": [3, 4, 6, 3], ...}' --n 2 --size 129

Prints one JSON object: ms (median), first_step_ms, torch version, threads, parameters, peak_bytes
(the step's peak tensor bytes, see peak_bytes()).
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import atrous_torch as at  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, help="an atrous model configuration as JSON")
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--size", type=int, default=129)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: the CPU count)")
    args = ap.parse_args()
    cfg = json.loads(args.config)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    torch.manual_seed(0)
    model = at.build_model(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.n, 3, args.size, args.size)
    y = torch.randint(0, cfg["numClasses"], (args.n, args.size, args.size))

    def step():
        out = model(x)
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
        "peak_bytes": peak_bytes(model, opt, x, y, step),
    }))


def peak_bytes(model, opt, x, y, step):
    """Peak tensor bytes of one step: what is alive before it (parameters, gradients, momentum
    buffers, the batch) plus the highest running sum of the step's allocations minus frees, from
    torch.profiler's memory events (profile_memory=True; CPU PyTorch keeps no allocator peak)."""
    tensors = {id(t): t for t in [*model.parameters(), *model.buffers(), x, y]}
    for p in model.parameters():
        if p.grad is not None:
            tensors[id(p.grad)] = p.grad
    for st in opt.state.values():
        for v in st.values():
            if torch.is_tensor(v):
                tensors[id(v)] = v
    base = sum(t.numel() * t.element_size() for t in tensors.values())
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    # Every allocation (+bytes) and free (-bytes) of the step, in time order.
    events = [(e.start_us(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda t: t[0])
    run = peak = 0
    for _, b in events:
        run += b
        peak = max(peak, run)
    return base + peak


if __name__ == "__main__":
    main()
