// conv2d with torch.nn.functional.conv2d semantics (groups = 1), forward and backward.
// Kernels: shaders/conv2d.wpack.wgsl + conv2d.fwd.wgsl, conv2d.fwd_tiled.wgsl or conv2d.fwd_sg.wgsl
// (forward, implicit GEMM; three variants, picked per adapter, see "Kernel variants" below),
// conv2d.wpackdx.wgsl + conv2d.dx.wgsl or conv2d.dx_sg.wgsl (backward-data, transposed conv as a
// gather), conv2d.nhwc.wgsl + conv2d.dw.wgsl or conv2d.dw_sg.wgsl (backward-weight, reduction over
// n·oh·ow on channels-last copies of x and dy), conv2d.db.wgsl (bias gradient).
// Each gradient is computed only for the inputs that require one.

import { engine, type Engine } from '../gpu/engine.js';
import { readUserCache, writeUserCache, userCachePath } from '../gpu/device.js';
import { SHADERS } from '../gpu/shaders.generated.js';
import { Tensor, empty, tensor, fmtShape } from '../tensor.js';
import { record } from '../autograd.js';
import { OpError, checkTensor, checkNumber, pair } from './check.js';
import { zeros } from './elementwise.js';

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

/** Everything the kernels need to know about one convolution. */
export interface Conv2dGeometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  dh: number;
  dw: number;
  /** Kernel rows [kyLo, kyHi) and columns [kxLo, kxHi) that touch the input for some output
   * position; every other tap only ever reads padding (exact tap pruning). */
  kyLo: number;
  kyHi: number;
  kxLo: number;
  kxHi: number;
}

const OP = 'conv2d';
/** Register tiles (see the shader headers): forward 16 output channels × 4 columns, backward-data
 * 16 input channels × 4 columns, backward-weight 8 output × 8 input channels. Channel counts are
 * padded to multiples of 4 (one vec4). */
const FWD_CO = 16;
const DX_CI = 16;
const DW_CO = 8;
const DW_CI = 8;
const COLS = 4;
/** Invocations per workgroup of the GEMM kernels: a multiple of lavapipe's 8-wide SIMD. */
const WG_GEMM = 8;
const WG_DB = 64;
/** Tiles of the 'subgroup' kernels (scripts/gen-conv-subgroup.mjs): forward and backward-data
 * 32 pixels × 16 channel groups per workgroup, backward-weight 8 output × 16 input channel groups. */
const SG_PIX = 32;
const SG_GROUPS = 16;
const SG_DW_CO_GROUPS = 8;
const SG_DW_CI_GROUPS = 16;
/** The subgroup forward / backward-data kernels' region tables: at most this many breakpoints per axis. */
const SG_REGION_BREAKS = 16;
const SG_REGION_PRE = Math.ceil(((SG_REGION_BREAKS - 1) ** 2 + 1) / 4) * 4;

/** Breakpoints of one output axis, [0, ..., out]: where a tap starts or stops reading inside the
 * input. Between two of them every position reads inside the input for the same taps. More than
 * the kernel's tables hold (kernels wider than 7) gives one interval, pruned by masks. */
function axisBreaks(stride: number, pad: number, dil: number, size: number, out: number, lo: number, hi: number): number[] {
  const set = new Set<number>([0, out]);
  for (let t = lo; t < hi; t++) {
    const first = Math.max(0, Math.ceil((pad - t * dil) / stride));
    const last = Math.min(out - 1, Math.floor((size - 1 + pad - t * dil) / stride));
    if (first <= last) {
      set.add(first);
      set.add(last + 1);
    }
  }
  const b = [...set].sort((a, c) => a - c);
  return b.length > SG_REGION_BREAKS ? [0, out] : b;
}

/** Breakpoints of one input axis for backward-data, [0, ..., size]: where a tap starts or stops
 * reaching inside dy (i + pad − t·dil in [0, out)). Only for stride 1: a strided axis is split
 * into residue classes of ceil(size / stride) positions, one interval each. */
function axisBreaksDx(stride: number, pad: number, dil: number, size: number, out: number, lo: number, hi: number): number[] {
  if (stride !== 1) return [0, ceilDiv(size, stride)];
  const set = new Set<number>([0, size]);
  for (let t = lo; t < hi; t++) {
    const first = Math.max(0, t * dil - pad);
    const last = Math.min(size - 1, out - 1 + t * dil - pad);
    if (first <= last) {
      set.add(first);
      set.add(last + 1);
    }
  }
  const b = [...set].sort((a, c) => a - c);
  return b.length > SG_REGION_BREAKS ? [0, size] : b;
}

