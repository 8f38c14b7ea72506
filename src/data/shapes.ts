// `shapes`: an embedded synthetic segmentation dataset with no dependency at all.
//
// Each image holds 1 to maxObjects objects of SHAPE_KINDS (circle, square, triangle, star, cross,
// ring) on a textured background (gradient, stripes, checker, blotches). Each object has its own
// random size (diameter uniform in 8% to 60% of the smaller image side), position (its centre
// anywhere but the outer 5%, so large objects may leave the frame), rotation, mild aspect stretch and its own colour
// and fill texture; later objects occlude earlier ones.
//
// Two colour regimes. The default (`classColors: true`) gives each class its own hue family (the
// instance's hue within ±20° of the class hue, saturation and brightness drawn per instance, the
// fill textured around it) on backgrounds of low saturation (greys with a faint tint): shape and
// colour both tell the class, as object identity and colour correlate in real scenes, and a
// from-scratch `mini` learns it within the main job's budget on a CPU. `classColors: false` draws
// every colour at random and only asks it to contrast with the background, so the class is carried
// by shape alone: a far harder task (PyTorch's own DeepLabv3 of `mini`'s size stays at background
// after 900 steps), kept for experiments.
// Edges are anti-aliased in the image (2×2 supersampling) while the label takes the pixel centre.
//
// Sample i of split s is a pure function of (seed, s, i): train and val draw from different
// streams, so the held-out split shares no image with the training one. Pure TypeScript: runs in
// browsers too.
import { Sfc32, hashSeed, tagSeed } from './rng.js';
import { checkIndex, type Dataset, type Sample } from './types.js';
import { vocPalette } from './palette.js';
import {
  TEXTURE_KINDS, colorDistance, finishImage, jitterColor, makeTexture, paintTexture, randomColor,
  type RGB, type Texture,
} from './textures.js';

export const SHAPE_KINDS = ['circle', 'square', 'triangle', 'star', 'cross', 'ring'] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

export interface ShapesOptions {
  split?: 'train' | 'val';
  seed?: number;
  /** Number of samples; default 10000 for train, 200 for val (the generator itself is unbounded). */
  length?: number;
  /** Image size; default 129 × 129. */
  h?: number;
  w?: number;
  /** Which kinds appear, in class order after background; default all of SHAPE_KINDS. */
  kinds?: readonly ShapeKind[];
  /** Objects per image are uniform in [1, maxObjects]; default 4. */
  maxObjects?: number;
  /** Object diameter as a fraction of min(h, w), uniform in [minScale, maxScale]; default 0.08..0.6. */
  minScale?: number;
  maxScale?: number;
  /** Class-specific hue families on low-saturation backgrounds (default true); false: random colours. */
  classColors?: boolean;
}

type Pt = [number, number];

/** Polygon outline of a kind in unit coordinates (inside the unit disc), or null for analytic ones. */
function outline(kind: ShapeKind): Pt[] | null {
  const regular = (n: number, r: (k: number) => number): Pt[] =>
    Array.from({ length: n }, (_, k) => {
      const a = Math.PI / 2 + (2 * Math.PI * k) / n;
      return [r(k) * Math.cos(a), r(k) * Math.sin(a)];
    });
  switch (kind) {
    case 'triangle':
      return regular(3, () => 1);
    case 'star':
      return regular(10, (k) => (k % 2 === 0 ? 1 : 0.42));
    default:
      return null;
  }
}

function insidePolygon(poly: Pt[], u: number, v: number): boolean {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [ui, vi] = poly[i];
    const [uj, vj] = poly[j];
    if (vi > v !== vj > v && u < ((uj - ui) * (v - vi)) / (vj - vi) + ui) inside = !inside;
  }
  return inside;
}

/** Membership test of a kind in its unit frame (all kinds fit in the unit disc). */
function shapeTest(kind: ShapeKind): (u: number, v: number) => boolean {
  const poly = outline(kind);
  if (poly) return (u, v) => insidePolygon(poly, u, v);
  switch (kind) {
    case 'circle':
      return (u, v) => u * u + v * v <= 1;
    case 'square':
      // Side 1.4: the square's corners reach the unit circle.
      return (u, v) => Math.abs(u) <= 0.7 && Math.abs(v) <= 0.7;
    case 'cross':
      return (u, v) => {
        const a = Math.abs(u);
        const b = Math.abs(v);
        return (a <= 0.3 && b <= 0.95) || (b <= 0.3 && a <= 0.95);
      };
    case 'ring': {
      return (u, v) => {
        const r2 = u * u + v * v;
        return r2 <= 1 && r2 >= 0.55 * 0.55;
      };
    }
    default:
      throw new Error(`shapes: no test for kind '${kind}'`);
  }
}

