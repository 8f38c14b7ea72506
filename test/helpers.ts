// Shared test helpers: seeded random data, normwise comparisons, and a finite-difference gradient
// check that runs the op's forward on the GPU.

import { expect } from 'chai';
import { crc32 } from 'node:zlib';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tensor, tensor, parameter, tidy, backward, noGrad, fmtShape, engine, batchNorm } from '../src/index.js';
import { batchNormReductionVariants, batchNormElementwiseVariants } from '../src/ops/batchnorm.js';
import { decodeImage, encodeIndexedPng, encodeJpeg, encodePng } from '../src/io/image.js';
import { modelConfig } from '../src/nn/configs.js';
import { RunDir, RUN_FORMAT, TRAIN_DEFAULTS, type RunInfo, type TrainOptions } from '../src/train/index.js';

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

/** What fn throws (undefined when it returns). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
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

/** A safetensors file with its header JSON text edited (the data section kept as it is), the
 * header re-padded with spaces to a multiple of 8: doctored files JSON.parse would read happily. */
export function editHeader(file: Uint8Array, edit: (header: string) => string): Uint8Array {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const n = dv.getUint32(0, true);
  let header = edit(new TextDecoder().decode(file.subarray(8, 8 + n)).trimEnd());
  while ((8 + new TextEncoder().encode(header).length) % 8 !== 0) header += ' ';
  const hb = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + hb.length + file.length - 8 - n);
  new DataView(out.buffer).setUint32(0, hb.length, true);
  out.set(hb, 8);
  out.set(file.subarray(8 + n), 8 + hb.length);
  return out;
}

/** The header with the entry of tensor `name` written a second time, right after the first. */
export function duplicateEntry(header: string, name: string): string {
  const m = new RegExp(`${JSON.stringify(name).replace(/[.[\]]/g, '\\$&')}:\\{[^}]*\\}`).exec(header);
  if (!m) throw new Error(`duplicateEntry: no entry for ${name} in the header`);
  return header.slice(0, m.index + m[0].length) + ',' + m[0] + header.slice(m.index + m[0].length);
}

/** An EXIF block (a TIFF structure: header, IFD0 with the orientation tag 0x0112 as a SHORT,
 * no next IFD), big- or little-endian. */
export function exifOrientationBlock(orientation: number, littleEndian = false): Uint8Array {
  const b = new Uint8Array(26);
  const dv = new DataView(b.buffer);
  b.set(littleEndian ? [0x49, 0x49] : [0x4d, 0x4d], 0);
  dv.setUint16(2, 42, littleEndian);
  dv.setUint32(4, 8, littleEndian); // IFD0 right after the header
  dv.setUint16(8, 1, littleEndian); // one entry
  dv.setUint16(10, 0x0112, littleEndian);
  dv.setUint16(12, 3, littleEndian); // SHORT
  dv.setUint32(14, 1, littleEndian); // one value, stored in the entry
  dv.setUint16(18, orientation, littleEndian);
  dv.setUint32(22, 0, littleEndian); // no next IFD
  return b;
}

/** A JPEG or PNG file with an EXIF block inserted: an APP1 "Exif" segment right after the JPEG's
 * start-of-image marker, or an eXIf chunk right after the PNG's IHDR. */
export function withExif(file: Uint8Array, exif: Uint8Array): Uint8Array {
  if (file[0] === 0xff && file[1] === 0xd8) {
    const seg = new Uint8Array(4 + 6 + exif.length);
    seg.set([0xff, 0xe1, (seg.length - 2) >> 8, (seg.length - 2) & 0xff, 0x45, 0x78, 0x69, 0x66, 0, 0]);
    seg.set(exif, 10);
    return Buffer.concat([file.subarray(0, 2), seg, file.subarray(2)]);
  }
  const chunk = new Uint8Array(12 + exif.length);
  const dv = new DataView(chunk.buffer);
  dv.setUint32(0, exif.length);
  chunk.set([0x65, 0x58, 0x49, 0x66], 4); // eXIf
  chunk.set(exif, 8);
  dv.setUint32(8 + exif.length, crc32(chunk.subarray(4, 8 + exif.length)));
  const at = 8 + 25; // signature, IHDR
  return Buffer.concat([file.subarray(0, at), chunk, file.subarray(at)]);
}

/**
 * The stored pixel grid that a file with EXIF orientation `o` holds for the upright image `up`
 * (`channels` bytes per pixel): each stored pixel (sx, sy) of the stored w×h grid is shown at the
 * upright position the EXIF specification gives (TIFF 6.0 / CIPA DC-008: for 6, "the 0th row is
 * the visual right-hand side, the 0th column the visual top").
 */