/** The subgroup forward / backward-data kernels' params tail: tiles per image (per class), the
 * region grid, its breakpoints and the regions' tile prefix sums (conv2d.fwd_sg.wgsl). `taps(axis,
 * at)` counts the taps of an axis that read inside for position `at`. Exact regions cost tiles:
 * on a small map (5×5: 9 regions of 1 to 9 pixels, each a 32-pixel tile) they multiply the lanes
 * more than pruning saves, so the cut is used only when it executes fewer lane-taps than one
 * region over the whole map (pruned by the global tap range and per-pixel masks). */
function regionParams(rb: number[], cb: number[], taps: (axis: 0 | 1, at: number) => number, all: [number, number]): number[] {
  const tilesOf = (rows: number[], cols: number[]) => {
    const pre = [0];
    let lanes = 0;
    for (let i = 0; i + 1 < rows.length; i++) {
      for (let j = 0; j + 1 < cols.length; j++) {
        const t = ceilDiv((rows[i + 1] - rows[i]) * (cols[j + 1] - cols[j]), SG_PIX);
        pre.push(pre[pre.length - 1] + t);
        // An uncut axis is pruned by the global tap range only.
        lanes += t * SG_PIX * (rows.length > 2 ? taps(0, rows[i]) : all[0]) * (cols.length > 2 ? taps(1, cols[j]) : all[1]);
      }
    }
    return { pre, lanes };
  };
  let cut = tilesOf(rb, cb);
  const whole = [[0, rb[rb.length - 1]], [0, cb[cb.length - 1]]];
  const one = tilesOf(whole[0], whole[1]);
  if (one.lanes <= cut.lanes) {
    rb = whole[0];
    cb = whole[1];
    cut = one;
  }
  const nr = rb.length - 1;
  const nc = cb.length - 1;
  const padTo = (a: number[], n: number): number[] => [...a, ...new Array<number>(n - a.length).fill(0)];
  return [cut.pre[nr * nc], nr, nc, 0, ...padTo(rb, SG_REGION_BREAKS), ...padTo(cb, SG_REGION_BREAKS), ...padTo(cut.pre, SG_REGION_PRE)];
}

/** Taps t in [lo, hi) with 0 <= o·s − p + t·d < size (forward: output position o). */
const tapsInside = (o: number, s: number, p: number, d: number, size: number, lo: number, hi: number): number => {
  let n = 0;
  for (let t = lo; t < hi; t++) if (o * s - p + t * d >= 0 && o * s - p + t * d < size) n++;
  return n;
};
const forwardRegions = (g: Conv2dGeometry): number[] =>
  regionParams(
    axisBreaks(g.sh, g.ph, g.dh, g.h, g.oh, g.kyLo, g.kyHi),
    axisBreaks(g.sw, g.pw, g.dw, g.w, g.ow, g.kxLo, g.kxHi),
    (axis, o) => (axis === 0 ? tapsInside(o, g.sh, g.ph, g.dh, g.h, g.kyLo, g.kyHi) : tapsInside(o, g.sw, g.pw, g.dw, g.w, g.kxLo, g.kxHi)),
    [g.kyHi - g.kyLo, g.kxHi - g.kxLo],
  );
/** Backward-data (stride 1 on a cut axis): taps t with 0 <= i + p − t·d < out for input position i. */
const backwardDataRegions = (g: Conv2dGeometry): number[] =>
  regionParams(
    axisBreaksDx(g.sh, g.ph, g.dh, g.h, g.oh, g.kyLo, g.kyHi),
    axisBreaksDx(g.sw, g.pw, g.dw, g.w, g.ow, g.kxLo, g.kxHi),
    (axis, i) => (axis === 0 ? tapsInside(i, 1, -g.ph, -g.dh, g.oh, g.kyLo, g.kyHi) : tapsInside(i, 1, -g.pw, -g.dw, g.ow, g.kxLo, g.kxHi)),
    [g.kyHi - g.kyLo, g.kxHi - g.kxLo],
  );

/** The fraction of a subgroup tile's channel slots that hold real channels (c4 vec4 groups in
 * tiles of `tile` groups). Below one half the register kernel, with its smaller tiles, wins:
 * a subgroup tile does ~2.5× the register kernel's useful work per second when full (lavapipe). */
