// Seeded pseudo-random numbers for the data pipeline: no Math.random anywhere, so every sample,
// augmentation and shuffle is a pure function of (seed, stream, index) and a resumed run sees the
// same data as an uninterrupted one. Pure TypeScript: runs in browsers too.
//
// Generator: sfc32 (Chris Doty-Humphrey's Small Fast Counting generator, 128-bit state, passes
// PractRand to 2^42+ bytes). Seeds are expanded with splitmix32 so that nearby seeds (0, 1, 2, ...)
// give unrelated streams.

/** 32-bit finaliser of splitmix/murmur3: a bijection on uint32 with good avalanche. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** Hash any number of integers (each taken modulo 2^32, negatives allowed) into one uint32 seed. */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    // Fold in the high bits too, so indices beyond 2^32 still give distinct seeds.
    const lo = p >>> 0;
    const hi = Math.floor(p / 4294967296) >>> 0;
    h = mix32((h ^ lo) + 0x7f4a7c15);
    if (hi !== 0) h = mix32((h ^ hi) + 0x632be5ab);
  }
  return h;
}

/** Hash a short string tag into an integer usable as a hashSeed part (FNV-1a). */
export function tagSeed(tag: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < tag.length; i++) h = Math.imul(h ^ tag.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** JSON-safe generator state: four uint32 words and the cached normal deviate (or null). */
export type RngState = [number, number, number, number, number | null];

export class Sfc32 {
  private a = 0;
  private b = 0;
  private c = 0;
  private d = 0;
  private spare: number | null = null;

  constructor(seed: number = 0) {
    let s = seed >>> 0;
    const next = () => (s = (s + 0x9e3779b9) >>> 0, mix32(s));
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = 1;
    // Discard the first outputs: sfc32 needs a few rounds to decorrelate from the seed.
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A generator for one (seed, ...indices) cell: independent of how many draws others made. */
  static for(...parts: number[]): Sfc32 {
    return new Sfc32(hashSeed(...parts));
  }

  /** The next raw 32-bit output. */
  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Log-uniform in [lo, hi): equal probability per octave, the natural law for object scales. */
  logUniform(lo: number, hi: number): number {
    return lo * Math.exp(Math.log(hi / lo) * this.next());
  }

  /** Integer uniform in [lo, hi] (inclusive both ends). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  /** Standard normal (Marsaglia polar method; the second value is kept for the next call). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * this.next() - 1;
      v = 2 * this.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const f = Math.sqrt((-2 * Math.log(s)) / s);
    this.spare = v * f;
    return u * f;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** Fisher-Yates shuffle in place; returns its argument. */
  shuffle<T extends { length: number; [i: number]: unknown }>(a: T): T {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
    return a;
  }

  /** The generator's state, for checkpoints: restore with Sfc32.fromState. */
  state(): RngState {
    return [this.a, this.b, this.c, this.d, this.spare];
  }

  static fromState(state: readonly unknown[]): Sfc32 {
    const words = state.slice(0, 4);
    const spare = state[4];
    if (state.length !== 5 || !words.every((x) => Number.isInteger(x) && (x as number) >= 0 && (x as number) < 4294967296)
      || !(spare === null || (typeof spare === 'number' && Number.isFinite(spare)))) {
      throw new Error(`Sfc32.fromState: expected [a, b, c, d, spare] with four uint32 words and a number or null, got ${JSON.stringify(state)}`);
    }
    const r = new Sfc32(0);
    [r.a, r.b, r.c, r.d] = words as number[];
    r.spare = spare as number | null;
    return r;
  }
}