export function storedGrid(up: { width: number; height: number; data: Uint8Array }, channels: number, o: number): { width: number; height: number; data: Uint8Array } {
  const swap = o >= 5;
  const w = swap ? up.height : up.width;
  const h = swap ? up.width : up.height;
  const out = new Uint8Array(up.data.length);
  const shownAt: Record<number, (sx: number, sy: number) => [number, number]> = {
    1: (sx, sy) => [sx, sy],
    2: (sx, sy) => [w - 1 - sx, sy],
    3: (sx, sy) => [w - 1 - sx, h - 1 - sy],
    4: (sx, sy) => [sx, h - 1 - sy],
    5: (sx, sy) => [sy, sx],
    6: (sx, sy) => [h - 1 - sy, sx],
    7: (sx, sy) => [h - 1 - sy, w - 1 - sx],
    8: (sx, sy) => [sy, w - 1 - sx],
  };
  for (let sy = 0; sy < h; sy++) {
    for (let sx = 0; sx < w; sx++) {
      const [x, y] = shownAt[o](sx, sy);
      for (let c = 0; c < channels; c++) out[(sy * w + sx) * channels + c] = up.data[(y * up.width + x) * channels + c];
    }
  }
  return { width: w, height: h, data: out };
}

/**
 * One upright photo as 16 files: for each EXIF orientation 1..8, a PNG (eXIf chunk) and a JPEG
 * (APP1 "Exif"; EXIF big-endian for odd orientations, little-endian for even ones) holding the
 * stored grid that turns into the upright photo. The photo is a 48×72 (w×h) crop of the bundled
 * sample web/samples/shapes-val-0.png, for the JPEGs made of 8×8 blocks of one colour each, so
 * that every stored grid compresses to the same blocks and all 8 JPEGs decode to the same pixels.
 * Writes `<dir>/photo-o<N>.png` and `.jpg` (`root`: the repository); returns the upright pixels and the paths.
 */
export function orientationVariants(dir: string, root: string):
  { upright: { width: number; height: number; data: Uint8Array }; blocks: { width: number; height: number; data: Uint8Array }; png: string[]; jpg: string[] } {
  const sample = decodeImage(new Uint8Array(readFileSync(join(root, 'web', 'samples', 'shapes-val-0.png'))), 'shapes-val-0.png');
  const W = 48;
  const H = 72;
  const x0 = 40;
  const y0 = 30;
  const upright = { width: W, height: H, data: new Uint8Array(W * H * 3) };
  for (let y = 0; y < H; y++) upright.data.set(sample.data.subarray(((y0 + y) * sample.width + x0) * 3, ((y0 + y) * sample.width + x0 + W) * 3), y * W * 3);
  const blocks = { width: W, height: H, data: new Uint8Array(W * H * 3) };
  for (let by = 0; by < H; by += 8) {
    for (let bx = 0; bx < W; bx += 8) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let y = by; y < by + 8; y++) for (let x = bx; x < bx + 8; x++) sum += upright.data[(y * W + x) * 3 + c];
        const v = Math.round(sum / 64);
        for (let y = by; y < by + 8; y++) for (let x = bx; x < bx + 8; x++) blocks.data[(y * W + x) * 3 + c] = v;
      }
    }
  }
  const png: string[] = [];
  const jpg: string[] = [];
  for (let o = 1; o <= 8; o++) {
    const s = storedGrid(upright, 3, o);
    png.push(join(dir, `photo-o${o}.png`));
    writeFileSync(png[o - 1], withExif(encodePng(s.data, s.width, s.height), exifOrientationBlock(o, o % 2 === 0)));
    const b = storedGrid(blocks, 3, o);
    jpg.push(join(dir, `photo-o${o}.jpg`));
    writeFileSync(jpg[o - 1], withExif(encodeJpeg(b.data, b.width, b.height, 95), exifOrientationBlock(o, o % 2 === 0)));
  }
  return { upright, blocks, png, jpg };
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

/** A tiny run: 2 images of shapes, batch 2, 33×33 crops, no rescaling, so it can overfit. */
export function tinyOptions(o: Partial<TrainOptions> = {}): TrainOptions {
  return {
    ...TRAIN_DEFAULTS, config: modelConfig('mini', { numClasses: 7 }), dataset: 'shapes', dataLength: 2,
    steps: 8, batch: 2, crop: 33, lr: 0.05, scaleMin: 1, scaleMax: 1, seed: 3, checkpointEvery: 4, logEvery: 3, ...o,
  };
}