const tileUse = (c4: number, tile: number): number => c4 / (ceilDiv(c4, tile) * tile);
const SG_MIN_USE = 0.5;
/** Which kernel family a pass of this conv runs: the variant's, except that the subgroup kernels
 * fall back to the register ones for channel counts that would leave most of their tile empty. */
function family(variant: Conv2dVariant, pass: 'forward' | 'backward-data' | 'backward-weight', g: Conv2dGeometry): Conv2dVariant {
  if (variant !== 'subgroup') return variant === 'tiled' && pass !== 'forward' ? 'register' : variant;
  const co4 = ceilDiv(g.cout, 4);
  const ci4 = ceilDiv(g.cin, 4);
  const use =
    pass === 'forward' ? tileUse(co4, SG_GROUPS) : pass === 'backward-data' ? tileUse(ci4, SG_GROUPS) : tileUse(co4, SG_DW_CO_GROUPS) * tileUse(ci4, SG_DW_CI_GROUPS);
  return use >= SG_MIN_USE ? 'subgroup' : 'register';
}

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

/** Taps t in [0, k) for which some output o in [0, out) reads input o·s − p + t·d inside [0, size).
 * Returns the smallest range [lo, hi) that holds them all ([0, 0) when none does). */
export function tapRange(k: number, stride: number, pad: number, dil: number, size: number, out: number): [number, number] {
  let lo = -1;
  let hi = -1;
  for (let t = 0; t < k; t++) {
    const first = Math.max(0, Math.ceil((pad - t * dil) / stride));
    const last = Math.min(out - 1, Math.floor((size - 1 + pad - t * dil) / stride));
    if (first <= last) {
      if (lo < 0) lo = t;
      hi = t + 1;
    }
  }
  return lo < 0 ? [0, 0] : [lo, hi];
}

/** Validates the arguments (before any GPU work) and computes the geometry. */
export function conv2dGeometry(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, opts: Conv2dOptions = {}): Conv2dGeometry {
  checkTensor(OP, 'x', x, { rank: 4 });
  checkTensor(OP, 'weight', weight, { rank: 4 });
  const shapes = `x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}`;
  // The shared checks name the op and the option; the shapes are added to say which conv it was.
  const withShapes = <T>(check: () => T): T => {
    try {
      return check();
    } catch (e) {
      throw new OpError(OP, `${(e as Error).message.replace(`atrous: ${OP}: `, '')} (${shapes})`);
    }
  };
  if (opts === null || typeof opts !== 'object') throw new OpError(OP, `options must be an object, got ${JSON.stringify(opts)} (${shapes})`);
  const groups = opts.groups === undefined ? 1 : withShapes(() => checkNumber(OP, 'groups', opts.groups, { integer: true, min: 1 }));
  if (groups !== 1) throw new OpError(OP, `groups = ${groups} is not supported (only groups = 1); ${shapes}`);
  const [sh, sw] = withShapes(() => pair(OP, 'stride', opts.stride, 1, 1));
  const [ph, pw] = withShapes(() => pair(OP, 'padding', opts.padding, 0, 0));
  const [dh, dw] = withShapes(() => pair(OP, 'dilation', opts.dilation, 1, 1));
  const [n, cin, h, w] = x.shape;
  const [cout, wcin, kh, kw] = weight.shape;
  if (wcin !== cin) {
    throw new OpError(OP, `weight ${fmtShape(weight.shape)} expects ${wcin} input channels [cout, cin, kh, kw], but x ${fmtShape(x.shape)} has ${cin} [n, cin, h, w]`);
  }
  if (kh === 0 || kw === 0 || cout === 0) throw new OpError(OP, `weight ${fmtShape(weight.shape)} must have cout, kh and kw >= 1`);
  if (bias !== null && bias !== undefined) {
    checkTensor(OP, 'bias', bias);
    if (bias.rank !== 1 || bias.shape[0] !== cout) {
      throw new OpError(OP, `bias ${fmtShape(bias.shape)} must have shape [${cout}] (cout of weight ${fmtShape(weight.shape)})`);
    }
  }
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  if (oh <= 0 || ow <= 0) {
    throw new OpError(
      OP,
      `output size ${oh}×${ow} is not positive: x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}, ` +
        `stride [${sh}, ${sw}], padding [${ph}, ${pw}], dilation [${dh}, ${dw}] (the dilated kernel is larger than the padded input)`,
    );
  }
  const [kyLo, kyHi] = tapRange(kh, sh, ph, dh, h, oh);
  const [kxLo, kxHi] = tapRange(kw, sw, pw, dw, w, ow);
  return { n, cin, h, w, cout, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, kyLo, kyHi, kxLo, kxHi };
}

