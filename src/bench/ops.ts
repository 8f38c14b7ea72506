// Benchmarks of the other kernels: matmul (the device's practical arithmetic ceiling), batch norm
// (training mode) and bilinear resize, forward and backward. Timed like the convolutions
// (common.ts). Backward rows time only the op's backward rule (its node's kernels), on a
// graph recorded once: the forward is not included.
//
// Useful work (GFLOP/s) and minimum traffic (GB/s), per element of x (batch norm) or of the
// resized output (resize):
//   batch norm forward: statistics 3 flops (sum, square, add), normalise + affine 4 → 7 flops;
//     reads x twice (statistics, normalise), writes y: 12 bytes.
//   batch norm backward: Σdy and Σdy·x̂ 5 flops, dx 6 → 11 flops; reads dy and x twice, writes
//     dx: 20 bytes.
//   bilinear resize: 4 taps, 3 lerps of 2 flops = 6 flops per output value, forward and backward
//     (the backward gathers the same products); bytes: the input read and the output written once.
//   matmul m·n·k: 2·m·n·k flops; bytes: a, b read and c written once.

import { tensor, parameter, tidy, keep, matmul, batchNorm, interpolate, type Tensor } from '../index.js';
import { timeKernels, values, type BenchRow } from './common.js';

interface Emit {
  repeats: number;
  adapter: string;
  onRow?: (r: BenchRow) => void;
}

function push(rows: BenchRow[], opts: Emit, row: BenchRow): void {
  rows.push(row);
  opts.onRow?.(row);
}

export async function benchMatmul(size: number, opts: Emit): Promise<BenchRow[]> {
  const [a, b] = tidy(() => [keep(tensor(values(size * size, 11), [size, size])), keep(tensor(values(size * size, 12), [size, size]))]);
  try {
    const t = await timeKernels(() => matmul(a, b), opts.repeats);
    const rows: BenchRow[] = [];
    push(rows, opts, {
      kernel: 'matmul', pass: 'forward', impl: 'atrous', m: size, n: size, k: size,
      ms: t.ms, gflops: (2 * size ** 3) / (t.ms * 1e6), gbs: (3 * 4 * size * size) / (t.ms * 1e6), adapter: opts.adapter, timing: t.timing,
    });
    return rows;
  } finally {
    a.dispose();
    b.dispose();
  }
}

/** The gradient rule of `y`'s node, run on `dy`: the backward kernels of one op. */
function nodeBackward(y: Tensor, dy: Tensor): (Tensor | null)[] {
  if (!y.node) throw new Error('bench: the output has no gradient node');
  return y.node.backward(dy);
}

/** Training-mode batch norm on x [n, c, h, w] (running statistics updated, as in the network). */
export async function benchBatchNorm(shape: [number, number, number, number], opts: Emit): Promise<BenchRow[]> {
  const [n, c, h, w] = shape;
  const size = n * c * h * w;
  const x = tensor(values(size, 21), shape);
  x.requiresGrad = true;
  const weight = parameter(values(c, 22).map((v) => 1 + v), [c]);
  const bias = parameter(values(c, 23), [c]);
  const rm = tensor(new Float32Array(c), [c]);
  const rv = tensor(new Float32Array(c).fill(1), [c]);
  const dy = tensor(values(size, 24), shape);
  const fields = { n, cin: c, cout: c, h, w };
  const rows: BenchRow[] = [];
  let y: Tensor | null = null;
  try {
    const fwd = await timeKernels(() => batchNorm(x, weight, bias, rm, rv, { training: true, momentum: 0.1 }), opts.repeats);
    push(rows, opts, {
      kernel: 'batch_norm', pass: 'forward', impl: 'atrous', ...fields,
      ms: fwd.ms, gflops: (7 * size) / (fwd.ms * 1e6), gbs: (12 * size) / (fwd.ms * 1e6), adapter: opts.adapter, timing: fwd.timing,
    });
    y = batchNorm(x, weight, bias, rm, rv, { training: true, momentum: 0.1 });
    const yy = y;
    const bwd = await timeKernels(() => nodeBackward(yy, dy), opts.repeats);
    push(rows, opts, {
      kernel: 'batch_norm', pass: 'backward', impl: 'atrous', ...fields,
      ms: bwd.ms, gflops: (11 * size) / (bwd.ms * 1e6), gbs: (20 * size) / (bwd.ms * 1e6), adapter: opts.adapter, timing: bwd.timing,
    });
  } finally {
    y?.dispose();
    for (const t of [x, weight, bias, rm, rv, dy]) t.dispose();
  }
  return rows;
}

/** Bilinear resize (align_corners false) of x [n, c, h, w] by an integer factor, forward and backward. */
export async function benchResize(shape: [number, number, number, number], factor: number, opts: Emit): Promise<BenchRow[]> {
  const [n, c, h, w] = shape;
  const oh = h * factor;
  const ow = w * factor;
  const x = tensor(values(n * c * h * w, 31), shape);
  x.requiresGrad = true;
  const dy = tensor(values(n * c * oh * ow, 32), [n, c, oh, ow]);
  const outs = n * c * oh * ow;
  const bytes = 4 * (n * c * h * w + outs);
  const fields = { n, cin: c, cout: c, h, w, oh, ow, scale: factor };
  const rows: BenchRow[] = [];
  let y: Tensor | null = null;
  try {
    const fwd = await timeKernels(() => interpolate(x, { size: [oh, ow] }), opts.repeats);
    push(rows, opts, {
      kernel: 'resize', pass: 'forward', impl: 'atrous', ...fields,
      ms: fwd.ms, gflops: (6 * outs) / (fwd.ms * 1e6), gbs: bytes / (fwd.ms * 1e6), adapter: opts.adapter, timing: fwd.timing,
    });
    y = interpolate(x, { size: [oh, ow] });
    const yy = y;
    const bwd = await timeKernels(() => nodeBackward(yy, dy), opts.repeats);
    push(rows, opts, {
      kernel: 'resize', pass: 'backward', impl: 'atrous', ...fields,
      ms: bwd.ms, gflops: (6 * outs) / (bwd.ms * 1e6), gbs: bytes / (bwd.ms * 1e6), adapter: opts.adapter, timing: bwd.timing,
    });
  } finally {
    y?.dispose();
    x.dispose();
    dy.dispose();
  }
  return rows;
}