/** A new run directory holding run.json for options `o`. */
export function newRun(dir: string, o: TrainOptions): RunDir {
  const info: RunInfo = { format: RUN_FORMAT, created: new Date().toISOString(), options: o };
  return RunDir.create(dir, info);
}

/** Runs `fn` at the default limits and with maxStorageBufferBindingSize lowered to `low` bytes, on
 * the same engine (the engine's own view of the device limits, what `init({ limits })` sets, so
 * both runs share compiled pipelines), returning both results and the dispatch counts. */
export async function withBindingLimit(fn: () => Promise<ArrayLike<number>[]>, low: number): Promise<{ full: ArrayLike<number>[]; split: ArrayLike<number>[]; launches: [number, number] }> {
  const limits = engine().limits as { maxStorageBufferBindingSize: number };
  const saved = limits.maxStorageBufferBindingSize;
  let d0 = engine().stats().dispatches;
  const full = await fn();
  const n0 = engine().stats().dispatches - d0;
  limits.maxStorageBufferBindingSize = low;
  try {
    d0 = engine().stats().dispatches;
    const split = await fn();
    const n1 = engine().stats().dispatches - d0;
    return { full, split, launches: [n0, n1] };
  } finally {
    limits.maxStorageBufferBindingSize = saved;
  }
}

/** Every result equal to the last bit (Object.is: -0 and NaN count), naming the first difference. */
export function expectBitEqual(a: ArrayLike<number>[], b: ArrayLike<number>[]): void {
  expect(a.length).to.equal(b.length);
  for (let k = 0; k < a.length; k++) {
    expect(a[k].length).to.equal(b[k].length);
    let bad = -1;
    for (let i = 0; i < a[k].length; i++) if (!Object.is(a[k][i], b[k][i])) { bad = i; break; }
    expect(bad, `result ${k}: first difference at ${bad}: ${a[k][bad]} vs ${b[k][bad]}`).to.equal(-1);
  }
}

/** Reads each tensor back and disposes it. */
export async function read(...ts: Tensor[]): Promise<ArrayLike<number>[]> {
  const out: ArrayLike<number>[] = [];
  for (const t of ts) {
    out.push(await t.data());
    t.dispose();
  }
  return out;
}

/**
 * Batch norm on x of `shape` in training and in eval, forward and backward, at the default binding
 * limit and lowered to `low` bytes, with the reduction and element-wise variants forced; checks that
 * the split run launched more, training results and eval's dweight / dbias within 1e-6 (sums per
 * block, then combined), eval's y, dx and running statistics to the last bit.
 */
export async function expectBatchNormSplit(shape: number[], reduction: 'tree' | 'lanes', elementwise: 'planes' | 'flat', low: number): Promise<void> {
  const c = shape[1];
  const size = shape.reduce((a, b) => a * b, 1);
  batchNormReductionVariants.force(reduction);
  batchNormElementwiseVariants.force(elementwise);
  try {
    const r = await withBindingLimit(async () => {
      const out: ArrayLike<number>[] = [];
      for (const training of [true, false]) {
        const x = parameter(randn(size, 31, 2, 3), shape);
        const wt = parameter(randn(c, 32, 0.5, 1), [c]);
        const b = parameter(randn(c, 33), [c]);
        const rm = tensor(randn(c, 34, 0.1), [c]);
        const rv = tensor(randn(c, 35, 0.1, 1), [c]);
        const y = tidy(() => {
          const y = batchNorm(x, wt, b, rm, rv, { training, momentum: 0.1 });
          const k = y.ref();
          backward(y, tensor(randn(size, 36), y.shape));
          return k;
        });
        out.push(...(await read(y, x.grad!, wt.grad!, b.grad!, rm, rv)));
        for (const t of [x, wt, b]) t.dispose();
      }
      return out;
    }, low);
    expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 6);
    for (const k of [0, 1, 2, 3, 4, 5, 8, 9]) expect(relErr(r.split[k], r.full[k]), `result ${k}`).to.be.below(1e-6);
    expectBitEqual([6, 7, 10, 11].map((k) => r.full[k]), [6, 7, 10, 11].map((k) => r.split[k]));
  } finally {
    batchNormReductionVariants.force(null);
    batchNormElementwiseVariants.force(null);
  }
}