/** The parameter block shared by the three GEMM kernels (their Params structs, in order);
 * `tail` fills the per-kernel slots (channel padding, block counts). */
function gemmParams(g: Conv2dGeometry, pad4: number, tail: number[]): number[] {
  return [g.n, g.cin, g.h, g.w, g.cout, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, pad4, g.kyLo, g.kyHi, g.kxLo, g.kxHi, ...tail];
}

/** Workgroups for the row-wise packing kernels: x over `cols` (WG wide), rows folded into y·z
 * (row = wid.y + wid.z·nwg.y) under the per-dimension limit. */
function rowGrid(cols: number, rows: number, wg: number): [number, number, number] {
  const maxWg = engine().limits.maxComputeWorkgroupsPerDimension;
  const y = Math.min(rows, maxWg);
  return [Math.ceil(cols / wg), y, Math.ceil(rows / y)];
}

/** Packs the weight (and bias) for the forward kernels: wp [K + 1, coPad] (conv2d.wpack.wgsl). */
function packForwardWeight(weight: Tensor, bias: Tensor | null, g: Conv2dGeometry): Tensor {
  const e = engine();
  const coPad = ceilDiv(g.cout, 4) * 4;
  const wp = empty([g.kh * g.kw * g.cin + 1, coPad]);
  // Without a bias the weight is bound in its place (never read: hasBias = 0).
  e.run({
    shader: 'conv2d.wpack',
    params: [g.cin, g.cout, g.kh, g.kw, coPad, bias ? 1 : 0],
    bindings: [weight, bias ?? weight, wp],
    workgroups: rowGrid(coPad / 4, g.cin + 1, 64),
  });
  return wp;
}

/** Records the forward GEMM kernel of one variant: y = conv(x, packed weight wp). */
function runForwardKernel(variant: Conv2dVariant, x: Tensor, wp: Tensor, y: Tensor, g: Conv2dGeometry): void {
  const e = engine();
  const coPad4 = ceilDiv(g.cout, 4);
  if (variant === 'tiled') {
    const [gx, gy] = e.grid1d(ceilDiv(g.n * g.oh * g.ow, TILED_PIX), 1);
    e.run({
      shader: 'conv2d.fwd_tiled',
      params: gemmParams(g, coPad4, []),
      bindings: [x, wp, y],
      workgroups: [gx, gy, ceilDiv(g.cout, TILED_CO)],
    });
    return;
  }
  if (variant === 'subgroup') {
    const regions = forwardRegions(g);
    const [gx, gy] = e.grid1d(g.n * regions[0], 1);
    e.run({
      shader: 'conv2d.fwd_sg',
      params: gemmParams(g, coPad4, regions),
      bindings: [x, wp, y],
      workgroups: [gx, gy, ceilDiv(coPad4, SG_GROUPS)],
    });
    return;
  }
  const owBlocks = ceilDiv(g.ow, COLS);
  const [gx, gy] = e.grid1d(g.n * g.oh * owBlocks, WG_GEMM);
  e.run({
    shader: 'conv2d.fwd',
    constants: { WG: WG_GEMM },
    params: gemmParams(g, coPad4, [owBlocks]),
    bindings: [x, wp, y],
    workgroups: [gx, gy, ceilDiv(g.cout, FWD_CO)],
  });
}

/** Forward kernels only (no autograd): y = conv(x, weight) + bias, with the variant that
 * `conv2dVariant()` names (or `variant` when given). */
export function conv2dForward(x: Tensor, weight: Tensor, bias: Tensor | null, g: Conv2dGeometry, variant?: Conv2dVariant): Tensor {
  const y = empty([g.n, g.cout, g.oh, g.ow]);
  if (y.size === 0) return y;
  const wp = packForwardWeight(weight, bias, g);
  runForwardKernel(family(variant ?? conv2dVariant().variant, 'forward', g), x, wp, y, g);
  wp.dispose();
  return y;
}

