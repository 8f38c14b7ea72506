// conv2d kernel benchmarks: forward, backward-data and backward-weight, each timed on its own
// (common.ts: GPU timestamps where the adapter has them, one warm-up, median of repeats).
//
// Useful work: a multiply-add counts only when its tap reads inside the input (not padding):
//   flops = 2 · n · cout · cin · Σ_{output positions} (taps inside the map)
// which is separable: (Σ over ky of the output rows whose row tap is inside) × (the same for
// columns). Backward-data and backward-weight do the same multiply-adds, so they count the same.
// `gflops_dense` counts every tap (2 · n · cout · oh · ow · cin · kh · kw) for comparison; at a
// large rate the difference is the work that tap pruning avoids.
// `atrous bench` (run.ts) and bench/conv2d.ts run it from the command line.
// No Node built-ins: the browser demo's Bench panel runs benchConv2d too.

import { tensor, noGrad, type Tensor } from '../index.js';
import { conv2dGeometry, conv2dForward, conv2dBackwardData, conv2dBackwardWeight, conv2dVariants } from '../ops/conv2d/index.js';
import { timeInterleaved, values, type BenchRow } from './common.js';

export type Conv2dPass = 'forward' | 'backward-data' | 'backward-weight';
export const CONV_PASSES: Conv2dPass[] = ['forward', 'backward-data', 'backward-weight'];

/** One convolution: x [n, cin, h, w] (square), weight [cout, cin, k, k]. */
export interface ConvShape {
  /** 'aspp' (the paper's atrous branch shape) or 'backbone' (a ResNet-50 layer at 129×129). */
  group: 'aspp' | 'backbone';
  n: number;
  cin: number;
  cout: number;
  h: number;
  k: number;
  stride: number;
  dilation: number;
  padding: number;
}

/** Σ over taps t of the outputs o in [0, out) whose input o·s − p + t·d lies in [0, size). */
export function validTapPositions(k: number, stride: number, pad: number, dil: number, size: number, out: number): number {
  let total = 0;
  for (let t = 0; t < k; t++) {
    const first = Math.max(0, Math.ceil((pad - t * dil) / stride));
    const last = Math.min(out - 1, Math.floor((size - 1 + pad - t * dil) / stride));
    if (first <= last) total += last - first + 1;
  }
  return total;
}

export function convOutSize(s: ConvShape): number {
  return Math.floor((s.h + 2 * s.padding - s.dilation * (s.k - 1) - 1) / s.stride) + 1;
}

/** Useful and dense FLOPs of one pass of the convolution (see the file header). */
export function convFlops(s: ConvShape): { useful: number; dense: number } {
  const o = convOutSize(s);
  const v = validTapPositions(s.k, s.stride, s.padding, s.dilation, s.h, o);
  return { useful: 2 * s.n * s.cout * s.cin * v * v, dense: 2 * s.n * s.cout * s.cin * o * o * s.k * s.k };
}

/** Minimum bytes a pass must move: its inputs read once and its output written once. */
function convBytes(s: ConvShape): number {
  const o = convOutSize(s);
  const x = s.n * s.cin * s.h * s.h;
  const y = s.n * s.cout * o * o;
  const w = s.cout * s.cin * s.k * s.k;
  return 4 * (x + y + w);
}

/** The ASPP shapes of the issue: batch 2, 256 → 256, 65×65 and 33×33, 3×3, padding = rate. */
export function asppShapes(opts: { n?: number; c?: number; sizes?: number[]; rates?: number[] } = {}): ConvShape[] {
  const out: ConvShape[] = [];
  for (const h of opts.sizes ?? [65, 33]) {
    for (const d of opts.rates ?? [1, 6, 12, 18, 24, 36]) {
      out.push({ group: 'aspp', n: opts.n ?? 2, cin: opts.c ?? 256, cout: opts.c ?? 256, h, k: 3, stride: 1, dilation: d, padding: d });
    }
  }
  return out;
}

