// Training-time augmentation of DeepLabv3 §4.1 and the per-channel normalisation, on Samples
// (CHW RGB floats in 0..255, HW uint8 labels). Pure TypeScript: runs in browsers too.
//
// One output pixel (y, x) of a crop×crop window is computed in a single pass:
//   scaled image size     sh = round(h·s), sw = round(w·s), s ~ U[scaleMin, scaleMax]
//   window origin         (top, left) uniform over every placement that keeps the crop inside the
//                         scaled image, or, along a side shorter than the crop, every placement
//                         that keeps the scaled image inside the crop (the rest is padding)
//   flip                  with probability 1/2, x ← crop_w − 1 − x
//   source                (top + y, left + x) in the scaled image; outside it the image takes `fill`
//                         (the dataset mean, so it normalises to ~0) and the label takes 255
//   image                 bilinear, half-pixel centres: src = (dst + 0.5)·(h / sh) − 0.5, clamped
//   label                 nearest, half-pixel centres:  src = floor((dst + 0.5)·(h / sh))
// so neither the scaled image nor the padded one is ever materialised.
import type { Sfc32 } from './rng.js';
import { IGNORE, type Sample } from './types.js';

export type Triple = [number, number, number];

/** ImageNet statistics in 0..1 units, as torchvision and the paper's pretrained ResNet use them. */
export const IMAGENET_MEAN: Triple = [0.485, 0.456, 0.406];
export const IMAGENET_STD: Triple = [0.229, 0.224, 0.225];

export interface Normalization {
  /** Per-channel mean and standard deviation in 0..1 units: x' = (x/255 − mean) / std. */
  mean: Triple;
  std: Triple;
}
export const IMAGENET: Normalization = { mean: IMAGENET_MEAN, std: IMAGENET_STD };

export interface AugmentOptions {
  /** Output size: one number for a square crop or [h, w]; default 513 (§4.1). */
  crop?: number | [number, number];
  /** Random scale range; default 0.5 to 2.0 (§4.1). */
  scaleMin?: number;
  scaleMax?: number;
  /** Random left-right flip with probability 1/2; default true. */
  flip?: boolean;
  /** Padding colour in 0..255; default the ImageNet mean × 255, which normalises to 0. */
  fill?: Triple;
}

export interface AugmentParams {
  scale: number;
  /** Window origin in the scaled image; negative where the image is padded before its start. */
  top: number;
  left: number;
  flip: boolean;
}

interface Resolved {
  ch: number;
  cw: number;
  scaleMin: number;
  scaleMax: number;
  flip: boolean;
  fill: Triple;
}

function resolve(opts: AugmentOptions): Resolved {
  const crop = opts.crop ?? 513;
  const [ch, cw] = typeof crop === 'number' ? [crop, crop] : crop;
  const scaleMin = opts.scaleMin ?? 0.5;
  const scaleMax = opts.scaleMax ?? 2.0;
  const fill = opts.fill ?? (IMAGENET_MEAN.map((m) => m * 255) as Triple);
  if (!Number.isInteger(ch) || !Number.isInteger(cw) || ch < 1 || cw < 1) {
    throw new Error(`augment: crop must be a positive integer or [h, w] of them, got ${JSON.stringify(crop)}`);
  }
  if (!(scaleMin > 0 && scaleMin <= scaleMax && Number.isFinite(scaleMax))) {
    throw new Error(`augment: need 0 < scaleMin <= scaleMax, got scaleMin ${scaleMin}, scaleMax ${scaleMax}`);
  }
  if (fill.length !== 3 || !fill.every((v) => Number.isFinite(v))) {
    throw new Error(`augment: fill must be three finite numbers (0..255), got ${JSON.stringify(fill)}`);
  }
  return { ch, cw, scaleMin, scaleMax, flip: opts.flip ?? true, fill };
}

/** Draw scale, window and flip for an h × w sample. The order of draws is part of the format. */
export function drawAugmentParams(rng: Sfc32, h: number, w: number, opts: AugmentOptions = {}): AugmentParams {
  const r = resolve(opts);
  const scale = r.scaleMin === r.scaleMax ? r.scaleMin : rng.uniform(r.scaleMin, r.scaleMax);
  const sh = Math.max(1, Math.round(h * scale));
  const sw = Math.max(1, Math.round(w * scale));
  const top = rng.int(Math.min(0, sh - r.ch), Math.max(0, sh - r.ch));
  const left = rng.int(Math.min(0, sw - r.cw), Math.max(0, sw - r.cw));
  const flip = r.flip && rng.chance(0.5);
  return { scale, top, left, flip };
}

/** Sample coordinates along one axis: for each output index, source taps and weights, or -1 = padding. */
function axisMap(n: number, scaled: number, origin: number, out: number, flip: boolean) {
  const i0 = new Int32Array(out);
  const i1 = new Int32Array(out);
  const f = new Float32Array(out);
  const near = new Int32Array(out);
  const ratio = n / scaled;
  for (let o = 0; o < out; o++) {
    const d = origin + (flip ? out - 1 - o : o);
    if (d < 0 || d >= scaled) {
      i0[o] = -1;
      near[o] = -1;
      continue;
    }
    const src = Math.min(n - 1, Math.max(0, (d + 0.5) * ratio - 0.5));
    const a = Math.floor(src);
    i0[o] = a;
    i1[o] = Math.min(n - 1, a + 1);
    f[o] = src - a;
    near[o] = Math.min(n - 1, Math.floor((d + 0.5) * ratio));
  }
  return { i0, i1, f, near };
}