// ---- Kernel variants ---------------------------------------------------------------------------
// 'register' (conv2d.fwd / dx / dw.wgsl): register blocking, no workgroup memory, no barriers.
// 'tiled' (conv2d.fwd_tiled.wgsl, register backward kernels): classic workgroup-memory tiled
// implicit GEMM, the shape real GPUs favour.
// 'subgroup' (conv2d.fwd_sg / dx_sg / dw_sg.wgsl, generated by scripts/gen-conv-subgroup.mjs):
// register tiles whose weight (or dy) loads are shared through subgroupBroadcast. Fastest on
// lavapipe, where every storage load with a computed address is a per-lane scalar loop with a
// bounds test and a broadcast is a register shuffle. Needs the 'subgroups' device feature and
// subgroups of >= 8 invocations; the autotune checks its output before it can be picked.
// All support everything conv2d supports (groups = 1) and give the same results up to float
// rounding. The choice, in order: setConv2dVariant(), env ATROUS_CONV_VARIANT
// (register | tiled | subgroup | auto), else the per-adapter autotune that init() runs once per
// process (cached in memory by adapter name and, in Node, in the file userCachePath(AUTOTUNE_FILE)).

export type Conv2dVariant = 'register' | 'tiled' | 'subgroup';
export const CONV2D_VARIANTS: readonly Conv2dVariant[] = ['register', 'tiled', 'subgroup'];

/** How the variant in use was chosen. Times are forward-kernel times per variant, summed over the
 * autotune's shapes (best of its repeats), in ms; variants that could not run are absent. */
export interface Conv2dVariantChoice {
  variant: Conv2dVariant;
  source: 'forced' | 'env' | 'autotune' | 'cache' | 'default';
  adapter: string;
  ms?: Partial<Record<Conv2dVariant, number>>;
  timing?: 'gpu-timestamps' | 'wall-clock';
  /** Why variants were not measured or not eligible (no subgroups, a failed check). */
  note?: string;
}

/** Output tile of the tiled kernel: 64 channels × 64 pixels (its header). */
const TILED_CO = 64;
const TILED_PIX = 64;
export const AUTOTUNE_FILE = 'autotune.json';
/** Representative shapes for the autotune: 3×3 convs at rate 1 and 12 (an ASPP branch, scaled
 * down), small enough that the whole autotune takes well under a second on lavapipe. */
const TUNE_SHAPES: { n: number; cin: number; h: number; w: number; cout: number; k: number; dil: number }[] = [
  { n: 1, cin: 32, h: 25, w: 25, cout: 64, k: 3, dil: 1 },
  { n: 1, cin: 32, h: 25, w: 25, cout: 64, k: 3, dil: 12 },
];
const TUNE_REPEATS = 2;

let forcedVariant: Conv2dVariant | null = null;
const tuned = new Map<string, Conv2dVariantChoice>();

function parseVariant(v: string, where: string): Conv2dVariant | null {
  if (v === '' || v === 'auto') return null;
  if ((CONV2D_VARIANTS as readonly string[]).includes(v)) return v as Conv2dVariant;
  throw new Error(`atrous: ${where} = '${v}' is not a conv2d kernel variant (register, tiled, subgroup or auto)`);
}

function envVariant(): Conv2dVariant | null {
  const v = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.ATROUS_CONV_VARIANT;
  return v === undefined ? null : parseVariant(v.trim().toLowerCase(), 'ATROUS_CONV_VARIANT');
}

/** Whether a variant's kernels can be compiled on this engine's device. */
export function conv2dVariantAvailable(v: Conv2dVariant, e: Engine = engine()): boolean {
  return v !== 'subgroup' || e.hasSubgroups;
}

function checkAvailable(v: Conv2dVariant, e: Engine, how: string): Conv2dVariant {
  if (!conv2dVariantAvailable(v, e)) {
    throw new Error(`atrous: conv2d variant '${v}' (${how}) needs the WebGPU 'subgroups' feature with subgroups of at least 8 invocations, which the device on ${e.adapterName} does not have; use register or tiled`);
  }
  return v;
}

/** Forces a variant for this process (null: back to env / autotune). Wins over both. */
export function setConv2dVariant(v: Conv2dVariant | 'auto' | null): void {
  forcedVariant = v === null ? null : parseVariant(v, 'setConv2dVariant()');
}

