// Inference with the paper's strategy (§4.2): the image at several scales and left-right flipped,
// class probabilities averaged at the input resolution. Scaling runs on the GPU (bilinear,
// align_corners false, as torchvision); flipping and the softmax average run on the CPU, where
// the logits arrive anyway. No Node built-ins: the browser demo uses this too.

import { tensor, empty, fmtShape, type Tensor } from '../tensor.js';
import { engine } from '../gpu/engine.js';
import { allocationSize } from '../gpu/pool.js';
import { ShapeTracer, type Shape, type ConvArgs } from '../nn/module.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import { interpolate } from '../ops/resize.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import { padMultipleOf } from '../nn/inference.js';
import { normalize, IMAGENET, type Normalization } from '../data/augment.js';
import { rgbToChw } from '../data/pixels.js';

export interface SegmentOptions {
  /** Input scales (1 = as given). Default [1]. */
  scales?: number[];
  /** Also run the left-right flipped image. */
  flip?: boolean;
  /** Pad each (scaled) input at the bottom and right with zeros (the mean, after normalisation)
   * to a multiple of this plus one (k·m + 1: the paper's 513 = 32·16 + 1 sizes, on which the
   * stride-2 layers' outputs land on the first and last pixel, as on the 16k+1 training crops).
   * The logits are cropped back. Default: the model's padding convention (`model.inference`,
   * from its checkpoint) at its current output stride; 0 (no padding) for a model without one. */
  padMultiple?: number;
  /** Sliding-window inference (mmseg's `slide` mode): windows of this size [h, w] (or one number)
   * cover the (scaled) image, each run on its own, and the logits are averaged where windows
   * overlap. Default: none, the whole image in one run, as the paper. */
  window?: number | [number, number];
  /** Step between windows [h, w] (or one number). Default: two thirds of the window. */
  stride?: number | [number, number];
  /** Downscale so that the longer side is at most this many pixels before running (the logits
   * and labels are resized back to the full resolution). Default: none (full resolution). */
  maxSide?: number;
}

const pairOf = (v: number | [number, number], what: string): [number, number] => {
  const p: [number, number] = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || p.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`atrous: segment: ${what} must be a positive integer or a pair of them, got ${JSON.stringify(v)}`);
  return p;
};

/** Logits [c, h, w] of one CHW image in one run: padded at the bottom and right to k·m + 1 (m > 1),
 * run, cropped back. */
async function runWhole(model: DeepLabV3, image: Float32Array, c: number, h: number, w: number, m: number): Promise<Float32Array> {
  const [ph, pw] = paddedSize(h, w, m);
  const padded = ph !== h || pw !== w ? padCHW(image, 3, h, w, ph, pw) : image;
  // The GPU catches up after each piece of the network (forwardAsync): recording a whole large
  // photo ahead of a slow GPU holds every buffer freed and made meanwhile.
  // And its tensors come in many sizes: the pool bounds its free lists meanwhile (pool.compact).
  const pool = engine().pool;
  const wasCompact = pool.compact;
  pool.compact = true;
  let y: Tensor;
  try {
    // The same forward traced first (every tensor allocated, nothing recorded): a run past the
    // pool's memory limit fails here, before any GPU work, and the segments the trace made are
    // the ones the run then uses.
    engine().trace(() => noGrad(() => tidy(() => void model.forward(empty([1, 3, ph, pw])))));
    const x = tensor(padded, [1, 3, ph, pw]);
    try {
      y = await model.forwardAsync(x, () => engine().sync());
    } finally {
      x.dispose();
    }
  } finally {
    pool.compact = wasCompact;
  }
  const logits = cropCHW((await y.data()) as Float32Array, c, ph, pw, h, w);
  y.dispose();
  return logits;
}

/** Window origins along one axis, as mmseg: ceil((n - win) / stride) + 1 windows, the last one
 * moved back to end at the edge. */
function windowStarts(n: number, win: number, stride: number): number[] {
  const count = Math.max(n - win + stride - 1, 0) / stride;
  const grids = Math.floor(count) + 1;
  return Array.from({ length: grids }, (_, i) => Math.max(Math.min(i * stride + win, n) - win, 0));
}

