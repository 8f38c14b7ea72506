// Procedural textures for the embedded datasets: backgrounds and object fills that vary in colour,
// frequency and orientation from image to image, so that neither colour nor texture alone tells
// the class. Pure TypeScript: runs in browsers too.
import type { Sfc32 } from './rng.js';

export type RGB = [number, number, number];

/** A colour field over image coordinates; `mean` is its average colour (for contrast checks). */
export interface Texture {
  at(y: number, x: number, out: Float64Array): void;
  mean: RGB;
  /** The two colours it mixes (equal for a solid fill). */
  colors: [RGB, RGB];
}

export type TextureKind = 'solid' | 'gradient' | 'stripes' | 'checker' | 'blotches';
export const TEXTURE_KINDS: readonly TextureKind[] = ['solid', 'gradient', 'stripes', 'checker', 'blotches'];

export function randomColor(rng: Sfc32): RGB {
  return [rng.int(0, 255), rng.int(0, 255), rng.int(0, 255)];
}

/** A colour within ±amount of c per channel, clamped to 0..255. */
export function jitterColor(rng: Sfc32, c: RGB, amount: number): RGB {
  const j = (v: number) => Math.min(255, Math.max(0, Math.round(v + rng.uniform(-amount, amount))));
  return [j(c[0]), j(c[1]), j(c[2])];
}

export function colorDistance(a: RGB, b: RGB): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/**
 * A random texture of the given kind mixing c0 and c1. Geometry (angle, period, cell size) is
 * drawn here, scaled to `size` (the image's smaller side) so textures look alike at any resolution.
 */
export function makeTexture(rng: Sfc32, kind: TextureKind, c0: RGB, c1: RGB, size: number): Texture {
  const mean: RGB = kind === 'solid' ? [...c0] : [(c0[0] + c1[0]) / 2, (c0[1] + c1[1]) / 2, (c0[2] + c1[2]) / 2];
  const mix = (t: number, out: Float64Array) => {
    out[0] = c0[0] + (c1[0] - c0[0]) * t;
    out[1] = c0[1] + (c1[1] - c0[1]) * t;
    out[2] = c0[2] + (c1[2] - c0[2]) * t;
  };
  const angle = rng.uniform(0, Math.PI);
  const ca = Math.cos(angle);
  const sa = Math.sin(angle);
  const base = { mean, colors: [c0, c1] as [RGB, RGB] };
  switch (kind) {
    case 'solid':
      return { ...base, at: (_y, _x, out) => mix(0, out) };
    case 'gradient': {
      // A linear ramp across a random direction, spanning 0.5 to 2 image sizes.
      const len = size * rng.uniform(0.5, 2);
      const off = rng.uniform(0, size);
      return { ...base, at: (y, x, out) => mix(Math.min(1, Math.max(0, (x * ca + y * sa - off) / len + 0.5)), out) };
    }
    case 'stripes': {
      // Smooth (sinusoid) or hard stripes, period 3% to 20% of the image.
      const period = size * rng.uniform(0.03, 0.2);
      const hard = rng.chance(0.5);
      const phase = rng.uniform(0, 2 * Math.PI);
      const k = (2 * Math.PI) / period;
      return {
        ...base,
        at: (y, x, out) => {
          const s = Math.sin((x * ca + y * sa) * k + phase);
          mix(hard ? (s > 0 ? 1 : 0) : 0.5 + 0.5 * s, out);
        },
      };
    }
    case 'checker': {
      const cell = size * rng.uniform(0.04, 0.2);
      return {
        ...base,
        at: (y, x, out) => {
          const u = Math.floor((x * ca + y * sa) / cell);
          const v = Math.floor((y * ca - x * sa) / cell);
          mix((u + v) & 1, out);
        },
      };
    }
    case 'blotches': {
      // Value noise: random levels on a coarse grid, bilinearly interpolated.
      const cell = Math.max(2, size * rng.uniform(0.05, 0.3));
      const gw = Math.ceil((2 * size) / cell) + 3;
      const grid = new Float64Array(gw * gw);
      for (let i = 0; i < grid.length; i++) grid[i] = rng.next();
      return {
        ...base,
        at: (y, x, out) => {
          const gy = Math.min(gw - 1.001, Math.max(0, y / cell));
          const gx = Math.min(gw - 1.001, Math.max(0, x / cell));
          const y0 = Math.floor(gy);
          const x0 = Math.floor(gx);
          const fy = gy - y0;
          const fx = gx - x0;
          const i = y0 * gw + x0;
          const top = grid[i] + (grid[i + 1] - grid[i]) * fx;
          const bot = grid[i + gw] + (grid[i + gw + 1] - grid[i + gw]) * fx;
          mix(top + (bot - top) * fy, out);
        },
      };
    }
  }
}

/** Fill a whole CHW RGB image (3 × h × w) with a texture. */
export function paintTexture(image: Float32Array, h: number, w: number, tex: Texture): void {
  const px = new Float64Array(3);
  const plane = h * w;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      tex.at(y, x, px);
      const i = y * w + x;
      image[i] = px[0];
      image[plane + i] = px[1];
      image[2 * plane + i] = px[2];
    }
  }
}

/** Add N(0, sigma²) sensor noise, then round and clamp to the 0..255 integers an 8-bit file holds. */
export function finishImage(image: Float32Array, rng: Sfc32, sigma: number): void {
  for (let i = 0; i < image.length; i++) {
    const v = Math.round(image[i] + (sigma > 0 ? sigma * rng.normal() : 0));
    image[i] = v <= 0 ? 0 : v > 255 ? 255 : v; // `<= 0` also turns -0 into 0
  }
}