/** The variant conv2d uses now on the current engine's adapter, and why. */
export function conv2dVariant(e: Engine = engine()): Conv2dVariantChoice {
  const adapter = e.adapterName;
  if (forcedVariant) return { variant: checkAvailable(forcedVariant, e, 'setConv2dVariant()'), source: 'forced', adapter };
  const fromEnv = envVariant();
  if (fromEnv) return { variant: checkAvailable(fromEnv, e, 'ATROUS_CONV_VARIANT'), source: 'env', adapter };
  return tuned.get(adapter) ?? { variant: 'register', source: 'default', adapter };
}

/** The autotune result cached in memory for an adapter (undefined before it ran). */
export function conv2dAutotuned(adapter: string): Conv2dVariantChoice | undefined {
  return tuned.get(adapter);
}

/** Forgets the in-memory autotune results (tests). */
export function clearConv2dAutotune(): void {
  tuned.clear();
}

/** A hash of the two kernels' sources and the tuning shapes: a cached choice is only valid for
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
  const variants = CONV2D_VARIANTS.filter((v) => conv2dVariantAvailable(v, e));
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
 * The per-adapter autotune (init() calls it): picks the variant whose forward kernel is fastest on
 * this adapter, from memory, else from the Node cache file (when it was made for the same kernel
 * sources), else by timing every variant the device can run (well under a second on lavapipe once
 * the kernels are compiled; compiling the subgroup kernel takes ~6 s the first time, Mesa caches it
 * on disk) and writing the file. `remeasure` skips both caches. If the timing fails (a compile or
 * GPU error), register is kept, in memory only.
 */
