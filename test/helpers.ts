// Shared test helpers: seeded random data, normwise comparisons, and a finite-difference gradient
// check that runs the op's forward on the GPU.

import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, tensor, parameter, tidy, backward, noGrad, fmtShape, engine } from '../src/index.js';
import { encodeIndexedPng, encodePng } from '../src/io/image.js';

/** Deterministic standard-normal values (mulberry32 + Box-Muller). */
export function randn(n: number, seed = 1, scale = 1, offset = 0): Float32Array {
  let s = seed >>> 0 || 1;
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = Math.max(rand(), 1e-12);
    out[i] = offset + scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  }
  return out;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** ||a - b|| / max(||b||, tiny): the normwise relative error used throughout. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (!Number.isFinite(num)) return Infinity;
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

export function maxAbsErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what = 'values'): void {
  for (let i = 0; i < actual.length; i++) {
    if (!Number.isFinite(actual[i])) throw new Error(`${what}: element ${i} is ${actual[i]}`);
  }
  const e = relErr(actual, expected);
  expect(e, `${what}: normwise relative error ${e.toExponential(2)} (max abs ${maxAbsErr(actual, expected).toExponential(2)})`).to.be.at.most(tol);
}

export interface GradCheckInput {
  data: Float32Array;
  shape: number[];
  /** false for inputs that are not differentiated (e.g. integer targets are passed via closure). */
  grad?: boolean;
}

/**
 * Finite-difference check of every differentiable input of `f` on the GPU path:
 * analytic d/dx sum(f(x) * dy) from backward() vs central differences (f evaluated on the GPU,
 * the sum in float64 on the CPU), on up to `samples` random elements per input.
 */
export async function gradCheck(
  f: (...xs: Tensor[]) => Tensor,
  inputs: GradCheckInput[],
  opts: { eps?: number; tol?: number; samples?: number; seed?: number } = {},
): Promise<void> {
  const eps = opts.eps ?? 1e-2;
  const tol = opts.tol ?? 2e-2;
  const samples = opts.samples ?? 16;
  // Analytic gradients.
  const params = inputs.map((inp) => (inp.grad === false ? tensor(inp.data, inp.shape) : parameter(inp.data, inp.shape)));
  let dyData: Float32Array | null = null;
  let outShape: readonly number[] = [];
  const analytic: (Float32Array | null)[] = [];
  try {
    tidy(() => {
      const out = f(...params);
      outShape = out.shape;
      dyData = randn(out.size, (opts.seed ?? 7) + 1000);
      backward(out, tensor(dyData, out.shape));
    });
    for (let i = 0; i < params.length; i++) {
      const g = params[i].grad;
      if (inputs[i].grad === false) {
        analytic.push(null);
        continue;
      }
      if (!g) throw new Error(`gradCheck: input ${i} ${fmtShape(inputs[i].shape)} received no gradient`);
      analytic.push((await g.data()) as Float32Array);
    }
  } finally {
    for (const p of params) {
      p.grad?.dispose();
      p.grad = null;
      p.dispose();
    }
  }
  const dy = dyData!;
  const lossAt = async (xs: Float32Array[]): Promise<number> => {
    const out = noGrad(() => tidy(() => f(...xs.map((d, i) => tensor(d, inputs[i].shape)))));
    if (out.size !== numel(outShape)) throw new Error('gradCheck: output size changed');
    const v = await out.data();
    out.dispose();
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * dy[i];
    return s;
  };
  let rngState = opts.seed ?? 7;
  const pick = (n: number) => {
    rngState = (Math.imul(rngState, 1103515245) + 12345) >>> 0;
    return rngState % n;
  };
  for (let i = 0; i < inputs.length; i++) {
    const a = analytic[i];
    if (!a) continue;
    const idx = new Set<number>();
    const n = inputs[i].data.length;
    while (idx.size < Math.min(samples, n)) idx.add(pick(n));
    const num: number[] = [];
    const ana: number[] = [];
    for (const j of idx) {
      const xs = inputs.map((inp) => Float32Array.from(inp.data));
      xs[i][j] += eps;
      const lp = await lossAt(xs);
      xs[i][j] -= 2 * eps;
      const lm = await lossAt(xs);
      num.push((lp - lm) / (2 * eps));
      ana.push(a[j]);
    }
    const e = relErr(ana, num);
    expect(e, `gradCheck input ${i} ${fmtShape(inputs[i].shape)}: analytic ${ana.map((v) => v.toFixed(4))} vs numeric ${num.map((v) => v.toFixed(4))}`).to.be.at.most(tol);
  }
}