/** Pick a fill colour that stands out against both colours of the background (best of 24 tries). */
function contrastingColor(rng: Sfc32, bg: Texture): RGB {
  let best = randomColor(rng);
  let bestD = -1;
  for (let t = 0; t < 24; t++) {
    const c = t === 0 ? best : randomColor(rng);
    const d = Math.min(colorDistance(c, bg.colors[0]), colorDistance(c, bg.colors[1]), colorDistance(c, bg.mean));
    if (d > bestD) {
      best = c;
      bestD = d;
    }
    if (d >= 90) break;
  }
  return best;
}

/** A textured background: a random kind mixing two unrelated colours. */
export function randomBackground(rng: Sfc32, size: number): Texture {
  const kind = rng.pick(TEXTURE_KINDS.filter((k) => k !== 'solid'));
  return makeTexture(rng, kind, randomColor(rng), randomColor(rng), size);
}

/** HSV (h in degrees, s and v in 0..1) to 0..255 RGB. */
export function hsv(h: number, s: number, v: number): RGB {
  h = ((h % 360) + 360) % 360;
  const f = (n: number) => {
    const k = (n + h / 60) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return [f(5), f(3), f(1)];
}

/** A low-saturation background (greys with a faint common tint), any texture kind. */
function greyBackground(rng: Sfc32, size: number): Texture {
  const kind = rng.pick(TEXTURE_KINDS.filter((k) => k !== 'solid'));
  const tint = rng.uniform(0, 360);
  const c = () => hsv(tint, rng.uniform(0, 0.15), rng.uniform(0.15, 0.95));
  return makeTexture(rng, kind, c(), c(), size);
}

/** Hue of class c (0-based) of n: evenly spaced around the colour wheel. */
export function classHue(c: number, n: number): number {
  return (360 * c) / n;
}

/** Render one scene. Exported for tests and for the browser demo; the Dataset wraps it. */
export function renderShapes(rng: Sfc32, h: number, w: number, kinds: readonly ShapeKind[], maxObjects: number,
  minScale: number, maxScale: number, classColors = true): { image: Float32Array; label: Uint8Array } {
  const size = Math.min(h, w);
  const plane = h * w;
  const image = new Float32Array(3 * plane);
  const label = new Uint8Array(plane);
  const bg = classColors ? greyBackground(rng, size) : randomBackground(rng, size);
  paintTexture(image, h, w, bg);
  const px = new Float64Array(3);
  const nObjects = rng.int(1, maxObjects);
  // Supersampling offsets within a pixel (pixel centres are at integer coordinates).
  const sub = [-0.25, 0.25];
  for (let o = 0; o < nObjects; o++) {
    const cls = rng.int(0, kinds.length - 1);
    const test = shapeTest(kinds[cls]);
    // Uniform rather than log-uniform diameters: small objects stay common, large ones are not rare.
    const radius = (rng.uniform(minScale, maxScale) * size) / 2;
    const cx = rng.uniform(0.05 * w, 0.95 * w);
    const cy = rng.uniform(0.05 * h, 0.95 * h);
    const theta = rng.uniform(0, 2 * Math.PI);
    const stretch = Math.sqrt(rng.uniform(0.75, 1.33));
    const ru = radius * stretch;
    const rv = radius / stretch;
    const cos = Math.cos(theta);
    const sin = Math.sin(theta);
    const fillKind = rng.pick(TEXTURE_KINDS);
    let fill: Texture;
    if (classColors) {
      const hue = classHue(cls, kinds.length) + rng.uniform(-20, 20);
      const sat = rng.uniform(0.55, 1);
      const val = rng.uniform(0.55, 1);
      // Texture inside the object varies brightness and saturation, never the hue family.
      fill = makeTexture(rng, fillKind, hsv(hue, sat, val), hsv(hue + rng.uniform(-10, 10), sat * rng.uniform(0.7, 1), val * rng.uniform(0.6, 1)), size);
    } else {
      const base = contrastingColor(rng, bg);
      // The fill's second colour stays near the first: texture inside an object, not a second object.
      fill = makeTexture(rng, fillKind, base, jitterColor(rng, base, 60), size);
    }
    const reach = Math.max(ru, rv) + 1;
    const y0 = Math.max(0, Math.floor(cy - reach));
    const y1 = Math.min(h - 1, Math.ceil(cy + reach));
    const x0 = Math.max(0, Math.floor(cx - reach));
    const x1 = Math.min(w - 1, Math.ceil(cx + reach));
    const inside = (y: number, x: number) => {
      const dx = x - cx;
      const dy = y - cy;
      return test((cos * dx + sin * dy) / ru, (cos * dy - sin * dx) / rv);
    };
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        let cover = 0;
        for (const sy of sub) for (const sx of sub) if (inside(y + sy, x + sx)) cover++;
        const i = y * w + x;
        if (inside(y, x)) label[i] = cls + 1;
        if (cover === 0) continue;
        const a = cover / 4;
        fill.at(y, x, px);
        image[i] += (px[0] - image[i]) * a;
        image[plane + i] += (px[1] - image[plane + i]) * a;
        image[2 * plane + i] += (px[2] - image[2 * plane + i]) * a;
      }
    }
  }
  finishImage(image, rng, rng.uniform(0, 10));
  return { image, label };
}