export async function autotuneConv2d(e: Engine = engine(), opts: { remeasure?: boolean } = {}): Promise<Conv2dVariantChoice> {
  const adapter = e.adapterName;
  const known = tuned.get(adapter);
  if (known && !opts.remeasure) return known;
  const hash = kernelsHash();
  if (!opts.remeasure) {
    const hit = (await readCache()).conv2dForward[adapter];
    if (hit && hit.kernels === hash && CONV2D_VARIANTS.includes(hit.variant) && conv2dVariantAvailable(hit.variant, e)) {
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

/** Called by init(): runs the autotune unless a variant is forced (then nothing needs timing). */
export async function prepareConv2d(e: Engine): Promise<void> {
  if (forcedVariant || envVariant()) return;
  await autotuneConv2d(e);
}

/** One line for `atrous info`: the variant in use, why, and the measured times. */
export function describeConv2dVariant(c: Conv2dVariantChoice = conv2dVariant()): string {
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

/** Backward-data kernels: dx = conv_transpose(dy, weight), shape [n, cin, h, w]; the 'subgroup'
 * variant's kernel when that variant is in use (or `variant` says so). */
export function conv2dBackwardData(dy: Tensor, weight: Tensor, g: Conv2dGeometry, variant?: Conv2dVariant): Tensor {
  const e = engine();
  const dx = empty([g.n, g.cin, g.h, g.w]);
  if (dx.size === 0) return dx;
  const ciPad4 = ceilDiv(g.cin, 4);
  const ciPad = ciPad4 * 4;
  const wq = empty([g.kh * g.kw * g.cout, ciPad]);
  e.run({
    shader: 'conv2d.wpackdx',
    params: [g.cin, g.cout, g.kh, g.kw, ciPad],
    bindings: [weight, wq],
    workgroups: rowGrid(ciPad4, g.cout, 64),
  });
  if (family(variant ?? conv2dVariant().variant, 'backward-data', g) === 'subgroup') {
    const regions = backwardDataRegions(g);
    const [gx, gy] = e.grid1d(g.n * g.sh * g.sw * regions[0], 1);
    e.run({
      shader: 'conv2d.dx_sg',
      constants: { STRIDED: g.sh > 1 || g.sw > 1 ? 1 : 0 },
      params: gemmParams(g, ciPad4, regions),
      bindings: [dy, wq, dx],
      workgroups: [gx, gy, ceilDiv(ciPad4, SG_GROUPS)],
    });
  } else {
    const qBlocks = ceilDiv(ceilDiv(g.w, g.sw), COLS);
    const [gx, gy] = e.grid1d(g.n * g.h * g.sw * qBlocks, WG_GEMM);
    e.run({
      shader: 'conv2d.dx',
      constants: { WG: WG_GEMM },
      params: gemmParams(g, ciPad4, [qBlocks]),
      bindings: [dy, wq, dx],
      workgroups: [gx, gy, ceilDiv(g.cin, DX_CI)],
    });
  }
  wq.dispose();
  return dx;
}

/** NCHW → channels-last [n, h·w, cPad] with the channels zero-padded to a multiple of 4. */
function channelsLast(t: Tensor): Tensor {
  const e = engine();
  const [n, c, h, w] = t.shape;
  const cPad = ceilDiv(c, 4) * 4;
  const out = empty([n, h * w, cPad]);
  e.run({ shader: 'conv2d.nhwc', params: [n, c, h * w, cPad], bindings: [t, out], workgroups: e.grid1d(out.size / 4, 64) });
  return out;
}

/** Backward-weight kernels: dw[co, ci, ky, kx] = Σ dy · im2col(x), shape [cout, cin, kh, kw]; the
 * 'subgroup' variant's kernel when that variant is in use (or `variant` says so) and the channel
 * counts fill at least half its tile (see family()). */
export function conv2dBackwardWeight(x: Tensor, dy: Tensor, g: Conv2dGeometry, variant?: Conv2dVariant): Tensor {
  const e = engine();
  // An empty batch has nothing to sum (and its empty channels-last copies could not be bound
  // as vec4 arrays, whose minimum binding size is 16 bytes).
  if (g.n === 0) return zeros([g.cout, g.cin, g.kh, g.kw]);
  const dw = empty([g.cout, g.cin, g.kh, g.kw]);
  if (dw.size === 0) return dw;
  const xT = channelsLast(x);
  const dyT = channelsLast(dy);
  const ciPad4 = ceilDiv(g.cin, 4);
  if (family(variant ?? conv2dVariant().variant, 'backward-weight', g) === 'subgroup') {
    const ciBlocks = ceilDiv(ciPad4, SG_DW_CI_GROUPS);
    const [gx, gy] = e.grid1d(g.kh * g.kw * ciBlocks, 1);
    e.run({
      shader: 'conv2d.dw_sg',
      params: gemmParams(g, ciBlocks, []),
      bindings: [xT, dyT, dw],
      workgroups: [gx, gy, ceilDiv(ceilDiv(g.cout, 4), SG_DW_CO_GROUPS)],
    });
  } else {
    const ciBlocks = ceilDiv(g.cin, DW_CI);
    const [gx, gy] = e.grid1d(g.kh * g.kw * ciBlocks, WG_GEMM);
    e.run({
      shader: 'conv2d.dw',
      constants: { WG: WG_GEMM },
      params: gemmParams(g, ciBlocks, []),
      bindings: [xT, dyT, dw],
      workgroups: [gx, gy, ceilDiv(g.cout, DW_CO)],
    });
  }
  xT.dispose();
  dyT.dispose();
  return dw;
}

/** Bias gradient: db[co] = Σ_{n, oy, ox} dy[n, co, oy, ox]. */
export function conv2dBackwardBias(dy: Tensor, g: Conv2dGeometry): Tensor {
  const e = engine();
  const db = empty([g.cout]);
  e.run({
    shader: 'conv2d.db',
    constants: { WG: WG_DB },
    params: [g.n, g.cout, g.oh * g.ow],
    bindings: [dy, db],
    workgroups: [g.cout],
  });
  return db;
}

/**
 * 2-D convolution, torch.nn.functional.conv2d semantics with groups = 1.
 * x [n, cin, h, w], weight [cout, cin, kh, kw] (PyTorch layout), bias [cout] or null;
 * returns [n, cout, oh, ow] with oh = floor((h + 2·padH − dilH·(kh − 1) − 1) / strideH) + 1.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const b = bias ?? null;
  const g = conv2dGeometry(x, weight, b, opts);
  const y = conv2dForward(x, weight, b, g);
  const inputs = b ? [x, weight, b] : [x, weight];
  // Save only what the needed gradients read: dx needs the weight, dw needs x.
  const needX = x.requiresGrad;
  const needW = weight.requiresGrad;
  const saved = [...(needW ? [x] : []), ...(needX ? [weight] : [])];
  return record(OP, y, inputs, saved, (dy, s, needs) => {
    const xs = needW ? s[0] : null;
    const ws = needX ? s[needW ? 1 : 0] : null;
    return [
      needs[0] && ws ? conv2dBackwardData(dy, ws, g) : null,
      needs[1] && xs ? conv2dBackwardWeight(xs, dy, g) : null,
      ...(b ? [needs[2] ? conv2dBackwardBias(dy, g) : null] : []),
    ];
  });
}