/** Fills a tensor's buffer with NaN before a kernel writes it, to prove every element is written. */
export const POISON = Number.NaN;

/** fn must throw an error whose message contains every part, having recorded no GPU work and
 * leaked no buffer (argument checks run before anything is allocated or dispatched). */
export function expectOpError(fn: () => unknown, ...parts: string[]): void {
  const before = engine().stats();
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').to.be.instanceOf(Error);
  for (const p of parts) expect((err as Error).message).to.include(p);
  const after = engine().stats();
  expect(after.dispatches, 'no GPU work before the error').to.equal(before.dispatches);
  expect(after.liveBuffers, 'no buffer leaked by the error').to.equal(before.liveBuffers);
}

/** Runs the `atrous` command line in-process, capturing what it prints (console.log, console.error
 * and direct process.stdout writes such as `eval --json`). */
export async function runCli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const { run } = await import('../src/cli/main.js');
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  const write = process.stdout.write;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out.push(String(chunk).replace(/\n$/, ''));
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await run(argv), out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
    process.stdout.write = write;
  }
}

/**
 * A tiny VOC-layout set of binary masks saved as 0/255, as annotation tools export them: 4 images
 * of size×size, a red 12×14 rectangle (x from 3 + 3k, y from 8) on a blue background in image k,
 * labels 255 on the rectangle and 0 elsewhere (palette PNGs), train.txt = val.txt = all four, and
 * atrous-dataset.json declaring 2 classes ['background', 'object'] plus `labelMap` when given.
 * Returns the pixel counts: 4 × 168 object pixels of 4 × size² in all.
 */
export function writeBinaryMaskVoc(root: string, opts: { size?: number; labelMap?: Record<string, number> } = {}): { object: number; total: number } {
  const s = opts.size ?? 33;
  for (const d of ['JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation']) mkdirSync(join(root, d), { recursive: true });
  const ids = ['mask0', 'mask1', 'mask2', 'mask3'];
  let object = 0;
  ids.forEach((id, k) => {
    const rgb = new Uint8Array(s * s * 3);
    const lbl = new Uint8Array(s * s);
    for (let y = 0; y < s; y++) {
      for (let x = 0; x < s; x++) {
        const inside = x >= 3 + 3 * k && x < 15 + 3 * k && y >= 8 && y < 22;
        const i = y * s + x;
        lbl[i] = inside ? 255 : 0;
        rgb.set(inside ? [220, 40, 30] : [30, 60, 200], 3 * i);
        if (inside) object++;
      }
    }
    writeFileSync(join(root, 'JPEGImages', `${id}.png`), encodePng(rgb, s, s));
    writeFileSync(join(root, 'SegmentationClass', `${id}.png`), encodeIndexedPng(lbl, s, s));
  });
  for (const split of ['train', 'val']) writeFileSync(join(root, 'ImageSets/Segmentation', `${split}.txt`), `${ids.join('\n')}\n`);
  writeFileSync(join(root, 'atrous-dataset.json'), `${JSON.stringify({
    numClasses: 2, classNames: ['background', 'object'], ...(opts.labelMap ? { labelMap: opts.labelMap } : {}),
  })}\n`);
  return { object, total: ids.length * s * s };
}