export class ShapesDataset implements Dataset {
  readonly name = 'shapes';
  readonly split: 'train' | 'val';
  readonly length: number;
  readonly numClasses: number;
  readonly classNames: readonly string[];
  readonly palette = vocPalette();
  readonly seed: number;
  readonly h: number;
  readonly w: number;
  readonly kinds: readonly ShapeKind[];
  readonly maxObjects: number;
  readonly minScale: number;
  readonly maxScale: number;
  readonly classColors: boolean;

  constructor(opts: ShapesOptions = {}) {
    this.split = opts.split ?? 'train';
    if (this.split !== 'train' && this.split !== 'val') {
      throw new Error(`shapes: split must be 'train' or 'val', got '${String(this.split)}'`);
    }
    this.seed = opts.seed ?? 0;
    this.length = opts.length ?? (this.split === 'train' ? 10000 : 200);
    this.h = opts.h ?? 129;
    this.w = opts.w ?? 129;
    this.kinds = opts.kinds ?? SHAPE_KINDS;
    this.maxObjects = opts.maxObjects ?? 4;
    this.minScale = opts.minScale ?? 0.08;
    this.maxScale = opts.maxScale ?? 0.6;
    this.classColors = opts.classColors ?? true;
    const posInt = (v: number) => Number.isInteger(v) && v > 0;
    if (!Number.isInteger(this.seed)) throw new Error(`shapes: seed must be an integer, got ${this.seed}`);
    if (!posInt(this.length)) throw new Error(`shapes: length must be a positive integer, got ${this.length}`);
    if (!posInt(this.h) || !posInt(this.w) || this.h < 8 || this.w < 8) {
      throw new Error(`shapes: image size must be integers >= 8, got ${this.h}×${this.w}`);
    }
    if (!posInt(this.maxObjects)) throw new Error(`shapes: maxObjects must be a positive integer, got ${this.maxObjects}`);
    if (!(this.minScale > 0 && this.minScale <= this.maxScale && this.maxScale <= 2)) {
      throw new Error(`shapes: need 0 < minScale <= maxScale <= 2, got ${this.minScale}..${this.maxScale}`);
    }
    const bad = this.kinds.filter((k) => !SHAPE_KINDS.includes(k));
    if (this.kinds.length === 0 || bad.length || new Set(this.kinds).size !== this.kinds.length) {
      throw new Error(`shapes: kinds must be distinct names from ${SHAPE_KINDS.join(', ')}; got ${this.kinds.join(', ') || '(none)'}`);
    }
    this.numClasses = this.kinds.length + 1;
    this.classNames = ['background', ...this.kinds];
  }

  /** Synchronous generation of sample i (the async `get` wraps it). */
  sample(i: number): Sample {
    checkIndex(this, i);
    const rng = new Sfc32(hashSeed(this.seed, tagSeed('shapes'), tagSeed(this.split), i));
    const { image, label } = renderShapes(rng, this.h, this.w, this.kinds, this.maxObjects, this.minScale, this.maxScale, this.classColors);
    return { image, label, h: this.h, w: this.w, id: `${this.split}_${String(i).padStart(6, '0')}` };
  }

  async get(i: number): Promise<Sample> {
    return this.sample(i);
  }
}
