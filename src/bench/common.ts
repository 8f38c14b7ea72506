// Shared pieces of the benchmarks: the row format, deterministic data, and the timers.
//
// Timing: GPU timestamps around one compute pass where the adapter has 'timestamp-query'
// (Engine.timeGpu), else wall clock around the recorded work and a wait for the queue. One
// warm-up run first (pipelines compiled, pool buffers created), then the median of `repeats`.
// timeInterleaved times several workloads round-robin (repeat 1 of each, then repeat 2, ...), so
// that ratios between them are measured side by side: a slow spell of the machine (lavapipe's
// timings here move by up to 2× within a minute) lands on all of them rather than on one.

import { engine, type Tensor } from '../index.js';

/** One benchmark result. Shape fields (`n`, `cin`, `cout`, `h`, `w`, `k`, `stride`, `dilation`,
 * `config`, ...) are those that apply to the kernel. `gflops` counts useful work only (see each
 * benchmark's header for what that is). */
export interface BenchRow {
  kernel: 'conv2d' | 'batch_norm' | 'resize' | 'matmul' | 'train-step';
  pass: 'forward' | 'backward-data' | 'backward-weight' | 'backward' | 'step';
  impl: 'atrous' | 'tfjs' | 'torch';
  /** Median milliseconds (null when the implementation cannot run this row; see `note`). */
  ms: number | null;
  gflops: number | null;
  adapter: string;
  /** 'gpu-timestamps', 'wall-clock' or 'cpu' (PyTorch). */
  timing?: string;
  note?: string;
  [field: string]: unknown;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Deterministic values in [-0.5, 0.5) (an LCG: the benchmark needs data, not statistics). */
export function values(count: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 4294967296 - 0.5) * scale;
  }
  return out;
}

type Outputs = Tensor | (Tensor | null)[] | void;

function disposeAll(out: Outputs): void {
  if (!out) return;
  for (const t of Array.isArray(out) ? out : [out]) t?.dispose();
}

export interface Timing {
  ms: number;
  timing: 'gpu-timestamps' | 'wall-clock';
}

/** Times `record`, which must only record kernels (no uploads, copies or reads), and disposes
 * what it returns. Median over `repeats` after one warm-up run. */
export async function timeKernels(record: () => Outputs, repeats: number): Promise<Timing> {
  return (await timeInterleaved([record], repeats))[0];
}

/** Times each of `records` like timeKernels, round-robin: one warm-up run of each, then repeat r
 * of every one before repeat r + 1 of any. */
export async function timeInterleaved(records: (() => Outputs)[], repeats: number): Promise<Timing[]> {
  const e = engine();
  for (const record of records) disposeAll(record()); // warm-up: pipelines compiled, pool buffers created
  await e.sync();
  const times: number[][] = records.map(() => []);
  let gpu = true;
  for (let r = 0; r < Math.max(1, repeats); r++) {
    for (let i = 0; i < records.length; i++) {
      let out: Outputs = undefined;
      const t = await e.timeGpu(() => {
        out = records[i]();
      });
      disposeAll(out);
      if (t !== null) times[i].push(t);
      else {
        gpu = false;
        await e.sync();
        const t0 = performance.now();
        const o = records[i]();
        await e.sync();
        times[i].push(performance.now() - t0);
        disposeAll(o);
      }
    }
  }
  await e.sync();
  return times.map((ts) => ({ ms: median(ts), timing: gpu ? 'gpu-timestamps' : 'wall-clock' }));
}
