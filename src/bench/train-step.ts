// One DeepLabv3 training step: forward, cross entropy (ignore 255), backward, SGD update (momentum
// 0.9, weight decay 1e-4), as src/train/trainer.ts runs it, on a fixed random batch that stays on
// the GPU. Wall clock from the first recorded kernel to the end of the GPU's work (each step is
// submitted and waited for). As in the trainer, every pipeline is compiled asynchronously before the
// first step (src/train/precompile.ts; `precompile_ms`, `pipelines_precompiled`, and
// `first_step_pipelines_created`, which is 0 when the trace found them all). Then three warm-up steps
// (the pool filled; the first one's time is `first_step_ms`) and the median of `repeats` steps.
//
// Reported beside the time, from the engine's statistics over the timed steps:
//   peak_bytes           the most tensor memory alive at once (the pool's live bytes, parameters,
//                        momentum buffers, activations and gradients included)
//   peak_breakdown       those bytes by category at the moment of the peak: parameters (and
//                        batch-norm running statistics), gradients, optimizer (momentum), saved
//                        (activations held for backward), activations (other forward tensors
//                        alive: the batch, unsaved intermediates, logits), gradients_in_flight,
//                        scratch (temporaries inside one op: packed weights, channels-last
//                        copies, partial sums), each in requested bytes, and rounding (the pool
//                        rounds a block up to 256 bytes, or hands out a free block whole when
//                        less than 1 MiB would be left; peak_bytes counts block bytes, so the
//                        categories plus rounding sum to peak_bytes)
//   pool_bytes           GPU memory the pool's segments hold after the steps
//   pool_peak_bytes      the most the segments held during the timed steps (peak_bytes plus the
//                        free space between blocks: what the driver is asked for)
//   submits_per_step, dispatches_per_step, bind_groups_per_step,
//   buffers_created_per_step (pool churn: 0 in a steady loop), pipelines_created (after warm-up)
// Useful work: 3 × the forward's convolution FLOPs (forward, backward-data, backward-weight; the
// same count as PyTorch's 44 GFLOP for paper-r50-os16 at 129×129, batch 2: docs/software-gpu.md).

import { engine, tensor, tidy, keep, backward, crossEntropy, SGD, DeepLabV3, modelConfig, MEMORY_CATEGORIES } from '../index.js';
import { precompileTrainStep } from '../train/precompile.js';
import { median, values, type BenchRow } from './common.js';

export interface TrainStepCase {
  config: string;
  n: number;
  size: number;
}

/** Random labels in [0, classes) with a few 255s (ignored), deterministic. */
function labels(count: number, classes: number): Int32Array {
  const v = values(count, 41);
  return Int32Array.from(v, (x, i) => (i % 97 === 0 ? 255 : Math.min(classes - 1, Math.floor((x + 0.5) * classes))));
}

export function trainStepFlops(c: TrainStepCase): number {
  const model = new DeepLabV3(modelConfig(c.config));
  return 3 * model.trace([c.n, 3, c.size, c.size]).flops;
}

/** The benchmark's training step: `config` built and initialised from seed 0, SGD (lr 0.001,
 * momentum 0.9, weight decay 1e-4) and a fixed random batch x [n, 3, size, size] with labels
 * [n, size, size] (a few 255s). step() records one forward, loss, backward and update. */
export interface TrainStepFixture {
  model: DeepLabV3;
  opt: SGD;
  step: () => void;
  dispose: () => void;
}

export function trainStepFixture(c: TrainStepCase): TrainStepFixture {
  const cfg = modelConfig(c.config);
  const model = new DeepLabV3(cfg);
  model.materialize(0);
  model.setDropoutSeed(0);
  model.train();
  const opt = new SGD(model.trainableParameters(), { lr: 0.001, momentum: 0.9, weightDecay: 1e-4 });
  const [x, y] = tidy(() => [
    keep(tensor(values(c.n * 3 * c.size * c.size, 40, 2), [c.n, 3, c.size, c.size])),
    keep(tensor(labels(c.n * c.size * c.size, cfg.numClasses), [c.n, c.size, c.size], 'i32')),
  ]);
  const step = () =>
    tidy(() => {
      const logits = model.forward(x);
      const loss = crossEntropy(logits, y, { ignoreIndex: 255 });
      // As the trainer's step (src/train/step.ts): the logits freed once the loss's backward has
      // run (the batch stays: it is reused by every step).
      logits.freeStorage();
      backward(loss);
      opt.step();
      opt.zeroGrad();
    });
  const dispose = () => {
    x.dispose();
    y.dispose();
    opt.dispose();
    model.dispose();
  };
  return { model, opt, step, dispose };
}

export async function benchTrainStep(c: TrainStepCase, opts: { repeats: number; adapter: string }): Promise<BenchRow> {
  const e = engine();
  const flops = trainStepFlops(c);
  // The pool's segments are this configuration's own (pool_peak_bytes): none cached from before.
  await e.sync();
  e.pool.trim();
  const { model, opt, step, dispose } = trainStepFixture(c);
  try {
    await e.sync();
    let t0 = performance.now();
    const compiled = await precompileTrainStep(model, opt, c.n, c.size, c.size);
    const precompileMs = performance.now() - t0;
    const pipelines0 = e.stats().pipelines;
    t0 = performance.now();
    step();
    await e.sync();
    const firstMs = performance.now() - t0;
    const firstStepPipelines = e.stats().pipelines - pipelines0;
    // The second and third steps still fill the pool (blocks freed late in a step are reused in a
    // new order; measured: paper-r50-os16 at 2 × 513² makes its last segment in step 3); from
    // the fourth on, a step creates no segment and no bind group.
    step();
    step();
    await e.sync();
    const before = e.stats();
    e.pool.resetPeak();
    const times: number[] = [];
    const repeats = Math.max(1, opts.repeats);
    for (let r = 0; r < repeats; r++) {
      t0 = performance.now();
      step();
      await e.sync();
      times.push(performance.now() - t0);
    }
    const after = e.stats();
    const peak = e.pool.peakBreakdown();
    const breakdown: Record<string, number> = {};
    for (const k of MEMORY_CATEGORIES) breakdown[k] = peak.categories[k] ?? 0;
    for (const [k, v] of Object.entries(peak.categories)) if (!(k in breakdown)) breakdown[k] = v;
    breakdown.rounding = peak.rounding;
    const ms = median(times);
    const per = (k: 'submits' | 'dispatches' | 'bindGroups' | 'created') => (after[k] - before[k]) / repeats;
    return {
      kernel: 'train-step', pass: 'step', impl: 'atrous', config: c.config, n: c.n, h: c.size, w: c.size,
      ms, gflops: flops / (ms * 1e6), step_gflop: flops / 1e9,
      precompile_ms: precompileMs, pipelines_precompiled: compiled, first_step_ms: firstMs, first_step_pipelines_created: firstStepPipelines,
      peak_bytes: after.peakLiveBytes, peak_breakdown: breakdown, pool_bytes: after.allocatedBytes, pool_peak_bytes: after.peakAllocatedBytes,
      submits_per_step: per('submits'), dispatches_per_step: per('dispatches'), bind_groups_per_step: per('bindGroups'),
      buffers_created_per_step: per('created'), pipelines_created: after.pipelines - before.pipelines,
      adapter: opts.adapter, timing: 'wall-clock',
    };
  } finally {
    dispose();
    await e.sync();
  }
}