/** Logits [c, h, w] by sliding windows (mmseg's slide mode): each window run as runWhole, the
 * logits summed and divided by the number of windows covering each pixel. */
async function runSliding(model: DeepLabV3, image: Float32Array, c: number, h: number, w: number, m: number, win: [number, number], stride: [number, number]): Promise<Float32Array> {
  const sum = new Float32Array(c * h * w);
  const count = new Uint32Array(h * w); // windows covering each pixel (a small stride makes many)
  for (const y0 of windowStarts(h, win[0], stride[0])) {
    for (const x0 of windowStarts(w, win[1], stride[1])) {
      const wh = Math.min(win[0], h - y0);
      const ww = Math.min(win[1], w - x0);
      const crop = new Float32Array(3 * wh * ww);
      for (let k = 0; k < 3; k++) for (let y = 0; y < wh; y++) crop.set(image.subarray((k * h + y0 + y) * w + x0, (k * h + y0 + y) * w + x0 + ww), (k * wh + y) * ww);
      const logits = await runWhole(model, crop, c, wh, ww, m);
      for (let k = 0; k < c; k++) {
        for (let y = 0; y < wh; y++) {
          const dst = (k * h + y0 + y) * w + x0;
          const src = (k * wh + y) * ww;
          for (let x = 0; x < ww; x++) sum[dst + x] += logits[src + x];
        }
      }
      for (let y = 0; y < wh; y++) for (let x = 0; x < ww; x++) count[(y0 + y) * w + x0 + x]++;
    }
  }
  const hw = h * w;
  for (let k = 0; k < c; k++) for (let i = 0; i < hw; i++) sum[k * hw + i] /= count[i];
  return sum;
}

/** A shape tracer that also remembers the largest tensor it produced and which op made it. */
class LargestTracer extends ShapeTracer {
  largest: { t: Shape; what: string } | null = null;
  private note(t: Shape, what: string): Shape {
    const size = (s: Shape) => s.shape.reduce((a, b) => a * b, 1);
    if (!this.largest || size(t) > size(this.largest.t)) this.largest = { t, what };
    return t;
  }
  override conv2d(x: Shape, w: Shape, b: Shape | null, a: ConvArgs): Shape {
    return this.note(super.conv2d(x, w, b, a), 'a convolution output');
  }
  override batchNorm(x: Shape): Shape {
    return this.note(super.batchNorm(x), 'a batch-norm output');
  }
  override add(a: Shape, b: Shape): Shape {
    return this.note(super.add(a, b), 'a residual sum');
  }
  override cat(xs: Shape[]): Shape {
    return this.note(super.cat(xs), 'a concatenation');
  }
  override resize(x: Shape, size: [number, number]): Shape {
    return this.note(super.resize(x, size), 'a resized tensor');
  }
  override globalAvgPool(x: Shape): Shape {
    return this.note(super.globalAvgPool(x), 'a pooled tensor');
  }
  override maxPool2d(x: Shape, o: { kernelSize: number; stride: number; padding: number }): Shape {
    return this.note(super.maxPool2d(x, o), 'a max-pooling output');
  }
}

/** Checks, without GPU work, that every tensor segment() will allocate for an h × w image fits
 * the device's maxBufferSize: the input at each scale, every activation of the model on each
 * (padded) run, the logits, and the logits resized back. Throws naming the largest tensor that does
 * not fit (shape, bytes) and the limit. `runs`: the padded input sizes [h, w] of the model's runs;
 * `extra`: the other tensors, named. */
