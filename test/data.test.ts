// The data pipeline: generators, augmentation, batching/prefetch, image files, the VOC reader,
// export and the `atrous data` command. CPU only; every fixture is generated into a temp dir.
import { expect } from 'chai';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { PNG } from 'pngjs';
import {
  Sfc32, hashSeed, ShapesDataset, SHAPE_KINDS, FashionScenesDataset, FASHION_CLASSES, parseIdx, makePool,
  haveFashionMnist, loadFashionMnist, openFashionScenes, fashionMnistDir,
  applyAugment, augment, drawAugmentParams, resizeSample, normalize, IMAGENET,
  DataLoader, openVoc, exportVoc, openDataset, vocPalette, colorize, cityscapesLabelToTrainId,
  IGNORE, type Dataset, type Sample, type FashionPool,
  labelMapTable, describeLabelMap, emptyLabelCounts, addLabelCounts, countLabels, labelWarnings, formatLabelCounts,
} from '../src/data/index.js';
import {
  decodeImage, decodeLabelPng, encodeIndexedPng, encodeJpeg, encodePng, imageInfo, chwToRgb, rgbToChw,
} from '../src/io/image.js';
import { runCli, writeBinaryMaskVoc } from './helpers.js';

// ---------------------------------------------------------------------------------- helpers

