// conv2d's kernel variants and their per-adapter autotune. The choice, in order:
// setConv2dVariant(), env ATROUS_CONV_VARIANT (register | tiled | subgroup | auto), else the
// autotune that the library's init() runs once per process and adapter (through
// prepareKernels(), src/ops/variants.ts): it times the forward kernel of every variant the device
// can run and keeps the fastest, cached in memory by adapter name and, in Node, in the file
// userCachePath(AUTOTUNE_FILE). A variant whose output differs from the register kernel's is not
// eligible. Compile and autotune times on lavapipe: docs/software-gpu.md.

import { engine, type Engine } from '../../gpu/engine.js';
import { readUserCache, writeUserCache, userCachePath } from '../../gpu/device.js';
import { SHADERS } from '../../gpu/shaders.generated.js';
import { empty, tensor } from '../../tensor.js';
import { defineVariants, type VariantChoice } from '../variants.js';
import { conv2dGeometry } from './geometry.js';
import { CONV2D_VARIANTS, packForwardWeight, runForwardKernel, type Conv2dVariant } from './launch.js';

/** How the variant in use was chosen. Times are forward-kernel times per variant, summed over the
 * autotune's shapes (best of its repeats), in ms; variants that could not run are absent. */
export type Conv2dVariantChoice = VariantChoice<Conv2dVariant>;

export const AUTOTUNE_FILE = 'autotune.json';
/** Representative shapes for the autotune: 3×3 convs at rate 1 and 12 (an ASPP branch, scaled
 * down), small enough that the whole autotune is short next to compiling the kernels. */
const TUNE_SHAPES: { n: number; cin: number; h: number; w: number; cout: number; k: number; dil: number }[] = [
  { n: 1, cin: 32, h: 25, w: 25, cout: 64, k: 3, dil: 1 },
  { n: 1, cin: 32, h: 25, w: 25, cout: 64, k: 3, dil: 12 },
];
const TUNE_REPEATS = 2;

const tuned = new Map<string, Conv2dVariantChoice>();

/** conv2d's kernel variants (src/ops/variants.ts): forced, from ATROUS_CONV_VARIANT, or autotuned. */
export const conv2dVariants = defineVariants<Conv2dVariant>({
  name: 'conv2d',
  variants: CONV2D_VARIANTS,
  setter: 'setConv2dVariant()',
  env: 'ATROUS_CONV_VARIANT',
  unavailable: (v, e) =>
    v === 'subgroup' && !e.hasSubgroups
      ? `needs the WebGPU 'subgroups' feature with subgroups of at least 8 invocations, which the device on ${e.adapterName} does not have; use register or tiled`
      : null,
  auto: (e) => tuned.get(e.adapterName) ?? { variant: 'register', source: 'default', adapter: e.adapterName },
  prepare: (e) => autotuneConv2d(e),
});

/** The autotune result cached in memory for an adapter (undefined before it ran). */
export function conv2dAutotuned(adapter: string): Conv2dVariantChoice | undefined {
  return tuned.get(adapter);
}

/** Forgets the in-memory autotune results (tests). */
export function clearConv2dAutotune(): void {
  tuned.clear();
}

/** A hash of the forward kernels' sources (fwd, fwd_tiled, fwd_sg) and the tuning shapes: a cached choice is only valid for
 * the kernels and shapes it timed. */