/** ResNet-50 backbone convolutions of paper-r50-os16 at a 129×129 input, batch 2: 1×1 and 3×3
 * at strides 1 and 2 (layer1 at 33×33, layer2's strided unit, layer3 at 9×9). `scale` divides the
 * channel counts (tiny runs). */
export function backboneShapes(n = 2, scale = 1): ConvShape[] {
  const c = (v: number) => Math.max(1, Math.round(v / scale));
  const sh = (cin: number, cout: number, h: number, k: number, stride: number): ConvShape => ({
    group: 'backbone', n, cin: c(cin), cout: c(cout), h, k, stride, dilation: 1, padding: (k - 1) >> 1,
  });
  return [
    sh(64, 256, 33, 1, 1), // layer1 conv3
    sh(64, 64, 33, 3, 1), // layer1 conv2
    sh(256, 512, 33, 1, 2), // layer2.0 downsample
    sh(128, 128, 33, 3, 2), // layer2.0 conv2
    sh(1024, 256, 9, 1, 1), // layer3 conv1
    sh(256, 256, 9, 3, 1), // layer3 conv2
  ];
}

export function shapeFields(s: ConvShape): Record<string, number | string> {
  return { group: s.group, n: s.n, cin: s.cin, cout: s.cout, h: s.h, w: s.h, k: s.k, stride: s.stride, dilation: s.dilation, padding: s.padding };
}

/** Times every pass of every shape on the current engine, interleaved (common.ts): the passes of
 * all the shapes round-robin, so that dx / forward and rate 18 / rate 1 are ratios of times
 * measured side by side. All the shapes' tensors are alive together (the ASPP set: ~0.3 GB). */
export async function benchConv2d(shapes: ConvShape[], opts: { repeats: number; adapter: string; passes?: Conv2dPass[]; onRow?: (r: BenchRow) => void }): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const passes = opts.passes ?? CONV_PASSES;
  const owned: Tensor[] = [];
  try {
    const cases = shapes.map((s) => {
      const x = tensor(values(s.n * s.cin * s.h * s.h, 1), [s.n, s.cin, s.h, s.h]);
      const w = tensor(values(s.cout * s.cin * s.k * s.k, 2, 0.1), [s.cout, s.cin, s.k, s.k]);
      const g = conv2dGeometry(x, w, null, { stride: s.stride, padding: s.padding, dilation: s.dilation });
      const dy = tensor(values(s.n * s.cout * g.oh * g.ow, 3), [s.n, s.cout, g.oh, g.ow]);
      owned.push(x, w, dy);
      // The variant in use when the pass runs (the loop below forces each in turn).
      const variant = () => conv2dVariants.choose().variant;
      const run = (pass: Conv2dPass): (() => Tensor) =>
        pass === 'forward'
          ? () => noGrad(() => conv2dForward(x, w, null, g, variant()))
          : pass === 'backward-data'
            ? () => noGrad(() => conv2dBackwardData(dy, w, g, variant()))
            : () => noGrad(() => conv2dBackwardWeight(x, dy, g, variant()));
      return passes.map((pass) => ({ s, pass, record: run(pass) }));
    });
    const flat = cases.flat();
    const times = await timeInterleaved(flat.map((c) => c.record), opts.repeats);
    flat.forEach(({ s, pass }, i) => {
      const t = times[i];
      const flops = convFlops(s);
      const row: BenchRow = {
        kernel: 'conv2d', pass, impl: 'atrous', ...shapeFields(s),
        ms: t.ms, gflops: flops.useful / (t.ms * 1e6), gflops_dense: flops.dense / (t.ms * 1e6),
        gbs: convBytes(s) / (t.ms * 1e6), useful_fraction: flops.useful / flops.dense,
        adapter: opts.adapter, timing: t.timing,
        ...(pass === 'forward' ? { variant: conv2dVariants.choose().variant } : {}),
      };
      rows.push(row);
      opts.onRow?.(row);
    });
  } finally {
    for (const t of owned) t.dispose();
  }
  return rows;
}
