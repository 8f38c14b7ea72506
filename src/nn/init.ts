// Parameter initialisation on the CPU, seeded: a parameter's values are a pure function of
// (model seed, parameter name), so two models built with the same seed are identical whatever
// order their modules were created in. Pure TypeScript (no Node built-ins).

/** An initialiser fills a parameter of the given shape from a seeded generator. */
export type Init = (shape: readonly number[], rng: Mulberry32) => Float32Array;

/** mulberry32 uniforms and Box–Muller normals: small, fast and plenty for weight init. */
export class Mulberry32 {
  private s: number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform in [0, 1). */
  uniform(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const u = Math.max(this.uniform(), 1e-12);
    const r = Math.sqrt(-2 * Math.log(u));
    const a = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }
}

/** FNV-1a of the name mixed with the seed: the per-parameter stream. */
export function seedFor(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export const constant = (value: number): Init => (shape) => new Float32Array(numel(shape)).fill(value);

/** He et al. normal init with fan_out = cout·kh·kw, as torchvision's ResNet initialises convs:
 * std = sqrt(2 / fan_out) keeps the backward signal's variance through ReLU layers. */
export const kaimingNormalFanOut: Init = (shape, rng) => {
  const fanOut = shape[0] * (shape[2] ?? 1) * (shape[3] ?? 1);
  const std = Math.sqrt(2 / fanOut);
  const out = new Float32Array(numel(shape));
  for (let i = 0; i < out.length; i++) out[i] = std * rng.normal();
  return out;
};

/** PyTorch's default conv init, weight (kaiming_uniform with a = sqrt(5)) and bias alike:
 * U(−1/sqrt(fan_in), 1/sqrt(fan_in)). */
export const uniformFanIn = (fanIn: number): Init => (shape, rng) => {
  const bound = 1 / Math.sqrt(Math.max(1, fanIn));
  const out = new Float32Array(numel(shape));
  for (let i = 0; i < out.length; i++) out[i] = (2 * rng.uniform() - 1) * bound;
  return out;
};