function kernelsHash(): string {
  let h = 0x811c9dc5;
  const s = `${SHADERS['conv2d.fwd']}\n${SHADERS['conv2d.fwd_tiled']}\n${SHADERS['conv2d.fwd_sg']}\n${JSON.stringify(TUNE_SHAPES)}`;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

interface CacheFile {
  version: 1;
  conv2dForward: Record<string, { variant: Conv2dVariant; kernels: string; ms?: Partial<Record<Conv2dVariant, number>>; timing?: string; note?: string; measured: string }>;
}

async function readCache(): Promise<CacheFile> {
  const text = await readUserCache(AUTOTUNE_FILE);
  try {
    const j = text ? (JSON.parse(text) as CacheFile) : null;
    if (j && j.version === 1 && j.conv2dForward && typeof j.conv2dForward === 'object') return j;
  } catch {
    // A damaged cache file is re-measured and rewritten.
  }
  return { version: 1, conv2dForward: {} };
}

/** Times the available variants' forward kernels (packing excluded) on TUNE_SHAPES, best of the
 * repeats. A variant whose output differs from the register kernel's (beyond float rounding) is
 * not eligible: it is left out of `ms` and named in `note`. */
async function measureVariants(e: Engine): Promise<{ ms: Partial<Record<Conv2dVariant, number>>; timing: 'gpu-timestamps' | 'wall-clock'; note?: string }> {
  const variants = CONV2D_VARIANTS.filter((v) => conv2dVariants.available(v, e));
  const notes: string[] = variants.length < CONV2D_VARIANTS.length ? ['subgroup: the device has no subgroups of at least 8 invocations'] : [];
  const ms: Partial<Record<Conv2dVariant, number>> = {};
  const wrong = new Set<Conv2dVariant>();
  let timing: 'gpu-timestamps' | 'wall-clock' = e.hasTimestamps ? 'gpu-timestamps' : 'wall-clock';
  for (const s of TUNE_SHAPES) {
    const xs = new Float32Array(s.n * s.cin * s.h * s.w).map((_, i) => ((i * 7919) % 101) / 101 - 0.5);
    const ws = new Float32Array(s.cout * s.cin * s.k * s.k).map((_, i) => ((i * 104729) % 97) / 970 - 0.05);
    const x = tensor(xs, [s.n, s.cin, s.h, s.w]);
    const w = tensor(ws, [s.cout, s.cin, s.k, s.k]);
    const pad = (s.dil * (s.k - 1)) >> 1;
    const g = conv2dGeometry(x, w, null, { padding: pad, dilation: s.dil });
    const ys = new Map(variants.map((v) => [v, empty([g.n, g.cout, g.oh, g.ow])]));
    const wp = packForwardWeight(w, null, g);
    try {
      // Warm-up (pipelines compiled, first-touch costs paid) and the check against register.
      for (const v of variants) runForwardKernel(v, x, wp, ys.get(v)!, g);
      const ref = (await ys.get('register')!.data()) as Float32Array;
      const scale = ref.reduce((m, a) => Math.max(m, Math.abs(a)), 0) || 1;
      for (const v of variants) {
        if (v === 'register') continue;
        const got = (await ys.get(v)!.data()) as Float32Array;
        let err = 0;
        for (let i = 0; i < ref.length; i++) err = Math.max(err, Math.abs(got[i] - ref[i]));
        if (!(err <= 1e-4 * scale)) {
          if (!wrong.has(v)) notes.push(`${v}: output differs from register by ${err.toExponential(2)} (not eligible)`);
          wrong.add(v);
        }
      }
      const best: Partial<Record<Conv2dVariant, number>> = {};
      for (let r = 0; r < TUNE_REPEATS; r++) {
        for (const v of variants) {
          const y = ys.get(v)!;
          let t = await e.timeGpu(() => runForwardKernel(v, x, wp, y, g));
          if (t === null || !(t > 0)) {
            timing = 'wall-clock';
            await e.sync();
            const t0 = performance.now();
            runForwardKernel(v, x, wp, y, g);
            await e.sync();
            t = performance.now() - t0;
          }
          best[v] = Math.min(best[v] ?? Infinity, t);
        }
      }
      for (const v of variants) ms[v] = (ms[v] ?? 0) + best[v]!;
    } finally {
      for (const t of [x, w, wp, ...ys.values()]) t.dispose();
    }
  }
  for (const v of wrong) delete ms[v];
  return { ms, timing, note: notes.length ? notes.join('; ') : undefined };
}

/** The fastest measured variant (register when nothing was measured). */
function fastest(ms: Partial<Record<Conv2dVariant, number>>): Conv2dVariant {
  let best: Conv2dVariant = 'register';
  for (const v of CONV2D_VARIANTS) if (ms[v] !== undefined && ms[v]! < (ms[best] ?? Infinity)) best = v;
  return best;
}

/**
 * The per-adapter autotune (init() runs it through prepareKernels()): picks the variant whose
 * forward kernel is fastest on this adapter, from memory, else from the Node cache file (when it
 * was made for the same kernel sources), else by timing every variant the device can run and
 * writing the file. `remeasure` skips both caches. If the timing fails (a compile or
 * GPU error), register is kept, in memory only.
 */
export async function autotuneConv2d(e: Engine = engine(), opts: { remeasure?: boolean } = {}): Promise<Conv2dVariantChoice> {
  const adapter = e.adapterName;
  const known = tuned.get(adapter);
  if (known && !opts.remeasure) return known;
  const hash = kernelsHash();
  if (!opts.remeasure) {
    const hit = (await readCache()).conv2dForward[adapter];
    if (hit && hit.kernels === hash && CONV2D_VARIANTS.includes(hit.variant) && conv2dVariants.available(hit.variant, e)) {
      const c: Conv2dVariantChoice = { variant: hit.variant, source: 'cache', adapter, ms: hit.ms, timing: hit.timing as Conv2dVariantChoice['timing'], note: hit.note };
      tuned.set(adapter, c);
      return c;
    }
  }
  let choice: Conv2dVariantChoice;
  try {
    const { ms, timing, note } = await measureVariants(e);
    choice = { variant: fastest(ms), source: 'autotune', adapter, ms, timing, note };
  } catch (err) {
    // Kept in memory only (the failure may be transient): the next process measures again.
    await e.sync().catch(() => undefined); // clears the engine's pending GPU error
    choice = { variant: 'register', source: 'autotune', adapter, note: `autotune failed, register kept: ${(err as Error).message}` };
    tuned.set(adapter, choice);
    return choice;
  }
  tuned.set(adapter, choice);
  const file = await readCache();
  file.conv2dForward[adapter] = { variant: choice.variant, kernels: hash, ms: choice.ms, timing: choice.timing, note: choice.note, measured: new Date().toISOString() };
  await writeUserCache(AUTOTUNE_FILE, `${JSON.stringify(file, null, 2)}\n`);
  return choice;
}

/** One line for `atrous info`: the variant in use, why, and the measured times. */
export function describeConv2dVariant(c: Conv2dVariantChoice = conv2dVariants.choose()): string {
  if (c.source === 'forced' || c.source === 'env') return `${c.variant} (forced${c.source === 'env' ? ' by ATROUS_CONV_VARIANT' : ''})`;
  if (c.source === 'default') return `${c.variant} (default: not autotuned yet)`;
  const how = c.source === 'cache' ? `autotuned, cached in ${userCachePath(AUTOTUNE_FILE) ?? 'memory'}` : 'autotuned';
  const mine = c.ms?.[c.variant];
  const note = c.note ? `; ${c.note}` : '';
  if (c.ms && mine !== undefined && mine > 0) {
    const others = CONV2D_VARIANTS.filter((v) => v !== c.variant && c.ms![v] !== undefined);
    const faster = others.map((v) => `${(c.ms![v]! / mine).toFixed(1)}× faster than ${v}`).join(', ');
    const times = CONV2D_VARIANTS.filter((v) => c.ms![v] !== undefined).map((v) => `${c.ms![v]!.toFixed(1)} ms ${v}`).join(' vs ');
    return `${c.variant} (${how}: ${faster || 'the only one measured'}; ${times}, ${c.timing ?? 'timed'}${note})`;
  }
  return `${c.variant} (${how}${note})`;
}
