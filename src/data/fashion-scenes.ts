// `fashion-scenes`: scenes composed from real Fashion-MNIST product images (the items' pixels
// come from the data set; only their tint, scale, position and the background are synthetic).
//
// Each scene places 1 to maxItems items, each resized (bilinear) from 28 × 28 to 28·s pixels with
// s log-uniform in [minScale, maxScale] (default 0.5 to 4), at a random position (it may leave
// the frame partly), over a textured background; later items occlude earlier ones. An item pixel
// of resized intensity v is labelled with the item's class (1 + Fashion-MNIST label) where
// v >= threshold, and painted as tint·(0.3 + 0.7·v/255) with opacity min(1, v/threshold), so the
// item's own shading shows and its colour (drawn per instance) does not tell the class.
//
// The train split draws items from the 60,000 training images only, the val split from the
// 10,000 test images only. Sample i of a split is a pure function of (seed, split, i).
// Pure TypeScript (the IDX parser works on bytes already gunzipped): the Node loader that reads
// Debian's files is fashion-mnist.ts.
import { Sfc32, hashSeed, tagSeed } from './rng.js';
import { checkIndex, type Dataset, type Sample } from './types.js';
import { vocPalette } from './palette.js';
import { randomBackground } from './shapes.js';
import { colorDistance, finishImage, randomColor, type RGB, type Texture } from './textures.js';

export const FASHION_CLASSES: readonly string[] = Object.freeze([
  'background', 'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
]);

/** An IDX file (Yann LeCun's MNIST format) of unsigned bytes. */
export interface Idx {
  dims: number[];
  data: Uint8Array;
}

/**
 * Parse an IDX file: two zero bytes, a type code (0x08 = unsigned byte, the only one accepted),
 * the number of dimensions, each dimension as a big-endian uint32, then the data row-major.
 */
export function parseIdx(bytes: Uint8Array, name: string): Idx {
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${name}: not an IDX file (bad magic number)`);
  }
  if (bytes[2] !== 0x08) throw new Error(`${name}: IDX type 0x${bytes[2].toString(16)} is not unsigned bytes (0x08)`);
  const nd = bytes[3];
  if (nd < 1 || bytes.length < 4 + 4 * nd) throw new Error(`${name}: truncated IDX header (${nd} dimensions)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims = Array.from({ length: nd }, (_, k) => view.getUint32(4 + 4 * k, false));
  const count = dims.reduce((a, b) => a * b, 1);
  const start = 4 + 4 * nd;
  if (bytes.length !== start + count) {
    throw new Error(`${name}: IDX data has ${bytes.length - start} bytes, dimensions ${dims.join('×')} need ${count}`);
  }
  return { dims, data: bytes.subarray(start) };
}

/** Fashion-MNIST images and labels of one part (train or test). */
export interface FashionPool {
  /** n × rows × cols intensities, 0 = background. */
  images: Uint8Array;
  labels: Uint8Array;
  n: number;
  rows: number;
  cols: number;
}

/** Check an images/labels pair of IDX files against each other and build a pool. */
export function makePool(images: Idx, labels: Idx, name: string): FashionPool {
  if (images.dims.length !== 3) throw new Error(`${name}: images must have 3 dimensions, got ${images.dims.join('×')}`);
  if (labels.dims.length !== 1 || labels.dims[0] !== images.dims[0]) {
    throw new Error(`${name}: ${images.dims[0]} images but labels of shape ${labels.dims.join('×')}`);
  }
  for (let i = 0; i < labels.data.length; i++) {
    if (labels.data[i] >= FASHION_CLASSES.length - 1) throw new Error(`${name}: label ${labels.data[i]} at item ${i} is not in 0..9`);
  }
  return { images: images.data, labels: labels.data, n: images.dims[0], rows: images.dims[1], cols: images.dims[2] };
}

export interface FashionScenesOptions {
  split?: 'train' | 'val';
  seed?: number;
  /** Number of scenes; default 10000 for train, 200 for val. */
  length?: number;
  h?: number;
  w?: number;
  /** Items per scene, uniform in [1, maxItems]; default 4. */
  maxItems?: number;
  /** Item scale relative to 28 px, log-uniform; default 0.5 to 4. */
  minScale?: number;
  maxScale?: number;
  /** Resized intensity at and above which a pixel belongs to the item; default 32. */
  threshold?: number;
}

/** Bilinear resize (half-pixel centres) of one rows × cols item to oh × ow, as floats. */
function resizeItem(pool: FashionPool, k: number, oh: number, ow: number): Float32Array {
  const { rows, cols } = pool;
  const src = pool.images.subarray(k * rows * cols, (k + 1) * rows * cols);
  const out = new Float32Array(oh * ow);
  for (let y = 0; y < oh; y++) {
    const sy = Math.min(rows - 1, Math.max(0, ((y + 0.5) * rows) / oh - 0.5));
    const y0 = Math.floor(sy);
    const y1 = Math.min(rows - 1, y0 + 1);
    const fy = sy - y0;
    for (let x = 0; x < ow; x++) {
      const sx = Math.min(cols - 1, Math.max(0, ((x + 0.5) * cols) / ow - 0.5));
      const x0 = Math.floor(sx);
      const x1 = Math.min(cols - 1, x0 + 1);
      const fx = sx - x0;
      const t = src[y0 * cols + x0] + (src[y0 * cols + x1] - src[y0 * cols + x0]) * fx;
      const b = src[y1 * cols + x0] + (src[y1 * cols + x1] - src[y1 * cols + x0]) * fx;
      out[y * ow + x] = t + (b - t) * fy;
    }
  }
  return out;
}