function checkBufferSizes(model: DeepLabV3, h: number, w: number, runs: Array<[number, number]>, extra: Array<{ what: string; shape: number[] }>): void {
  const max = engine().limits.maxBufferSize;
  let worst: { what: string; shape: number[] } | null = null;
  const consider = (what: string, shape: number[]) => {
    const bytes = shape.reduce((a, b) => a * b, 4);
    if (allocationSize(bytes, max) > max && (!worst || bytes > worst.shape.reduce((a, b) => a * b, 4))) worst = { what, shape };
  };
  for (const x of extra) consider(x.what, x.shape);
  const seen = new Set<string>();
  for (const [ph, pw] of runs) {
    if (seen.has(`${ph},${pw}`)) continue;
    seen.add(`${ph},${pw}`);
    consider('the input', [1, 3, ph, pw]);
    const tracer = new LargestTracer();
    let out: Shape;
    try {
      out = model.run<Shape>({ shape: [1, 3, ph, pw] }, tracer, false).out;
    } catch {
      continue; // too small for the model: the forward pass reports it
    }
    const l = tracer.largest;
    if (l) consider(l.t === out ? 'the logits' : l.what, l.t.shape);
  }
  if (worst) {
    const { what, shape } = worst as { what: string; shape: number[] };
    const bytes = shape.reduce((a, b) => a * b, 4);
    throw new Error(
      `atrous: segment: ${what} ${fmtShape(shape)} (f32) for this ${w}x${h} image needs ${bytes} bytes, above the device limit ` +
        `maxBufferSize (${max} bytes); use a smaller image, maxSide (--max-side) or sliding windows (--window)`,
    );
  }
}

/** Padded size of an h × w run: k·m + 1 when m > 1 (see runWhole). */
function paddedSize(h: number, w: number, m: number): [number, number] {
  return m > 1 ? [Math.ceil((h - 1) / m) * m + 1, Math.ceil((w - 1) / m) * m + 1] : [h, w];
}

/** The padding multiple segment() uses by default for `model` (see SegmentOptions.padMultiple). */
export function defaultPadMultiple(model: DeepLabV3): number {
  return model.inference ? padMultipleOf(model.inference.padding, model.outputStride) : 0;
}

/** Pads a CHW tensor's data at the bottom and right with zeros to ph × pw. */
function padCHW(data: Float32Array, c: number, h: number, w: number, ph: number, pw: number): Float32Array {
  const out = new Float32Array(c * ph * pw);
  for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) out.set(data.subarray((k * h + y) * w, (k * h + y + 1) * w), (k * ph + y) * pw);
  return out;
}

/** The top-left h × w of a CHW array of ph × pw planes. */
function cropCHW(data: Float32Array, c: number, ph: number, pw: number, h: number, w: number): Float32Array {
  if (ph === h && pw === w) return data;
  const out = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++) for (let y = 0; y < h; y++) out.set(data.subarray((k * ph + y) * pw, (k * ph + y) * pw + w), (k * h + y) * w);
  return out;
}

export interface Segmentation {
  height: number;
  width: number;
  numClasses: number;
  /** Class index per pixel (argmax of the averaged probabilities), row-major [h, w]. */
  labels: Uint8Array;
  /** Logits [classes, h, w] at the input resolution: the mean over scales and flips. */
  logits: Float32Array;
}

function flipW(data: Float32Array, planes: number, h: number, w: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let p = 0; p < planes; p++) {
    for (let y = 0; y < h; y++) {
      const row = (p * h + y) * w;
      for (let x = 0; x < w; x++) out[row + x] = data[row + w - 1 - x];
    }
  }
  return out;
}

