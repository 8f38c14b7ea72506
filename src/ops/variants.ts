// Kernel variants: the one mechanism by which an op with more than one kernel for the same result
// chooses between them. Each such op declares its variants here (defineVariants) and asks
// `choose()` in its first lines which one runs. The choice, in order:
//   1. force(v) from code (tests, benchmarks);
//   2. the op's environment variable, when it has one (e.g. ATROUS_CONV_VARIANT);
//   3. the op's automatic choice for this engine's adapter: an autotune result (conv2d, settled by
//      `prepareKernels`, which the library's init() runs) or a rule (batch norm).
// 'auto' (or null) un-forces. Every variant of an op computes the same result up to float rounding.

import { engine, type Engine } from '../gpu/engine.js';

/** How the variant in use was chosen. `ms`: measured times per variant (autotuned ops only). */
export interface VariantChoice<V extends string = string> {
  variant: V;
  source: 'forced' | 'env' | 'autotune' | 'cache' | 'default';
  adapter: string;
  ms?: Partial<Record<V, number>>;
  timing?: 'gpu-timestamps' | 'wall-clock';
  /** Why variants were not measured or not eligible. */
  note?: string;
}

/** `C`: what the automatic choice depends on besides the adapter (a shape), when anything. */
export interface VariantSpec<V extends string, C = void> {
  /** The name the registry knows the op's choice by, and the error messages say ('conv2d'). */
  name: string;
  variants: readonly V[];
  /** The function that forces it, as error messages name it (default setKernelVariant('name')). */
  setter?: string;
  /** Environment variable that forces a variant (Node only). */
  env?: string;
  /** Whether this engine's device can run a variant (default: every variant everywhere), and why not. */
  unavailable?: (v: V, e: Engine) => string | null;
  /** The choice when nothing is forced. */
  auto: (e: Engine, ctx: C) => VariantChoice<V>;
  /** Settles `auto` for an engine (an autotune); run by prepareKernels() unless a variant is forced. */
  prepare?: (e: Engine) => Promise<unknown>;
}

export class KernelVariants<V extends string, C = void> {
  private forcedVariant: V | null = null;

  constructor(readonly spec: VariantSpec<V, C>) {}

  /** What force() is called as, for error messages. */
  private get setter(): string {
    return this.spec.setter ?? `setKernelVariant('${this.spec.name}')`;
  }

  get name(): string {
    return this.spec.name;
  }

  get variants(): readonly V[] {
    return this.spec.variants;
  }

  /** Forces a variant for this process (null or 'auto': back to env / automatic). Wins over both. */
  force(v: V | 'auto' | null): void {
    this.forcedVariant = v === null ? null : this.parse(v, this.setter);
  }

  /** The variant forced in code or by the environment (null: automatic). */
  forced(): V | null {
    return this.forcedVariant ?? this.fromEnv();
  }

  /** Whether a variant's kernels can run on this engine's device. */
  available(v: V, e: Engine = engine()): boolean {
    return !this.spec.unavailable?.(v, e);
  }

  /** The variant to run now on this engine (for this shape, when the automatic choice needs one), and why. */
  choose(e: Engine = engine(), ...ctx: C extends void ? [] : [C]): VariantChoice<V> {
    const adapter = e.adapterName;
    if (this.forcedVariant) return { variant: this.check(this.forcedVariant, e, this.setter), source: 'forced', adapter };
    const env = this.fromEnv();
    if (env) return { variant: this.check(env, e, this.spec.env!), source: 'env', adapter };
    return this.spec.auto(e, ctx[0] as C);
  }

  /** Runs the automatic choice's preparation (autotune) unless a variant is forced. */
  async prepare(e: Engine): Promise<void> {
    if (this.forced() || !this.spec.prepare) return;
    await this.spec.prepare(e);
  }

  private parse(v: string, where: string): V | null {
    if (v === '' || v === 'auto') return null;
    if ((this.spec.variants as readonly string[]).includes(v)) return v as V;
    throw new Error(`atrous: ${where} = '${v}' is not a ${this.spec.name} kernel variant (${this.spec.variants.join(', ')} or auto)`);
  }

  private fromEnv(): V | null {
    if (!this.spec.env) return null;
    const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[this.spec.env];
    return v === undefined ? null : this.parse(v.trim().toLowerCase(), this.spec.env);
  }

  private check(v: V, e: Engine, how: string): V {
    const why = this.spec.unavailable?.(v, e);
    if (why) throw new Error(`atrous: ${this.spec.name} variant '${v}' (${how}) ${why}`);
    return v;
  }
}

/** Any op's variants, as the registry holds them. */
type AnyVariants = KernelVariants<string, any>;
const registry = new Map<string, AnyVariants>();

/** Declares an op's kernel variants (once per op, at module load). */
export function defineVariants<V extends string, C = void>(spec: VariantSpec<V, C>): KernelVariants<V, C> {
  if (registry.has(spec.name)) throw new Error(`atrous: internal error: kernel variants '${spec.name}' declared twice`);
  const k = new KernelVariants(spec);
  registry.set(spec.name, k as unknown as AnyVariants);
  return k;
}

/** Every op's kernel variants, by name ('conv2d', 'batchNorm.reduction', ...). */
export function kernelVariants(): AnyVariants[] {
  return [...registry.values()];
}

/** Forces (or with null / 'auto' un-forces) the variant of the op declared as `name`. */
export function setKernelVariant(name: string, v: string | null): void {
  const k = registry.get(name);
  if (!k) throw new Error(`atrous: no kernel variants named '${name}' (${[...registry.keys()].join(', ')})`);
  k.force(v);
}

/** Settles every op's automatic choice for an engine (the conv2d autotune). init() runs it. */
export async function prepareKernels(e: Engine = engine()): Promise<void> {
  for (const k of registry.values()) await k.prepare(e);
}