function expectThrows(fn: () => unknown, ...parts: (string | RegExp)[]): Error {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected an error mentioning ${parts.join(', ')}`).to.be.instanceOf(Error);
  for (const p of parts) {
    if (typeof p === 'string') expect((err as Error).message).to.include(p);
    else expect((err as Error).message).to.match(p);
  }
  return err as Error;
}

async function expectRejects(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<Error> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  return expectThrows(() => {
    if (err) throw err;
  }, ...parts);
}

/** A sample whose pixels are given by functions of (c, y, x) and (y, x). */
function makeSample(h: number, w: number, img: (c: number, y: number, x: number) => number,
  lbl: (y: number, x: number) => number, id = 's'): Sample {
  const image = new Float32Array(3 * h * w);
  const label = new Uint8Array(h * w);
  for (let c = 0; c < 3; c++) for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) image[(c * h + y) * w + x] = img(c, y, x);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) label[y * w + x] = lbl(y, x);
  return { image, label, h, w, id };
}

/** FNV-1a over the bytes of a typed array: compares samples without keeping them all. */
function digest(a: ArrayBufferView): number {
  const b = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h >>> 0;
}

function meanAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

/** A dataset from a fixed list of samples, counting get() calls. */
class ListDataset implements Dataset {
  readonly name = 'list';
  readonly split = 'train';
  readonly numClasses = 4;
  readonly classNames = ['a', 'b', 'c', 'd'];
  readonly palette = vocPalette();
  gets = 0;
  constructor(readonly samples: Sample[]) {}
  get length() {
    return this.samples.length;
  }
  async get(i: number) {
    this.gets++;
    return this.samples[i];
  }
}

function grayPng(values: Uint8Array | Uint16Array, w: number, h: number, bitDepth: 8 | 16 = 8): Buffer {
  const png = new PNG({ width: w, height: h, colorType: 0, inputColorType: 0, bitDepth, inputHasAlpha: false });
  if (bitDepth === 16) {
    // pngjs takes 16-bit input in the platform's byte order, from the start of data's buffer.
    png.data = Buffer.from(Uint16Array.from(values).buffer);
  } else {
    png.data = Buffer.from(values);
  }
  return PNG.sync.write(png, { colorType: 0, inputColorType: 0, bitDepth, inputHasAlpha: false });
}

function rgbPng(rgb: Uint8Array, w: number, h: number): Buffer {
  return Buffer.from(encodePng(rgb, w, h));
}

let tmpRoot = '';
let tmpCount = 0;
function tmp(name = 'd'): string {
  const d = join(tmpRoot, `${name}-${tmpCount++}`);
  mkdirSync(d, { recursive: true });
  return d;
}

/** A minimal VOC dir: ids with w×h photos (PNG unless jpg) and palette labels made by fn. */
function writeVoc(root: string, ids: string[], h = 12, w = 10, opts: { jpg?: boolean; label?: (k: number, y: number, x: number) => number } = {}) {
  for (const d of ['JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation']) mkdirSync(join(root, d), { recursive: true });
  ids.forEach((id, k) => {
    const rgb = new Uint8Array(w * h * 3).map((_, i) => (i * 7 + k * 13) % 256);
    writeFileSync(join(root, 'JPEGImages', `${id}.${opts.jpg ? 'jpg' : 'png'}`), opts.jpg ? encodeJpeg(rgb, w, h) : encodePng(rgb, w, h));
    const lbl = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) lbl[y * w + x] = opts.label ? opts.label(k, y, x) : (x + y + k) % 21;
    writeFileSync(join(root, 'SegmentationClass', `${id}.png`), encodeIndexedPng(lbl, w, h));
  });
  writeFileSync(join(root, 'ImageSets/Segmentation/train.txt'), `${ids.join('\n')}\n`);
}


before(() => {
  tmpRoot = mkdtempSync(join(tmpdir(), 'atrous-data-test-'));
});
after(() => {
  if (tmpRoot) rmSync(tmpRoot, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------- rng

describe('data: seeded random numbers', () => {
  it('repeats per seed, differs between seeds, and restores from its state', () => {
    const a = new Sfc32(42);
    const b = new Sfc32(42);
    const c = new Sfc32(43);
    const xa = Array.from({ length: 8 }, () => a.u32());
    expect(Array.from({ length: 8 }, () => b.u32())).to.deep.equal(xa);
    expect(Array.from({ length: 8 }, () => c.u32())).to.not.deep.equal(xa);
    a.normal(); // leaves a spare deviate in the state
    const r = Sfc32.fromState(JSON.parse(JSON.stringify(a.state())));
    expect(Array.from({ length: 5 }, () => r.normal())).to.deep.equal(Array.from({ length: 5 }, () => a.normal()));
    expectThrows(() => Sfc32.fromState([1, 2, 3]), 'Sfc32.fromState', 'four uint32 words');
  });

  it('draws uniform and normal values with the right moments, integers within bounds', () => {
    const r = new Sfc32(7);
    const n = 20000;
    let su = 0;
    let sn = 0;
    let sn2 = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      su += r.next();
      const z = r.normal();
      sn += z;
      sn2 += z * z;
      const k = r.int(-2, 3);
      lo = Math.min(lo, k);
      hi = Math.max(hi, k);
    }
    expect(su / n).to.be.closeTo(0.5, 0.01);
    expect(sn / n).to.be.closeTo(0, 0.03);
    expect(sn2 / n).to.be.closeTo(1, 0.04);
    expect([lo, hi]).to.deep.equal([-2, 3]);
    expect(hashSeed(1, 2)).to.not.equal(hashSeed(2, 1));
    expect(hashSeed(0, 2 ** 32)).to.not.equal(hashSeed(0, 0));
  });
});

// ---------------------------------------------------------------------------------- shapes

describe('data: shapes dataset', () => {
  it('is deterministic per (seed, split, index) and differs across seeds', () => {
    const a = new ShapesDataset({ seed: 5, h: 65, w: 77 }).sample(3);
    const b = new ShapesDataset({ seed: 5, h: 65, w: 77 }).sample(3);
    const c = new ShapesDataset({ seed: 6, h: 65, w: 77 }).sample(3);
    expect(digest(a.image)).to.equal(digest(b.image));
    expect(digest(a.label)).to.equal(digest(b.label));
    expect(digest(a.image)).to.not.equal(digest(c.image));
    expect([a.h, a.w, a.image.length, a.label.length, a.id]).to.deep.equal([65, 77, 3 * 65 * 77, 65 * 77, 'train_000003']);
  });

  it('keeps train and val disjoint', () => {
    const train = new ShapesDataset({ split: 'train', h: 33, w: 33 });
    const val = new ShapesDataset({ split: 'val', h: 33, w: 33 });
    const seen = new Set<number>();
    for (let i = 0; i < 150; i++) seen.add(digest(train.sample(i).image));
    expect(seen.size).to.equal(150);
    for (let i = 0; i < 150; i++) expect(seen.has(digest(val.sample(i).image)), `val ${i}`).to.equal(false);
    expect(train.length).to.equal(10000);
    expect(val.length).to.equal(200);
  });

  /** Per-class mean colours of objects, pixel counts and object areas over n samples. */
  const survey = (ds: ShapesDataset, n: number) => {
    const hw = ds.h * ds.w;
    const count = new Array(ds.numClasses).fill(0);
    const areas: number[] = [];
    const colours: number[][][] = Array.from({ length: ds.numClasses }, () => []);
    for (let i = 0; i < n; i++) {
      const s = ds.sample(i);
      expect(s.image.every((v) => Number.isInteger(v) && v >= 0 && v <= 255 && !Object.is(v, -0))).to.equal(true);
      const perClass = new Array(ds.numClasses).fill(0);
      const sum = Array.from({ length: ds.numClasses }, () => [0, 0, 0]);
      expect(Math.max(...s.label)).to.be.below(ds.numClasses);
      for (let p = 0; p < hw; p++) {
        const l = s.label[p];
        perClass[l]++;
        for (let c = 0; c < 3; c++) sum[l][c] += s.image[c * hw + p];
      }
      perClass.forEach((m, k) => {
        count[k] += m;
        if (m > 0) {
          if (k > 0) areas.push(m / hw);
          colours[k].push(sum[k].map((v) => v / m));
        }
      });
    }
    return { count, areas, colours };
  };
  const hueSat = ([r, g, b]: number[]): [number, number] => {
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    const d = max - min;
    if (d === 0) return [0, 0];
    const h = max === r ? ((g - b) / d + 6) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
    return [h * 60, d / max];
  };

  it('has every class, objects from small to large, 8-bit values; each class its own hue family on low-saturation backgrounds', () => {
    const ds = new ShapesDataset({ seed: 1 });
    expect(ds.numClasses).to.equal(SHAPE_KINDS.length + 1);
    expect(ds.classNames[0]).to.equal('background');
    const { count, areas, colours } = survey(ds, 60);
    expect(count.every((n) => n > 0), `pixels per class ${count}`).to.equal(true);
    expect(Math.min(...areas)).to.be.below(0.01);
    expect(Math.max(...areas)).to.be.above(0.12);
    // Backgrounds are greys with a faint tint; every object's mean colour lies within 35° of its
    // class hue (360° · (k − 1) / kinds), and is saturated.
    for (const c of colours[0]) expect(hueSat(c)[1], 'background saturation').to.be.below(0.25);
    for (let k = 1; k < ds.numClasses; k++) {
      const want = (360 * (k - 1)) / (ds.numClasses - 1);
      for (const c of colours[k]) {
        const [h, sat] = hueSat(c);
        const off = Math.abs(((h - want + 540) % 360) - 180);
        expect(off, `${ds.classNames[k]} hue ${h.toFixed(0)} vs ${want}`).to.be.below(35);
        expect(sat, `${ds.classNames[k]} saturation`).to.be.above(0.3);
      }
    }
  });

  it('classColors: false draws colours that do not give the class away (shape alone tells it)', () => {
    const ds = new ShapesDataset({ seed: 1, classColors: false });
    const { count, colours } = survey(ds, 60);
    expect(count.every((n) => n > 0), `pixels per class ${count}`).to.equal(true);
    // Within each class, the objects' mean colours spread widely (a class has no colour of its own).
    for (let k = 1; k < ds.numClasses; k++) {
      const cs = colours[k];
      const spread = [0, 1, 2].map((c) => {
        const m = cs.reduce((a, v) => a + v[c], 0) / cs.length;
        return Math.sqrt(cs.reduce((a, v) => a + (v[c] - m) ** 2, 0) / cs.length);
      });
      expect(Math.max(...spread), `colour spread of ${ds.classNames[k]}`).to.be.above(40);
    }
  });

  it('rejects bad options and indices', () => {
    expectThrows(() => new ShapesDataset({ split: 'test' as 'val' }), 'shapes', "split must be 'train' or 'val'", 'test');
    expectThrows(() => new ShapesDataset({ h: 4 }), 'shapes', 'image size', '4×129');
    expectThrows(() => new ShapesDataset({ kinds: ['circle', 'hexagon' as 'ring'] }), 'shapes', 'kinds', 'hexagon');
    expectThrows(() => new ShapesDataset({ minScale: 0.7, maxScale: 0.5 }), 'shapes', 'minScale');
    expectThrows(() => new ShapesDataset({ length: 5 }).sample(5), 'shapes (train)', 'index 5', '[0, 5)');
  });
});

// ---------------------------------------------------------------------------------- fashion-scenes

/** A tiny synthetic item pool: item k is a filled rectangle of intensity 200 with label k % 10. */
function fakePool(n: number, offset = 0): FashionPool {
  const rows = 28;
  const cols = 28;
  const images = new Uint8Array(n * rows * cols);
  const labels = new Uint8Array(n);
  for (let k = 0; k < n; k++) {
    labels[k] = (k + offset) % 10;
    for (let y = 6; y < 22; y++) for (let x = 8; x < 20; x++) images[k * rows * cols + y * cols + x] = 200;
  }
  return { images, labels, n, rows, cols };
}

function idxBytes(dims: number[], data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  out.set([0, 0, 8, dims.length]);
  const dv = new DataView(out.buffer);
  dims.forEach((d, k) => dv.setUint32(4 + 4 * k, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

describe('data: fashion-scenes dataset', () => {
  it('parses IDX files and rejects malformed ones with the file name', () => {
    const idx = parseIdx(idxBytes([2, 3], [1, 2, 3, 4, 5, 6]), 'x.idx');
    expect(idx.dims).to.deep.equal([2, 3]);
    expect(Array.from(idx.data)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expectThrows(() => parseIdx(new Uint8Array([1, 0, 8, 1]), 'a.idx'), 'a.idx', 'bad magic');
    expectThrows(() => parseIdx(Uint8Array.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]), 'b.idx'), 'b.idx', 'not unsigned bytes');
    expectThrows(() => parseIdx(idxBytes([2, 3], [1, 2, 3]), 'c.idx'), 'c.idx', 'dimensions 2×3 need 6');
    expectThrows(() => makePool(parseIdx(idxBytes([2, 1, 1], [0, 0]), 'i'), parseIdx(idxBytes([3], [0, 1, 2]), 'l'), 'i'),
      '2 images but labels of shape 3');
  });

  it('labels item pixels above the threshold with the item class, deterministically', () => {
    const pool = fakePool(30);
    const ds = new FashionScenesDataset(pool, { split: 'train', h: 97, w: 83, seed: 2 });
    expect(ds.numClasses).to.equal(11);
    expect(ds.classNames).to.equal(FASHION_CLASSES);
    let fg = 0;
    for (let i = 0; i < 20; i++) {
      const s = ds.sample(i);
      expect(digest(s.label)).to.equal(digest(ds.sample(i).label));
      expect(Math.max(...s.label)).to.be.below(11);
      fg += s.label.filter((v) => v > 0).length;
    }
    expect(fg).to.be.above(0);
    const other = new FashionScenesDataset(pool, { split: 'val', h: 97, w: 83, seed: 2 });
    expect(digest(other.sample(0).image)).to.not.equal(digest(ds.sample(0).image));
  });

  it('scales items between 0.5× and 4× their size', () => {
    // One item class, a 16×12 box: the labelled area of a lone, fully visible item is ~(16s)(12s).
    const pool = fakePool(1);
    const ds = new FashionScenesDataset(pool, { h: 160, w: 160, maxItems: 1 });
    const scales: number[] = [];
    for (let i = 0; i < 80; i++) {
      const s = ds.sample(i);
      let n = 0;
      let top = s.h;
      let bottom = -1;
      for (let p = 0; p < s.label.length; p++) {
        if (s.label[p] === 1) {
          n++;
          top = Math.min(top, Math.floor(p / s.w));
          bottom = Math.max(bottom, Math.floor(p / s.w));
        }
      }
      if (n > 0 && top > 0 && bottom < s.h - 1) scales.push((bottom - top + 1) / 16);
    }
    expect(scales.length).to.be.above(20);
    expect(Math.min(...scales)).to.be.within(0.4, 0.8);
    expect(Math.max(...scales)).to.be.within(2.8, 4.2);
  });

  it('names the Debian package when the files are missing', () => {
    const empty = tmp('fm');
    expectThrows(() => loadFashionMnist('train', empty), 'dataset-fashion-mnist', 'apt-get install', join(empty, 'train-images-idx3-ubyte.gz'));
    expectThrows(() => openFashionScenes({ split: 'val', dir: empty }), 'dataset-fashion-mnist', 't10k-images-idx3-ubyte.gz');
  });

  const installed = haveFashionMnist();
  (installed ? it : it.skip)(`uses the training items for train and the test items for val (${fashionMnistDir()})`, function () {
    this.timeout(60000);
    const train = openFashionScenes({ split: 'train' });
    const val = openFashionScenes({ split: 'val' });
    expect(train.pool.n).to.equal(60000);
    expect(val.pool.n).to.equal(10000);
    expect(train.pool).to.equal(loadFashionMnist('train'));
    expect(val.pool).to.equal(loadFashionMnist('t10k'));
    const s = train.sample(0);
    expect(s.label.some((v) => v > 0)).to.equal(true);
    expect(digest(s.image)).to.equal(digest(openFashionScenes({ split: 'train' }).sample(0).image));
  });
  if (!installed) {
    it('fashion-scenes on real data: skipped, install the Debian package dataset-fashion-mnist to run it', () => undefined);
  }
});

// ---------------------------------------------------------------------------------- augmentation

describe('data: augmentation', () => {
  const base = makeSample(21, 30, (c, y, x) => c * 50 + y * 2 + x, (y, x) => ((x + 2 * y) % 11 < 6 ? 3 : 7));

  it('draws scales across [0.5, 2.0] and windows that keep the crop on the image or the image in the crop', () => {
    const rng = new Sfc32(1);
    let lo = Infinity;
    let hi = -Infinity;
    let flips = 0;
    for (let i = 0; i < 2000; i++) {
      const p = drawAugmentParams(rng, 100, 60, { crop: 80 });
      lo = Math.min(lo, p.scale);
      hi = Math.max(hi, p.scale);
      if (p.flip) flips++;
      const sh = Math.round(100 * p.scale);
      const sw = Math.round(60 * p.scale);
      expect(p.top).to.be.within(Math.min(0, sh - 80), Math.max(0, sh - 80));
      expect(p.left).to.be.within(Math.min(0, sw - 80), Math.max(0, sw - 80));
    }
    expect(lo).to.be.within(0.5, 0.52);
    expect(hi).to.be.within(1.98, 2.0);
    expect(flips).to.be.within(900, 1100);
    expect(drawAugmentParams(new Sfc32(1), 10, 10, { flip: false, crop: 8 }).flip).to.equal(false);
  });

  it('pads the image with the fill colour and the label with 255, and copies the rest at scale 1', () => {
    const fill: [number, number, number] = [1.5, 2.5, 3.5];
    const out = applyAugment(base, { scale: 1, top: -5, left: -7, flip: false }, { crop: 40, fill });
    expect([out.h, out.w]).to.deep.equal([40, 40]);
    for (let y = 0; y < 40; y++) {
      for (let x = 0; x < 40; x++) {
        const sy = y - 5;
        const sx = x - 7;
        const inside = sy >= 0 && sy < 21 && sx >= 0 && sx < 30;
        expect(out.label[y * 40 + x]).to.equal(inside ? base.label[sy * 30 + sx] : IGNORE);
        for (let c = 0; c < 3; c++) {
          expect(out.image[(c * 40 + y) * 40 + x]).to.equal(inside ? base.image[(c * 21 + sy) * 30 + sx] : fill[c]);
        }
      }
    }
    // The default fill is the ImageNet mean, which normalises to 0.
    const padded = applyAugment(base, { scale: 1, top: -1, left: 0, flip: false }, { crop: [22, 30] });
    const n = normalize(padded.image, 22 * 30);
    for (let c = 0; c < 3; c++) for (let x = 0; x < 30; x++) expect(Math.abs(n[c * 660 + x])).to.be.below(1e-6);
  });

  it('flips image and label together', () => {
    const p = { scale: 1.37, top: 3, left: 2, flip: false };
    const a = applyAugment(base, p, { crop: [17, 23] });
    const b = applyAugment(base, { ...p, flip: true }, { crop: [17, 23] });
    for (let y = 0; y < 17; y++) {
      for (let x = 0; x < 23; x++) {
        expect(b.label[y * 23 + x]).to.equal(a.label[y * 23 + 22 - x]);
        for (let c = 0; c < 3; c++) expect(b.image[(c * 17 + y) * 23 + x]).to.equal(a.image[(c * 17 + y) * 23 + 22 - x]);
      }
    }
    expect(a.label.some((v, i) => v !== b.label[i])).to.equal(true);
  });

  it('resizes the image bilinearly (half-pixel centres) and the label by nearest neighbour', () => {
    // A horizontal ramp stays a ramp under bilinear resampling: out(x) = clamp((x + 0.5)·w/ow − 0.5).
    const ramp = makeSample(5, 9, (_c, _y, x) => 10 * x, (_y, x) => (x % 3 === 0 ? 2 : 9));
    for (const [oh, ow] of [[11, 20], [3, 4], [5, 9]]) {
      const r = resizeSample(ramp, oh, ow);
      for (let x = 0; x < ow; x++) {
        const want = 10 * Math.min(8, Math.max(0, ((x + 0.5) * 9) / ow - 0.5));
        for (let y = 0; y < oh; y++) expect(r.image[y * ow + x]).to.be.closeTo(want, 1e-4);
        const nearest = Math.min(8, Math.floor(((x + 0.5) * 9) / ow));
        expect(r.label[x]).to.equal(nearest % 3 === 0 ? 2 : 9);
      }
    }
    // Random scales never invent label values.
    const rng = new Sfc32(3);
    for (let i = 0; i < 20; i++) {
      const out = augment(base, rng, { crop: 25 });
      expect([...new Set(out.label)].every((v) => v === 3 || v === 7 || v === IGNORE)).to.equal(true);
    }
  });

  it('is reproducible from the generator state', () => {
    const a = augment(base, new Sfc32(11), { crop: 33 });
    const b = augment(base, new Sfc32(11), { crop: 33 });
    expect(digest(a.image)).to.equal(digest(b.image));
    expect(digest(a.label)).to.equal(digest(b.label));
  });

  it('normalises with the ImageNet statistics by default', () => {
    const img = new Float32Array([0, 255, 128, 64, 10, 20]);
    const out = normalize(img, 2);
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 2; i++) {
        expect(out[c * 2 + i]).to.be.closeTo((img[c * 2 + i] / 255 - IMAGENET.mean[c]) / IMAGENET.std[c], 1e-5);
      }
    }
    expectThrows(() => normalize(img, 3), 'normalize', 'expected 3 × 3');
  });

  it('rejects bad options', () => {
    expectThrows(() => augment(base, new Sfc32(1), { crop: 0 }), 'augment: crop must be a positive integer');
    expectThrows(() => augment(base, new Sfc32(1), { scaleMin: 2, scaleMax: 1 }), 'augment', 'scaleMin 2, scaleMax 1');
    expectThrows(() => augment({ ...base, h: 20 }, new Sfc32(1)), 'augment', 'sample s', 'expected 3 × 20 × 30');
    expectThrows(() => resizeSample(base, 0, 3), 'resizeSample', '0×3');
  });
});

// ---------------------------------------------------------------------------------- loader

describe('data: batching and prefetch', () => {
  const samples = Array.from({ length: 10 }, (_, k) => makeSample(9, 11, (c, y, x) => (k * 31 + c * 7 + y * 3 + x) % 256, (y, x) => (k + y + x) % 4, `s${k}`));

  it('builds NCHW float batches with int32 labels', async () => {
    const ds = new ListDataset(samples);
    const dl = new DataLoader(ds, { batchSize: 3, augment: { crop: [8, 12] } });
    const b = await dl.batch(0);
    expect([b.n, b.h, b.w, b.step]).to.deep.equal([3, 8, 12, 0]);
    expect(b.images).to.be.instanceOf(Float32Array);
    expect(b.labels).to.be.instanceOf(Int32Array);
    expect(b.images.length).to.equal(3 * 3 * 8 * 12);
    expect(b.labels.length).to.equal(3 * 8 * 12);
    for (const v of b.labels) expect([0, 1, 2, 3, 255]).to.include(v);
  });

  it('visits every sample once per epoch, reshuffles between epochs, and resumes at any step', async () => {
    const ds = new ListDataset(samples);
    const dl = new DataLoader(ds, { batchSize: 5, seed: 9, augment: { crop: 10 } });
    const epoch0 = [...(await dl.batch(0)).ids, ...(await dl.batch(1)).ids];
    const epoch1 = [...(await dl.batch(2)).ids, ...(await dl.batch(3)).ids];
    expect([...epoch0].sort()).to.deep.equal(samples.map((s) => s.id).sort());
    expect([...epoch1].sort()).to.deep.equal(samples.map((s) => s.id).sort());
    expect(epoch1).to.not.deep.equal(epoch0);

    const full: number[] = [];
    let k = 0;
    for await (const b of new DataLoader(ds, { batchSize: 5, seed: 9, augment: { crop: 10 }, prefetch: 3 })) {
      full.push(digest(b.images), digest(b.labels));
      if (++k === 6) break;
    }
    const resumed: number[] = [];
    for await (const b of new DataLoader(ds, { batchSize: 5, seed: 9, augment: { crop: 10 }, prefetch: 0, startStep: 4, steps: 6 })) {
      expect(b.step).to.equal(4 + resumed.length / 2);
      resumed.push(digest(b.images), digest(b.labels));
    }
    expect(resumed).to.deep.equal(full.slice(8));
    const other: number[] = [];
    for await (const b of new DataLoader(ds, { batchSize: 5, seed: 10, augment: { crop: 10 }, steps: 1 })) other.push(digest(b.images));
    expect(other[0]).to.not.equal(full[0]);
  });

  it('makes one ordered pass for evaluation, the last batch short, normalised', async () => {
    const ds = new ListDataset(samples);
    const batches = [];
    for await (const b of new DataLoader(ds, { batchSize: 4, shuffle: false, augment: false })) batches.push(b);
    expect(batches.map((b) => b.n)).to.deep.equal([4, 4, 2]);
    expect(batches.flatMap((b) => b.ids)).to.deep.equal(samples.map((s) => s.id));
    const s = samples[9];
    const want = normalize(s.image, 9 * 11);
    expect(Array.from(batches[2].images.subarray(3 * 99))).to.deep.equal(Array.from(want));
    expect(Array.from(batches[2].labels.subarray(99))).to.deep.equal(Array.from(s.label));
    const raw = await new DataLoader(ds, { batchSize: 1, shuffle: false, augment: false, normalize: false }).batch(9);
    expect(Array.from(raw.images)).to.deep.equal(Array.from(s.image));
  });

  it('prepares the next batches while the consumer is busy', async () => {
    const ds = new ListDataset(samples);
    const it = new DataLoader(ds, { batchSize: 2, augment: { crop: 8 }, prefetch: 2 })[Symbol.asyncIterator]();
    await it.next();
    expect(ds.gets).to.be.at.most(6);
    // The consumer "waits for the GPU": meanwhile the loader fills its queue of two batches.
    await new Promise((r) => setTimeout(r, 50));
    expect(ds.gets).to.equal(6);
    await it.return?.();
    const ds0 = new ListDataset(samples);
    const it0 = new DataLoader(ds0, { batchSize: 2, augment: { crop: 8 }, prefetch: 0 })[Symbol.asyncIterator]();
    await it0.next();
    await new Promise((r) => setTimeout(r, 50));
    expect(ds0.gets).to.equal(2);
  });

  it('reports bad options and batches that mix sizes', async () => {
    const ds = new ListDataset([...samples, makeSample(5, 5, () => 0, () => 0, 'odd')]);
    expectThrows(() => new DataLoader(ds, { batchSize: 0 }), 'DataLoader(list, train)', 'batchSize', '0');
    expectThrows(() => new DataLoader(ds, { batchSize: 2, prefetch: -1 }), 'prefetch');
    expectThrows(() => new DataLoader(new ListDataset([]), { batchSize: 2 }), 'the dataset is empty');
    const dl = new DataLoader(ds, { batchSize: 11, shuffle: false, augment: false });
    await expectRejects(dl.batch(0), 'batch 0 mixes sizes', '9×11 (s0)', '5×5 (odd)');
    await expectRejects(dl.batch(1), 'step 1 is past the end');
    let err: unknown;
    try {
      for await (const b of dl) expect(b).to.equal(undefined);
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.include('mixes sizes');
  });
});

// ---------------------------------------------------------------------------------- image files

describe('data: image files', () => {
  const w = 13;
  const h = 9;
  const rgb = new Uint8Array(w * h * 3).map((_, i) => (i * 37 + 11) % 256);

  it('writes palette PNGs that other decoders read as the palette colours, and reads back the raw indices', () => {
    const idx = new Uint8Array(w * h).map((_, i) => (i % 5 === 0 ? 255 : i % 21));
    const file = encodeIndexedPng(idx, w, h);
    expect(Array.from(decodeLabelPng(file, 'l.png').data)).to.deep.equal(Array.from(idx));
    const png = PNG.sync.read(Buffer.from(file));
    const pal = vocPalette();
    const colours = colorize(idx, pal);
    for (let i = 0; i < w * h; i++) {
      expect([png.data[4 * i], png.data[4 * i + 1], png.data[4 * i + 2]]).to.deep.equal([colours[3 * i], colours[3 * i + 1], colours[3 * i + 2]]);
    }
    expect(Array.from(pal.subarray(0, 9))).to.deep.equal([0, 0, 0, 128, 0, 0, 0, 128, 0]);
    expect(Array.from(pal.subarray(765))).to.deep.equal([224, 224, 192]);
    expect(imageInfo(file, 'l.png')).to.deep.equal({ format: 'png', width: w, height: h, orientation: 1, storedWidth: w, storedHeight: h });
  });

  it('reads gray and RGB label PNGs (values, VOC colours) and 16-bit gray ones below 256', () => {
    const vals = new Uint8Array(w * h).map((_, i) => (i * 3) % 256);
    expect(Array.from(decodeLabelPng(grayPng(vals, w, h), 'g.png').data)).to.deep.equal(Array.from(vals));
    const v16 = new Uint16Array(w * h).map((_, i) => i % 200);
    expect(Array.from(decodeLabelPng(grayPng(v16, w, h, 16), 'g16.png').data)).to.deep.equal(Array.from(v16));
    v16[17] = 300;
    expectThrows(() => decodeLabelPng(grayPng(v16, w, h, 16), 'g16.png'), 'g16.png', 'label value 300', 'x 4, y 1', '16-bit');
    const idx = new Uint8Array(w * h).map((_, i) => (i % 2 ? 255 : i % 21));
    expect(Array.from(decodeLabelPng(rgbPng(colorize(idx), w, h), 'c.png').data)).to.deep.equal(Array.from(idx));
    const off = colorize(idx);
    off.set([1, 2, 3], 3 * 14);
    expectThrows(() => decodeLabelPng(rgbPng(off, w, h), 'c.png'), 'c.png', 'colour (1, 2, 3)', 'x 1, y 1', 'not in the VOC colour map');
    expectThrows(() => decodeLabelPng(encodeJpeg(rgb, w, h), 'j.jpg'), 'j.jpg', 'must be PNG');
  });

  it('reads palette PNGs of 1, 2, 4 and 8 bits per pixel, plain and Adam7-interlaced', () => {
    for (const depth of [1, 2, 4, 8]) {
      for (const interlace of [false, true]) {
        const idx = new Uint8Array(w * h).map((_, i) => (i * 5 + 1) % (1 << depth));
        const file = handPalettePng(idx, w, h, depth, interlace);
        expect(Array.from(decodeLabelPng(file, 'p.png').data), `depth ${depth} interlace ${interlace}`).to.deep.equal(Array.from(idx));
      }
    }
  });

  it('round-trips RGB through PNG exactly and through JPEG closely', () => {
    const png = decodeImage(encodePng(rgb, w, h), 'a.png');
    expect([png.width, png.height]).to.deep.equal([w, h]);
    expect(Array.from(png.data)).to.deep.equal(Array.from(rgb));
    const smooth = new Uint8Array(64 * 48 * 3).map((_, i) => ((i % 3) * 60 + Math.floor(i / 3 / 64) * 2 + ((i / 3) % 64)) % 256);
    const jpg = decodeImage(encodeJpeg(smooth, 64, 48, 95), 'a.jpg');
    expect([jpg.width, jpg.height]).to.deep.equal([64, 48]);
    expect(meanAbsDiff(jpg.data, smooth)).to.be.below(3);
    const chw = rgbToChw(rgb, h, w);
    expect(chw[w * h]).to.equal(rgb[1]);
    expect(Array.from(chwToRgb(chw, h, w))).to.deep.equal(Array.from(rgb));
  });

  it('names the file and the problem for corrupt, truncated and foreign files', () => {
    const png = encodePng(rgb, w, h);
    const jpg = encodeJpeg(rgb, w, h);
    expectThrows(() => decodeImage(png.subarray(0, png.length - 20), 'cut.png'), 'cut.png', 'truncated PNG');
    expectThrows(() => decodeImage(png.subarray(0, 30), 'cut2.png'), 'cut2.png', 'truncated PNG', 'IHDR');
    const flipped = Uint8Array.from(png);
    flipped[45] ^= 0x55;
    expectThrows(() => decodeImage(flipped, 'bad.png'), 'bad.png', 'corrupt PNG', 'CRC mismatch');
    expectThrows(() => decodeImage(jpg.subarray(0, jpg.length - 40), 'cut.jpg'), 'cut.jpg', 'truncated JPEG');
    expectThrows(() => decodeImage(jpg.subarray(0, 100), 'cut2.jpg'), 'cut2.jpg', 'truncated JPEG');
    expectThrows(() => decodeImage(new TextEncoder().encode('not an image at all'), 'x.jpg'), 'x.jpg', 'not a PNG or JPEG file');
    expectThrows(() => decodeImage(new Uint8Array(0), 'empty.jpg'), 'empty.jpg', 'empty file');
    expectThrows(() => decodeLabelPng(png.subarray(0, png.length - 5), 'cut.png'), 'cut.png', 'truncated PNG');
  });
});

// A second, deliberately simple PNG writer for the decoder's tests: palette images of any bit depth,
// optionally interlaced (Adam7), every row with filter 0.
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

function handPalettePng(idx: Uint8Array, w: number, h: number, depth: number, interlace: boolean): Buffer {
  // The PNG specification's table, as (x start, y start, x step, y step) per pass.
  const passes = interlace
    ? [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]]
    : [[0, 0, 1, 1]];
  const data: number[] = [];
  for (const [x0, y0, dx, dy] of passes) {
    const xs: number[] = [];
    for (let x = x0; x < w; x += dx) xs.push(x);
    if (xs.length === 0) continue;
    for (let y = y0; y < h; y += dy) {
      const row = new Uint8Array(Math.ceil((xs.length * depth) / 8));
      xs.forEach((x, q) => {
        const bit = q * depth;
        row[bit >> 3] |= idx[y * w + x] << (8 - depth - (bit & 7));
      });
      data.push(0, ...row);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([depth, 3, 0, 0, interlace ? 1 : 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('PLTE', vocPalette().subarray(0, 3 * (1 << depth))), chunk('IDAT', deflateSync(Uint8Array.from(data))),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

// ---------------------------------------------------------------------------------- VOC reader and export

describe('data: VOC layout', () => {
  it('round-trips an export: PNG photos exactly, JPEG photos closely, labels and class names exactly', async function () {
    this.timeout(60000);
    const src = new ShapesDataset({ split: 'val', length: 6, h: 37, w: 45, seed: 4 });
    const dir = tmp('rt');
    const res = await exportVoc(src, dir, { format: 'png' });
    expect(res.ids).to.deep.equal(['val_000000', 'val_000001', 'val_000002', 'val_000003', 'val_000004', 'val_000005']);
    const back = openVoc(dir, { split: 'val', validate: 'full' });
    expect(back.length).to.equal(6);
    expect(back.numClasses).to.equal(src.numClasses);
    expect(back.classNames).to.deep.equal(src.classNames);
    for (let i = 0; i < 6; i++) {
      const a = src.sample(i);
      const b = await back.get(i);
      expect([b.id, b.h, b.w]).to.deep.equal([a.id, a.h, a.w]);
      expect(Array.from(b.label)).to.deep.equal(Array.from(a.label));
      expect(Array.from(b.image)).to.deep.equal(Array.from(a.image));
    }
    const train = new ShapesDataset({ split: 'train', length: 3, h: 37, w: 45, seed: 4 });
    await exportVoc(train, dir);
    const jpgBack = openVoc(dir, { split: 'train' });
    for (let i = 0; i < 3; i++) {
      const a = train.sample(i);
      const b = await jpgBack.get(i);
      expect(readdirSync(join(dir, 'JPEGImages'))).to.include(`${a.id}.jpg`);
      expect(Array.from(b.label)).to.deep.equal(Array.from(a.label));
      expect(meanAbsDiff(b.image, a.image)).to.be.below(8);
    }
    const trainval = readFileSync(join(dir, 'ImageSets/Segmentation/trainval.txt'), 'utf8').trim().split('\n');
    expect(trainval).to.have.length(9);
    expect(openVoc(dir, { split: 'trainval' }).length).to.equal(9);
    expect(openDataset(`voc:${dir}`, { split: 'val' }).length).to.equal(6);
  });

  it('reads two-column lists, SegmentationClassAug gray labels, stem pairing, and maps Cityscapes label IDs', async () => {
    const dir = tmp('aug');
    mkdirSync(join(dir, 'JPEGImages'));
    mkdirSync(join(dir, 'SegmentationClassAug'));
    const w = 6;
    const h = 4;
    const rgb = new Uint8Array(w * h * 3).fill(90);
    const lbl = new Uint8Array(w * h).map((_, i) => (i === 0 ? 255 : i % 21));
    for (const id of ['a', 'b']) {
      writeFileSync(join(dir, 'JPEGImages', `${id}.png`), encodePng(rgb, w, h));
      writeFileSync(join(dir, 'SegmentationClassAug', `${id}.png`), grayPng(lbl, w, h));
    }
    writeFileSync(join(dir, 'train_aug.txt'), '/JPEGImages/b.png /SegmentationClassAug/b.png\n/JPEGImages/a.png /SegmentationClassAug/a.png\n');
    const ds = openVoc(dir, { listFile: 'train_aug.txt' });
    expect(ds.entries.map((e) => e.id)).to.deep.equal(['b', 'a']);
    expect(Array.from((await ds.get(1)).label)).to.deep.equal(Array.from(lbl));
    const all = openVoc(dir, { split: 'all' });
    expect(all.entries.map((e) => e.id)).to.deep.equal(['a', 'b']);
    expect(all.numClasses).to.equal(21);

    const cs = tmp('cs');
    mkdirSync(join(cs, 'img'));
    mkdirSync(join(cs, 'gt'));
    writeFileSync(join(cs, 'img', 'x.png'), encodePng(new Uint8Array(4 * 3), 4, 1));
    writeFileSync(join(cs, 'gt', 'x.png'), grayPng(Uint8Array.from([7, 26, 0, 33]), 4, 1));
    const city = openVoc(cs, { split: 'all', imageDir: 'img', labelDir: 'gt', labelMap: 'cityscapes' });
    expect(city.numClasses).to.equal(19);
    expect(Array.from((await city.get(0)).label)).to.deep.equal([0, 13, 255, 18]);
    expect(cityscapesLabelToTrainId()[24]).to.equal(11);
  });

  describe('bad input: each problem names the file', () => {
    it('a missing, non-directory or empty dataset directory, or missing and empty folders', () => {
      const missing = join(tmpRoot, 'nope');
      expectThrows(() => openVoc(missing), missing, 'does not exist');
      const file = join(tmp('f'), 'file.txt');
      writeFileSync(file, 'x');
      expectThrows(() => openVoc(file), file, 'not a directory');
      const empty = tmp('empty');
      expectThrows(() => openVoc(empty), empty, 'the directory is empty');
      const noImages = tmp('noimg');
      mkdirSync(join(noImages, 'SegmentationClass'));
      expectThrows(() => openVoc(noImages), join(noImages, 'JPEGImages'), 'is missing', 'images');
      mkdirSync(join(noImages, 'JPEGImages'));
      expectThrows(() => openVoc(noImages), join(noImages, 'JPEGImages'), 'is empty');
    });

    it('no list for the split, an empty list, a malformed line, a duplicate', () => {
      const dir = tmp('lists');
      writeVoc(dir, ['a', 'b']);
      expectThrows(() => openVoc(dir, { split: 'val' }), join(dir, 'ImageSets/Segmentation/val.txt'), "split 'val'", 'lists found: train');
      writeFileSync(join(dir, 'ImageSets/Segmentation/val.txt'), '\n\n');
      expectThrows(() => openVoc(dir, { split: 'val' }), 'val.txt', 'the list is empty');
      writeFileSync(join(dir, 'ImageSets/Segmentation/val.txt'), 'a\nb c d\na\n');
      expectThrows(() => openVoc(dir, { split: 'val' }), '2 problems', 'val.txt:2: expected an id', 'got 3 fields', 'val.txt:3', 'listed twice (first at line 1)');
    });

    it('an image without a label and a label without an image', () => {
      const dir = tmp('orphans');
      writeVoc(dir, ['a', 'b', 'c']);
      rmSync(join(dir, 'SegmentationClass', 'b.png'));
      rmSync(join(dir, 'JPEGImages', 'c.png'));
      expectThrows(() => openVoc(dir), '2 problems', `${join(dir, 'JPEGImages', 'b.png')}: image without a label`,
        `${join(dir, 'SegmentationClass', 'c.png')}: label without an image`);
      // Pairing by stem finds orphans on both sides too, listed or not.
      writeFileSync(join(dir, 'SegmentationClass', 'z.png'), encodeIndexedPng(new Uint8Array(4), 2, 2));
      expectThrows(() => openVoc(dir, { split: 'all' }), 'b.png: image without a label', 'c.png: label without an image', 'z.png: label without an image');
    });

    it('label values outside the classes and 255, and a label of another size than its image', () => {
      const dir = tmp('values');
      writeVoc(dir, ['a', 'b', 'c'], 12, 10, { label: (k, y, x) => (k === 1 && y === 2 && x === 3 ? 21 : (k === 2 && x === 0 ? 200 : 255)) });
      expectThrows(() => openVoc(dir), '2 problems', 'b.png: label value 21 at (x 3, y 2) is outside 0..20 and not 255', '1 pixel like that',
        'c.png: label value 200 at (x 0, y 0)', '12 pixels like that');
      expect(openVoc(dir, { numClasses: 201 }).length).to.equal(3);
      writeFileSync(join(dir, 'SegmentationClass', 'a.png'), encodeIndexedPng(new Uint8Array(11 * 12), 11, 12));
      expectThrows(() => openVoc(dir, { numClasses: 201 }), 'a.png: label is 11×12 but its image', 'a.png is 10×12');
    });

    it('corrupt and truncated images and labels, before and after opening', async () => {
      const dir = tmp('corrupt');
      writeVoc(dir, ['a', 'b', 'c', 'd'], 16, 16, { jpg: true });
      const jpgA = join(dir, 'JPEGImages', 'a.jpg');
      const full = readFileSync(jpgA);
      writeFileSync(jpgA, full.subarray(0, full.length - 30));
      writeFileSync(join(dir, 'JPEGImages', 'b.jpg'), 'garbage');
      const lblC = join(dir, 'SegmentationClass', 'c.png');
      const lbl = readFileSync(lblC);
      writeFileSync(lblC, lbl.subarray(0, lbl.length - 16));
      expectThrows(() => openVoc(dir), '3 problems', `${jpgA}: truncated JPEG`, 'b.jpg: not a PNG or JPEG file', `${lblC}: truncated PNG`);
      // Problems that appear after the checks are still reported by name when the sample is read.
      writeFileSync(jpgA, full);
      writeFileSync(join(dir, 'JPEGImages', 'b.jpg'), full);
      writeFileSync(lblC, lbl);
      const ds = openVoc(dir);
      writeFileSync(jpgA, full.subarray(0, 200));
      await expectRejects(ds.get(0), jpgA, 'truncated JPEG');
      expect((await ds.get(1)).h).to.equal(16);
    });
  });

  describe('export refuses to lose data', () => {
    it('an existing split list without --force, a foreign directory, another dataset', async () => {
      const dir = tmp('ex');
      const ds = new ShapesDataset({ split: 'val', length: 2, h: 16, w: 16 });
      await exportVoc(ds, dir, { format: 'png' });
      await expectRejects(exportVoc(ds, dir, { format: 'png' }), 'val.txt already exists', '--force');
      await exportVoc(ds, dir, { format: 'jpg', force: true });
      expect(readdirSync(join(dir, 'JPEGImages')).sort()).to.deep.equal(['val_000000.jpg', 'val_000001.jpg']);
      const foreign = tmp('foreign');
      writeFileSync(join(foreign, 'notes.txt'), 'mine');
      await expectRejects(exportVoc(ds, foreign), foreign, 'not empty', 'not a dataset written by export');
      expect(readFileSync(join(foreign, 'notes.txt'), 'utf8')).to.equal('mine');
      const other = new ShapesDataset({ split: 'train', length: 2, h: 16, w: 16, kinds: ['circle', 'star'] });
      await expectRejects(exportVoc(other, dir), 'holds a dataset with other classes');
      await expectRejects(exportVoc(ds, tmp('c'), { count: 3 }), 'count must be an integer in 1..2');
    });
  });
});

// ---------------------------------------------------------------------------------- command line

describe('data: atrous data command', () => {
  it('exports an embedded dataset in the VOC layout and checks it', async function () {
    this.timeout(60000);
    const dir = join(tmp('cli'), 'out');
    const r = await runCli('data', 'export', '--dataset', 'shapes', '--split', 'train', '--count', '3', '--out', dir, '--seed', '7', '--size', '33x41', '--format', 'png');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('wrote 3 shapes train samples');
    expect(readFileSync(join(dir, 'ImageSets/Segmentation/train.txt'), 'utf8')).to.equal('train_000000\ntrain_000001\ntrain_000002\n');
    const back = openVoc(dir);
    const want = new ShapesDataset({ split: 'train', seed: 7, h: 33, w: 41 }).sample(2);
    expect(Array.from((await back.get(2)).image)).to.deep.equal(Array.from(want.image));
    const c = await runCli('data', 'check', '--dataset', `voc:${dir}`, '--full');
    expect(c.code, c.err).to.equal(0);
    // Three samples do not show every class: each missing one gets a warning (exit status still 0).
    const gen = new ShapesDataset({ split: 'train', seed: 7, h: 33, w: 41 });
    const counts = emptyLabelCounts(7, 3);
    for (let i = 0; i < 3; i++) addLabelCounts(counts, gen.sample(i).label);
    const missing = gen.classNames.filter((_, k) => counts.pixels[k] === 0);
    expect(missing.length).to.be.above(0);
    expect(c.out).to.include(`3 samples, 7 classes, files valid; ${missing.length} warning`);
    expect(c.out.split('\n').filter((l) => l.startsWith('warning: ')).map((l) => /'(\w+)'/.exec(l)![1])).to.deep.equal(missing);
    expect(c.out).to.match(new RegExp(`\\n0 background +${counts.pixels[0]} `));
  });

  it('reports missing options, bad values and bad datasets with a non-zero exit', async () => {
    const x = join(tmpRoot, 'never-written');
    const cases: [string[], string][] = [
      [['data', 'export', '--dataset', 'shapes', '--split', 'train', '--out', x], '--count is required'],
      [['data', 'export', '--dataset', 'shapes', '--split', 'train', '--count', 'two', '--out', x], "--count must be an integer >= 1, got 'two'"],
      [['data', 'export', '--dataset', 'cubes', '--split', 'train', '--count', '1', '--out', x], "unknown dataset 'cubes'"],
      [['data', 'export', '--dataset', 'shapes', '--split', 'test', '--count', '1', '--out', x], "split must be 'train' or 'val', got 'test'"],
      [['data', 'export', '--dataset', 'shapes', '--split', 'val', '--count', '1', '--out', x, '--size', '3x3'], '--size must be at least 8x8'],
      [['data', 'export', '--dataset', 'shapes', '--split', 'val', '--count', '1', '--out', x, '--format', 'gif'], '--format must be jpg or png'],
      [['data', 'export', '--bogus'], "Unknown option '--bogus'"],
      [['data', 'check', '--dataset', `voc:${join(tmpRoot, 'absent')}`], 'does not exist'],
      [['data', 'frobnicate'], "expected a subcommand, export or check, got 'frobnicate'"],
    ];
    for (const [args, msg] of cases) {
      const r = await runCli(...args);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.err, args.join(' ')).to.include(msg);
      expect(r.err).to.match(/^atrous data/);
    }
    expect(existsSync(x)).to.equal(false);
  });
});

// ---------------------------------------------------------------------------------- label counts and label map

describe('data: label counts, warnings and the label map', () => {
  it('counts pixels and images per class and of 255; warns for a class without pixels and for 255 above 50%', () => {
    const c = emptyLabelCounts(3, 2);
    addLabelCounts(c, Uint8Array.from([0, 0, 1, 255, 255, 255, 255, 255, 255, 0]));
    addLabelCounts(c, Uint8Array.from([0, 0, 0, 0, 0, 1, 1, 1, 1, 255]));
    expect(c.pixels).to.deep.equal([8, 5, 0]);
    expect(c.images).to.deep.equal([2, 2, 0]);
    expect([c.ignore, c.ignoreImages, c.total, c.counted, c.of]).to.deep.equal([7, 2, 20, 2, 2]);
    const w = labelWarnings(c, ['bg', 'a', 'b'], 'train');
    expect(w).to.have.length(1);
    expect(w[0]).to.include("class 2 'b' has no labelled pixel in the train split (2 images)");
    expect(w[0]).to.include('255 (ignore) covers 35.0% of the pixels');
    // Two classes present besides 255: not the binary-mask case, so no label map is suggested.
    expect(w[0]).to.not.include('labelMap');
    // 255 on 6 of 10 pixels: above the 50% limit; every class present.
    const d = emptyLabelCounts(2, 5);
    addLabelCounts(d, Uint8Array.from([0, 1, 0, 1, 255, 255, 255, 255, 255, 255]));
    const wd = labelWarnings(d, ['bg', 'a'], 'val');
    expect(wd).to.deep.equal([
      '255 (ignore) covers 60.0% of the pixels in the first 1 of 5 samples of the val split (more than 50.0%): those pixels train nothing; '
      + 'if 255 is a class in these labels, map it with "labelMap" in atrous-dataset.json',
    ]);
    // Exactly half is not above the limit.
    const e = emptyLabelCounts(2, 1);
    addLabelCounts(e, Uint8Array.from([0, 1, 255, 255]));
    expect(labelWarnings(e, ['bg', 'a'], 'train')).to.deep.equal([]);
    expect(formatLabelCounts(c, ['bg', 'a', 'b']).split('\n')).to.deep.equal([
      'class         pixels   share  images',
      '0 bg               8   40.0%       2',
      '1 a                5   25.0%       2',
      '2 b                0    0.0%       0',
      '255 (ignore)       7   35.0%       2',
    ]);
    expect(() => addLabelCounts(c, Uint8Array.from([3]))).to.throw(RangeError, 'label value 3 is outside 0..2 and not 255');
  });

  it('label maps: {"stored value": class} tables, 255 as a target, and errors naming the entry', () => {
    const t = labelMapTable({ 255: 1, 7: 255 }, 2, 'x.json');
    expect([t[0], t[1], t[7], t[200], t[255]]).to.deep.equal([0, 1, 255, 200, 1]);
    expect(describeLabelMap(t)).to.equal('7→255, 255→1');
    expectThrows(() => labelMapTable({ 255: 2 }, 2, 'x.json'), 'x.json', 'maps 255 to 2', 'class index 0..1', 'or 255 (ignore)');
    expectThrows(() => labelMapTable({ 256: 1 }, 2, 'x.json'), '"labelMap" key "256" is not a label value 0..255');
    expectThrows(() => labelMapTable({ a: 1 }, 2, 'x.json'), 'key "a"');
    expectThrows(() => labelMapTable({ 3: 0.5 }, 2, 'x.json'), 'maps 3 to 0.5');
    expectThrows(() => labelMapTable([[255, 1]], 2, 'x.json'), '"labelMap" must be an object');
    expectThrows(() => labelMapTable({}, 2, 'x.json'), '"labelMap" is empty');
  });

  it('a 0/255 binary-mask set: class 1 has no pixel (warning names it and the 255 share); labelMap {"255": 1} gives both', async () => {
    const plain = tmp('bin');
    const { object, total } = writeBinaryMaskVoc(plain);
    expect([object, total]).to.deep.equal([672, 4356]);
    const ds = openVoc(plain);
    expect(ds.labelCounts!.pixels).to.deep.equal([total - object, 0]);
    expect(ds.labelCounts!.ignore).to.equal(object);
    expect(ds.labelCounts!.images).to.deep.equal([4, 0]);
    const w = labelWarnings(await countLabels(ds), ds.classNames, ds.split);
    expect(w).to.have.length(1);
    // 672 / 4356 = 15.43%
    expect(w[0]).to.include("class 1 'object' has no labelled pixel in the train split (4 images)");
    expect(w[0]).to.include('255 (ignore) covers 15.4% of the pixels');
    expect(w[0]).to.include('If 255 marks class 1 (binary masks saved as 0/255), map it in the dataset\'s atrous-dataset.json: "labelMap": {"255": 1}');

    const mapped = tmp('binmap');
    writeBinaryMaskVoc(mapped, { labelMap: { 255: 1 } });
    const dm = openVoc(mapped, { split: 'val' });
    expect(dm.labelCounts!.pixels).to.deep.equal([total - object, object]);
    expect(dm.labelCounts!.ignore).to.equal(0);
    expect(labelWarnings(dm.labelCounts!, dm.classNames, dm.split)).to.deep.equal([]);
    const s = await dm.get(0);
    expect(new Set(s.label)).to.deep.equal(new Set([0, 1]));
    expect(s.label.filter((v) => v === 1).length).to.equal(168);
    // The other way: a value mapped to 255 is ignored, and counted as such.
    writeFileSync(join(mapped, 'atrous-dataset.json'), JSON.stringify({ numClasses: 2, classNames: ['background', 'object'], labelMap: { 0: 255, 255: 1 } }));
    const di = openVoc(mapped);
    expect(di.labelCounts!.pixels).to.deep.equal([0, object]);
    expect(di.labelCounts!.ignore).to.equal(total - object);
    const wi = labelWarnings(di.labelCounts!, di.classNames, di.split);
    expect(wi.map((x) => x.slice(0, 40))).to.deep.equal([
      "class 0 'background' has no labelled pix", '255 (ignore) covers 84.6% of the pixels ',
    ]);
  });

  it('atrous-dataset.json: a labelMap value outside the classes, an unknown key, a map with --cityscapes and export into a mapped set are errors', async () => {
    const dir = tmp('binbad');
    writeBinaryMaskVoc(dir, { labelMap: { 255: 2 } });
    const meta = join(dir, 'atrous-dataset.json');
    expectThrows(() => openVoc(dir), meta, 'maps 255 to 2', 'the dataset has 2 classes');
    writeFileSync(meta, JSON.stringify({ numClasses: 2, label_map: { 255: 1 } }));
    expectThrows(() => openVoc(dir), meta, 'unknown key "label_map"', 'labelMap');
    writeFileSync(meta, JSON.stringify({ numClasses: 2, labelMap: { 255: 1 } }));
    expect(openVoc(dir).classNames).to.deep.equal(['class 0', 'class 1']);
    expectThrows(() => openVoc(dir, { labelMap: 'cityscapes' }), 'has a "labelMap" and a label map was given as well (--cityscapes)');
    // Export writes class indices: into a directory with a map they would be mapped again.
    await expectRejects(exportVoc(new ShapesDataset({ split: 'val', length: 1, h: 16, w: 16, seed: 1 }), dir), meta, 'has a "labelMap"');
    // Without the map the 255 pixels stay ignored.
    writeFileSync(meta, JSON.stringify({ numClasses: 2 }));
    expect(openVoc(dir).labelCounts!.pixels[1]).to.equal(0);
  });

  it('atrous data check prints the counts and warns (exit 0, --strict exit 1); with the map it finds no problem', async () => {
    const plain = tmp('binc');
    writeBinaryMaskVoc(plain);
    const r = await runCli('data', 'check', '--dataset', `voc:${plain}`);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('4 samples, 2 classes, files valid; 1 warning about what the labels train');
    expect(r.out).to.match(/\n0 background +3684 +84\.6% +4\n1 object +0 +0\.0% +0\n255 \(ignore\) +672 +15\.4% +4\n/);
    expect(r.out).to.include("warning: class 1 'object' has no labelled pixel in the train split (4 images)");
    expect(r.out).to.include('255 (ignore) covers 15.4% of the pixels');
    const strict = await runCli('data', 'check', '--dataset', `voc:${plain}`, '--strict');
    expect(strict.code).to.equal(1);
    expect(strict.out).to.include("warning: class 1 'object'");
    expect(strict.err).to.include('1 warning about the labels (--strict)');

    const mapped = tmp('bincm');
    writeBinaryMaskVoc(mapped, { labelMap: { 255: 1 } });
    const m = await runCli('data', 'check', '--dataset', `voc:${mapped}`, '--split', 'val', '--strict');
    expect(m.code, m.err).to.equal(0);
    expect(m.out).to.include('4 samples, 2 classes, no problems found');
    expect(m.out).to.include(`label map (${join(mapped, 'atrous-dataset.json')}): 255→1`);
    expect(m.out).to.match(/\n0 background +3684 +84\.6% +4\n1 object +672 +15\.4% +4\n255 \(ignore\) +0 +0\.0% +0$/);
    expect(m.out).to.not.include('warning');
  });

  it('atrous data check counts a generated dataset over its first --count samples', async () => {
    const r = await runCli('data', 'check', '--dataset', 'shapes', '--split', 'val', '--count', '5');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('label pixels in the first 5 of 200 samples of the val split (5 images, ');
    const ds = new ShapesDataset({ split: 'val' });
    const want = emptyLabelCounts(7, 200);
    for (let i = 0; i < 5; i++) addLabelCounts(want, ds.sample(i).label);
    expect(r.out).to.match(new RegExp(`\\n0 background +${want.pixels[0]} `));
    expect(r.out).to.match(new RegExp(`\\n6 ring +${want.pixels[6]} `));
    const bad = await runCli('data', 'check', '--dataset', 'shapes', '--full');
    expect(bad.code).to.equal(1);
    expect(bad.err).to.include('--full and --cityscapes apply to a dataset directory');
  });
});