/** Segments one normalised CHW image (3 × h × w). The model must be in eval mode. */
export async function segment(model: DeepLabV3, image: Float32Array, h: number, w: number, opts: SegmentOptions = {}): Promise<Segmentation> {
  const scales = opts.scales ?? [1];
  if (!scales.length || scales.some((s) => !(s > 0) || !Number.isFinite(s))) throw new Error(`atrous: segment: scales must be positive numbers, got ${JSON.stringify(scales)}`);
  if (image.length !== 3 * h * w) throw new Error(`atrous: segment: image has ${image.length} values, expected 3 × ${h} × ${w}`);
  const c = model.config.numClasses;
  const hw = h * w;
  const win = opts.window === undefined ? null : pairOf(opts.window, 'window');
  const stride = opts.stride === undefined ? (win ? ([Math.max(1, Math.ceil((win[0] * 2) / 3)), Math.max(1, Math.ceil((win[1] * 2) / 3))] as [number, number]) : null) : pairOf(opts.stride, 'stride');
  if (opts.maxSide !== undefined && !(Number.isInteger(opts.maxSide) && opts.maxSide >= 1)) throw new Error(`atrous: segment: maxSide must be a positive integer, got ${JSON.stringify(opts.maxSide)}`);
  const shrink = opts.maxSide !== undefined && Math.max(h, w) > opts.maxSide ? opts.maxSide / Math.max(h, w) : 1;
  // Every tensor must fit maxBufferSize: checked for all runs before any GPU work.
  const m = opts.padMultiple ?? defaultPadMultiple(model);
  const sizes: Array<[number, number]> = [];
  const extra: Array<{ what: string; shape: number[] }> = [];
  for (const s of scales) {
    const sh = Math.max(1, Math.round(h * s * shrink));
    const sw = Math.max(1, Math.round(w * s * shrink));
    if (sh !== h || sw !== w) extra.push({ what: 'the image', shape: [1, 3, h, w] }, { what: 'the logits resized back', shape: [1, c, h, w] });
    if (win) {
      for (const y0 of windowStarts(sh, win[0], stride![0])) for (const x0 of windowStarts(sw, win[1], stride![1])) sizes.push(paddedSize(Math.min(win[0], sh - y0), Math.min(win[1], sw - x0), m));
    } else {
      sizes.push(paddedSize(sh, sw, m));
    }
  }
  checkBufferSizes(model, h, w, sizes, extra);
  const probSum = new Float32Array(c * hw);
  const logitSum = new Float32Array(c * hw);
  let runs = 0;
  for (const flipped of opts.flip ? [false, true] : [false]) {
    const input = flipped ? flipW(image, 3, h, w) : image;
    for (const s of scales) {
      const sh = Math.max(1, Math.round(h * s * shrink));
      const sw = Math.max(1, Math.round(w * s * shrink));
      let scaled = input;
      if (sh !== h || sw !== w) {
        const t = noGrad(() => tidy(() => interpolate(tensor(input, [1, 3, h, w]), { size: [sh, sw], alignCorners: false })));
        scaled = (await t.data()) as Float32Array;
        t.dispose();
      }
      let logits = win ? await runSliding(model, scaled, c, sh, sw, m, win, stride!) : await runWhole(model, scaled, c, sh, sw, m);
      if (sh !== h || sw !== w) {
        const t = noGrad(() => tidy(() => interpolate(tensor(logits, [1, c, sh, sw]), { size: [h, w], alignCorners: false })));
        logits = (await t.data()) as Float32Array;
        t.dispose();
      }
      if (flipped) logits = flipW(logits, c, h, w);
      // Softmax per pixel, accumulated; max-subtracted for stability.
      for (let i = 0; i < hw; i++) {
        let m = -Infinity;
        for (let k = 0; k < c; k++) m = Math.max(m, logits[k * hw + i]);
        let z = 0;
        for (let k = 0; k < c; k++) z += Math.exp(logits[k * hw + i] - m);
        for (let k = 0; k < c; k++) {
          probSum[k * hw + i] += Math.exp(logits[k * hw + i] - m) / z;
          logitSum[k * hw + i] += logits[k * hw + i];
        }
      }
      runs++;
    }
  }
  const labels = new Uint8Array(hw);
  for (let i = 0; i < hw; i++) {
    let best = 0;
    for (let k = 1; k < c; k++) if (probSum[k * hw + i] > probSum[best * hw + i]) best = k;
    labels[i] = best;
  }
  for (let i = 0; i < logitSum.length; i++) logitSum[i] /= runs;
  return { height: h, width: w, numClasses: c, labels, logits: logitSum };
}

/**
 * Segments an RGB image (interleaved bytes, h × w × 3, as decodeImage returns it): normalised with
 * `normalization`, else the model's (`model.inference`, from its checkpoint), else ImageNet's, then
 * segment(). The model must be in eval mode.
 */
export async function segmentImage(model: DeepLabV3, rgb: Uint8Array, h: number, w: number, opts: SegmentOptions & { normalization?: Normalization } = {}): Promise<Segmentation> {
  if (rgb.length !== 3 * h * w) throw new Error(`atrous: segmentImage: image has ${rgb.length} bytes, expected ${h} × ${w} × 3`);
  const norm = opts.normalization ?? model.inference?.normalization ?? IMAGENET;
  return segment(model, normalize(rgbToChw(rgb, h, w), h * w, norm), h, w, opts);
}