/**
 * The ch × cw window at (top, left) of the sample resized to sh × sw, optionally mirrored;
 * pixels outside the resized sample take `fill` and label 255.
 */
function sampleWindow(s: Sample, sh: number, sw: number, top: number, left: number, ch: number, cw: number,
  flip: boolean, fill: Triple): Sample {
  const ys = axisMap(s.h, sh, top, ch, false);
  const xs = axisMap(s.w, sw, left, cw, flip);
  const inPlane = s.h * s.w;
  const outPlane = ch * cw;
  const image = new Float32Array(3 * outPlane);
  const label = new Uint8Array(outPlane);
  for (let y = 0; y < ch; y++) {
    const ya = ys.i0[y];
    const rowOut = y * cw;
    if (ya < 0) {
      label.fill(IGNORE, rowOut, rowOut + cw);
      for (let c = 0; c < 3; c++) image.fill(fill[c], c * outPlane + rowOut, c * outPlane + rowOut + cw);
      continue;
    }
    const rowA = ya * s.w;
    const rowB = ys.i1[y] * s.w;
    const fy = ys.f[y];
    const rowN = ys.near[y] * s.w;
    for (let x = 0; x < cw; x++) {
      const o = rowOut + x;
      const xa = xs.i0[x];
      if (xa < 0) {
        label[o] = IGNORE;
        for (let c = 0; c < 3; c++) image[c * outPlane + o] = fill[c];
        continue;
      }
      const xb = xs.i1[x];
      const fx = xs.f[x];
      label[o] = s.label[rowN + xs.near[x]];
      for (let c = 0; c < 3; c++) {
        const base = c * inPlane;
        const a = s.image[base + rowA + xa];
        const b = s.image[base + rowA + xb];
        const cc = s.image[base + rowB + xa];
        const d = s.image[base + rowB + xb];
        const t = a + (b - a) * fx;
        image[c * outPlane + o] = t + (cc + (d - cc) * fx - t) * fy;
      }
    }
  }
  return { image, label, h: ch, w: cw, id: s.id };
}

function checkSample(s: Sample, fn: string): void {
  if (s.image.length !== 3 * s.h * s.w || s.label.length !== s.h * s.w) {
    throw new Error(`${fn}: sample ${s.id} has ${s.image.length} image values and ${s.label.length} labels, `
      + `expected 3 × ${s.h} × ${s.w} and ${s.h} × ${s.w}`);
  }
}

/** Apply given parameters: the deterministic half of `augment`, exposed for tests. */
export function applyAugment(s: Sample, p: AugmentParams, opts: AugmentOptions = {}): Sample {
  checkSample(s, 'augment');
  const r = resolve(opts);
  const sh = Math.max(1, Math.round(s.h * p.scale));
  const sw = Math.max(1, Math.round(s.w * p.scale));
  return sampleWindow(s, sh, sw, p.top, p.left, r.ch, r.cw, p.flip, r.fill);
}

/** Random scale, crop (padding with fill / 255) and flip of one sample, drawn from rng. */
export function augment(s: Sample, rng: Sfc32, opts: AugmentOptions = {}): Sample {
  return applyAugment(s, drawAugmentParams(rng, s.h, s.w, opts), opts);
}

/**
 * Resize a sample to oh × ow (bilinear image, nearest label; half-pixel centres), e.g. for the
 * multi-scale inputs of evaluation.
 */
export function resizeSample(s: Sample, oh: number, ow: number): Sample {
  checkSample(s, 'resizeSample');
  if (!Number.isInteger(oh) || !Number.isInteger(ow) || oh < 1 || ow < 1) {
    throw new Error(`resizeSample: output size must be positive integers, got ${oh}×${ow}`);
  }
  // A resize is a window that covers the whole resized image: no padding, so fill is unused.
  return sampleWindow(s, oh, ow, 0, 0, oh, ow, false, [0, 0, 0]);
}

/**
 * Normalise a CHW image of 0..255 values into `out` (default a new array):
 * out = (x / 255 − mean[c]) / std[c].
 */
export function normalize(image: Float32Array, hw: number, norm: Normalization = IMAGENET,
  out: Float32Array = new Float32Array(image.length), outOffset = 0): Float32Array {
  if (image.length !== 3 * hw) throw new Error(`normalize: image has ${image.length} values, expected 3 × ${hw}`);
  for (let c = 0; c < 3; c++) {
    if (!(norm.std[c] > 0)) throw new Error(`normalize: std must be positive, got ${JSON.stringify(norm.std)}`);
    const k = 1 / (255 * norm.std[c]);
    const b = norm.mean[c] / norm.std[c];
    const src = c * hw;
    const dst = outOffset + c * hw;
    for (let i = 0; i < hw; i++) out[dst + i] = image[src + i] * k - b;
  }
  return out;
}