/** A tint that stands out against the background's colours, bright enough for the shading to show. */
function tintFor(rng: Sfc32, bg: Texture): RGB {
  let best: RGB = [255, 255, 255];
  let bestD = -1;
  for (let t = 0; t < 24; t++) {
    const c = randomColor(rng);
    if (Math.max(...c) < 120) continue;
    const d = Math.min(colorDistance(c, bg.colors[0]), colorDistance(c, bg.colors[1]));
    if (d > bestD) {
      best = c;
      bestD = d;
    }
    if (d >= 90) break;
  }
  return best;
}

export class FashionScenesDataset implements Dataset {
  readonly name = 'fashion-scenes';
  readonly split: 'train' | 'val';
  readonly length: number;
  readonly numClasses = FASHION_CLASSES.length;
  readonly classNames = FASHION_CLASSES;
  readonly palette = vocPalette();
  readonly pool: FashionPool;
  readonly seed: number;
  readonly h: number;
  readonly w: number;
  readonly maxItems: number;
  readonly minScale: number;
  readonly maxScale: number;
  readonly threshold: number;

  /** `pool` must be the training part for split 'train' and the test part for 'val'. */
  constructor(pool: FashionPool, opts: FashionScenesOptions = {}) {
    this.pool = pool;
    this.split = opts.split ?? 'train';
    if (this.split !== 'train' && this.split !== 'val') {
      throw new Error(`fashion-scenes: split must be 'train' or 'val', got '${String(this.split)}'`);
    }
    this.seed = opts.seed ?? 0;
    this.length = opts.length ?? (this.split === 'train' ? 10000 : 200);
    this.h = opts.h ?? 129;
    this.w = opts.w ?? 129;
    this.maxItems = opts.maxItems ?? 4;
    this.minScale = opts.minScale ?? 0.5;
    this.maxScale = opts.maxScale ?? 4;
    this.threshold = opts.threshold ?? 32;
    const posInt = (v: number) => Number.isInteger(v) && v > 0;
    if (!Number.isInteger(this.seed)) throw new Error(`fashion-scenes: seed must be an integer, got ${this.seed}`);
    if (!posInt(this.length)) throw new Error(`fashion-scenes: length must be a positive integer, got ${this.length}`);
    if (!posInt(this.h) || !posInt(this.w) || this.h < 8 || this.w < 8) {
      throw new Error(`fashion-scenes: image size must be integers >= 8, got ${this.h}×${this.w}`);
    }
    if (!posInt(this.maxItems)) throw new Error(`fashion-scenes: maxItems must be a positive integer, got ${this.maxItems}`);
    if (!(this.minScale > 0 && this.minScale <= this.maxScale)) {
      throw new Error(`fashion-scenes: need 0 < minScale <= maxScale, got ${this.minScale}..${this.maxScale}`);
    }
    if (!(this.threshold > 0 && this.threshold < 255)) {
      throw new Error(`fashion-scenes: threshold must lie in (0, 255), got ${this.threshold}`);
    }
    if (pool.n < 1) throw new Error('fashion-scenes: the item pool is empty');
  }

  sample(i: number): Sample {
    checkIndex(this, i);
    const { h, w, pool, threshold } = this;
    const rng = new Sfc32(hashSeed(this.seed, tagSeed('fashion-scenes'), tagSeed(this.split), i));
    const plane = h * w;
    const image = new Float32Array(3 * plane);
    const label = new Uint8Array(plane);
    const bg = randomBackground(rng, Math.min(h, w));
    const px = new Float64Array(3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        bg.at(y, x, px);
        // Darken the background a little: Fashion-MNIST items are light-on-dark by nature.
        for (let c = 0; c < 3; c++) image[c * plane + y * w + x] = 0.75 * px[c];
      }
    }
    const nItems = rng.int(1, this.maxItems);
    for (let o = 0; o < nItems; o++) {
      const k = rng.int(0, pool.n - 1);
      const cls = pool.labels[k] + 1;
      const s = rng.logUniform(this.minScale, this.maxScale);
      const ih = Math.max(2, Math.round(pool.rows * s));
      const iw = Math.max(2, Math.round(pool.cols * s));
      // At least a quarter of the item's box stays inside the frame along each axis.
      const top = rng.int(-Math.floor(ih / 4), Math.max(-Math.floor(ih / 4), h - Math.ceil((3 * ih) / 4)));
      const left = rng.int(-Math.floor(iw / 4), Math.max(-Math.floor(iw / 4), w - Math.ceil((3 * iw) / 4)));
      const tint = tintFor(rng, bg);
      const item = resizeItem(pool, k, ih, iw);
      for (let y = Math.max(0, -top); y < Math.min(ih, h - top); y++) {
        for (let x = Math.max(0, -left); x < Math.min(iw, w - left); x++) {
          const v = item[y * iw + x];
          if (v <= 0) continue;
          const a = Math.min(1, v / threshold);
          const j = (top + y) * w + (left + x);
          if (v >= threshold) label[j] = cls;
          const shade = 0.3 + (0.7 * v) / 255;
          for (let c = 0; c < 3; c++) {
            const q = c * plane + j;
            image[q] += (tint[c] * shade - image[q]) * a;
          }
        }
      }
    }
    finishImage(image, rng, rng.uniform(0, 8));
    return { image, label, h, w, id: `${this.split}_${String(i).padStart(6, '0')}` };
  }

  async get(i: number): Promise<Sample> {
    return this.sample(i);
  }
}
