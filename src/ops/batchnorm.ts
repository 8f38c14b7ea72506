// Batch normalisation with torch.nn.functional.batch_norm semantics, on x [n, c, h, w] or [n, c],
// per channel over the M = n·h·w values of the channel.
// - training: normalise with the batch mean and the biased batch variance, and (when running
//   statistics are given) update them in place on the GPU: rm ← (1 − momentum)·rm + momentum·mean,
//   rv ← (1 − momentum)·rv + momentum·var·M/(M − 1). Backward goes through the batch statistics.
// - eval, and "frozen" (eval statistics inside a network that trains): normalise with the running
//   statistics, which backward treats as constants; weight and bias still get gradients.
// M == 1 in training (batch 1 on a 1×1 map, DeepLab's image-pooling branch) raises in PyTorch; here
// it is defined and never NaN: the batch variance is 0, so y = bias, dx = 0, dweight = 0,
// dbias = Σdy; running_mean is updated and running_var left unchanged (the unbiased variance of
// one value is undefined). eps must be > 0, so 1/sqrt(var + eps) is always finite.
// Statistics are two-pass per slice and combined pairwise (shaders/batchnorm.stats.wgsl,
// batchnorm.final.wgsl); the mean is carried as two floats (hi, lo) so that x = 1000 + 0.01·noise
// normalises to full f32 precision. Saved for backward: x, mean [2, c] (hi, lo), invstd [c], weight.
// Kernels: shaders/batchnorm.*.wgsl. Each reduction has a workgroup-tree entry (real GPUs) and a
// one-invocation-per-slice entry (software adapters, where barriers are slow); each element-wise
// kernel a per-plane entry (no division per element) and a flat one (small planes). Both give the
// same results. Which runs is a kernel variant choice (src/ops/variants.ts): 'batchNorm.reduction'
// (tree | lanes; automatic: lanes on software adapters) and 'batchNorm.elementwise' (planes | flat;
// automatic: planes for planes of 32+ values), which tests and benchmarks can force.

import { engine, type Engine, type ShaderParams } from '../gpu/engine.js';
import { isSoftwareAdapter } from '../gpu/device.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record } from '../autograd.js';
import { checkTensor, checkNumber, OpError } from './check.js';
import { full, zeros } from './elementwise.js';
import { defineVariants } from './variants.js';
import { runPlanes, planeRange, type PlaneKind, type PlanePart } from './split.js';

export interface BatchNormOptions {
  training: boolean;
  /** Weight of the new batch statistic in the running average (default 0.1; DeepLab's decay
   * 0.9997 is momentum 0.0003). */
  momentum?: number;
  /** Added to the variance before the square root (default 1e-5); must be > 0. */
  eps?: number;
}

const OP = 'batchNorm';

const softwareAdapter = (e: Engine): boolean => isSoftwareAdapter(e.info);

/** The reductions' entry point: 'tree' (a workgroup per slice) or 'lanes' (an invocation per slice,
 * for software adapters, where barriers are slow). */
export const batchNormReductionVariants = defineVariants<'tree' | 'lanes'>({
  name: 'batchNorm.reduction',
  variants: ['tree', 'lanes'],
  auto: (e) => ({ variant: softwareAdapter(e) ? 'lanes' : 'tree', source: 'default', adapter: e.adapterName }),
});

/** The element-wise kernels' entry point: 'planes' (workgroups [gx, c, n], each striding over one
 * plane) or 'flat' (grid1d); automatically planes for planes of 32+ values. */
export const batchNormElementwiseVariants = defineVariants<'planes' | 'flat', { hw: number }>({
  name: 'batchNorm.elementwise',
  variants: ['planes', 'flat'],
  auto: (e, { hw }) => ({ variant: hw >= 32 ? 'planes' : 'flat', source: 'default', adapter: e.adapterName }),
});

// Workgroup width of the tree reductions (a power of two) and of every other kernel.
const TREE_WG = 128;
const WG = 64;

type Reduction = 'batchnorm.stats' | 'batchnorm.dsum';
type Elementwise = 'batchnorm.fwd' | 'batchnorm.dx' | 'batchnorm.dx_eval' | 'gap.dx';

type ReductionVariant = 'tree' | 'lanes';
type ElementwiseVariant = 'planes' | 'flat';

type ReductionParams = { c: number; hw: number; m: number; chunk: number; s: number; q: number };

/** Runs a per-(slice, channel) reduction kernel: `tree` (one workgroup per slice) or `lanes`.
 * `images` leading bindings are [n, c, hw] tensors (the others are per-channel). Above the binding
 * limit the slices are pieces of one plane (q > 0, see slicing()) and the launch runs per block of
 * images, of channels of one image, or per piece of one plane (runPlanes). */
function runReduction<S extends Reduction>(variant: ReductionVariant, shader: S, params: ReductionParams, bindings: Tensor[], images: number, n: number): void {
  const e = engine();
  const { c, hw, q } = params;
  const kinds = bindings.map((_, i) => (i < images ? 'plane' : 'whole') as PlaneKind);
  runPlanes(OP, n, c, hw, bindings, kinds, (bs, offs, part) => {
    if (images > 1 && offs[1] !== offs[0]) throw new Error(`atrous: internal error: ${shader} split with unequal offsets`);
    const whole = part.n === n && part.cb === c && part.len === hw;
    if (!whole && (q === 0 || (part.len !== hw && part.len > params.chunk) || (part.len === hw && params.chunk !== hw))) {
      throw new Error(`atrous: internal error: ${shader} split with slices that are not pieces of one plane`);
    }
    // Slices of this launch: every piece of the part's images, or the one piece of a position range.
    const s0 = whole ? 0 : part.n0 * q + part.p0 / params.chunk;
    const sn = whole ? params.s : part.len === hw ? part.n * q : 1;
    const full = { ...params, s0, sn, n0: part.n0, c0: part.c0, cb: part.cb, p0: part.p0, xoff: offs[0] } as ShaderParams[S];
    if (variant === 'lanes') e.run({ shader, entry: 'lanes', constants: { WG }, params: full, bindings: bs, workgroups: e.grid1d(part.cb * sn, WG) });
    else e.run({ shader, entry: 'tree', constants: { WG: TREE_WG }, params: full, bindings: bs, workgroups: [sn, part.cb] });
  });
}

/** Runs an element-wise kernel over [n, c, hw] tensors: the `planes` entry (workgroups
 * [gx, cb, n], each striding over one plane) when that variant is chosen and the part fits a
 * dispatch, else the flat `main` entry (grid1d). `kinds` lays out the bindings (runPlanes); above
 * the binding limit the launch runs per part, and `params` gets the offsets and the part. */
export function runElementwise<S extends Elementwise>(
  variant: ElementwiseVariant,
  shader: S,
  params: (offs: number[], part: PlanePart) => ShaderParams[S],
  bindings: Tensor[],
  kinds: PlaneKind[],
  n: number,
  c: number,
  hw: number,
): void {
  const e = engine();
  const maxWg = e.limits.maxComputeWorkgroupsPerDimension;
  runPlanes(OP, n, c, hw, bindings, kinds, (bs, offs, part) => {
    const { n: k, cb, len } = part;
    if (variant === 'planes' && k <= maxWg && cb <= maxWg) {
      // About 8 values per invocation: fewer, longer workgroups are cheaper on llvmpipe.
      const gx = Math.min(maxWg, Math.max(1, Math.ceil(len / (WG * 8))));
      e.run({ shader, entry: 'planes', params: params(offs, part), bindings: bs, workgroups: [gx, cb, k] });
    } else {
      e.run({ shader, params: params(offs, part), bindings: bs, workgroups: e.grid1d(k * cb * len, WG) });
    }
  });
}

/** Splits a channel's m values into s non-empty slices of `chunk` (the last may be shorter): a
 * channel that is long while there are few channels spreads over several workgroups. Above the
 * binding limit every slice lies inside one plane: q pieces of `chunk` per plane (runPlanes's
 * position ranges, or q = 1 whole planes), s = n·q; else q = 0 (uniform chunks across images). */
function slicing(m: number, c: number, x: Tensor): { s: number; chunk: number; q: number } {
  if (x.byteLength > engine().limits.maxStorageBufferBindingSize) {
    const hw = x.rank === 4 ? x.shape[2] * x.shape[3] : 1;
    const chunk = planeRange(hw);
    const q = Math.ceil(hw / chunk);
    return { s: x.shape[0] * q, chunk, q };
  }
  const want = Math.max(1, Math.min(Math.ceil(m / 2048), Math.ceil(256 / c)));
  const chunk = Math.ceil(m / want);
  return { s: Math.ceil(m / chunk), chunk, q: 0 };
}

function checkChannelVector(arg: string, t: Tensor | null, c: number, x: Tensor): void {
  if (t === null) return;
  checkTensor(OP, arg, t);
  if (t.rank !== 1 || t.shape[0] !== c) {
    throw new OpError(OP, `argument '${arg}' must have shape [c] = [${c}] for x of shape ${fmtShape(x.shape)}, got ${fmtShape(t.shape)}`);
  }
}

/** Per-channel Σdy and Σ(dy·xhat) (dbias, dweight) for backward. */
function gradSums(reduction: ReductionVariant, dy: Tensor, x: Tensor, mean: Tensor, invstd: Tensor, c: number, hw: number, m: number): [Tensor, Tensor] {
  const e = engine();
  const { s, chunk, q } = slicing(m, c, x);
  const part = empty([c, s, 2]);
  runReduction(reduction, 'batchnorm.dsum', { c, hw, m, chunk, s, q }, [dy, x, mean, invstd, part], 2, x.shape[0]);
  const dbias = empty([c]);
  const dweight = empty([c]);
  e.run({ shader: 'batchnorm.dfinal', params: { c, s }, bindings: [part, dbias, dweight], workgroups: e.grid1d(c) });
  part.dispose();
  return [dbias, dweight];
}

/** y = (x − mean)/sqrt(var + eps)·weight + bias per channel; see the module comment for the modes.
 * weight/bias null mean 1/0; runningMean/runningVar may be null in training only. */
export function batchNorm(
  x: Tensor,
  weight: Tensor | null,
  bias: Tensor | null,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  opts: BatchNormOptions,
): Tensor {
  checkTensor(OP, 'x', x);
  if (x.rank !== 4 && x.rank !== 2) {
    throw new OpError(OP, `argument 'x' must have rank 4 [n, c, h, w] or rank 2 [n, c], got shape ${fmtShape(x.shape)}`);
  }
  if (typeof opts !== 'object' || opts === null || typeof opts.training !== 'boolean') {
    throw new OpError(OP, `'opts.training' must be true or false, got ${JSON.stringify(opts?.training)}`);
  }
  const training = opts.training;
  const momentum = checkNumber(OP, 'momentum', opts.momentum ?? 0.1, { min: 0, max: 1 });
  const eps = opts.eps ?? 1e-5;
  if (typeof eps !== 'number' || !Number.isFinite(eps) || eps <= 0) {
    throw new OpError(OP, `'eps' must be a finite number > 0, got ${JSON.stringify(eps)}`);
  }
  const [n, c] = x.shape;
  const hw = x.rank === 4 ? x.shape[2] * x.shape[3] : 1;
  const m = n * hw;
  checkChannelVector('weight', weight, c, x);
  checkChannelVector('bias', bias, c, x);
  checkChannelVector('runningMean', runningMean, c, x);
  checkChannelVector('runningVar', runningVar, c, x);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new OpError(OP, `'runningMean' and 'runningVar' must both be given or both be null, got ${runningMean === null ? 'only runningVar' : 'only runningMean'}`);
  }
  if (!training && (runningMean === null || runningVar === null)) {
    throw new OpError(OP, `eval mode (training: false) normalises with the running statistics: 'runningMean' and 'runningVar' must be given, got null`);
  }
  if (runningMean && runningVar && runningMean.sharesStorage(runningVar)) {
    throw new OpError(OP, `'runningMean' and 'runningVar' must be different tensors (they share storage), both of shape ${fmtShape(runningMean.shape)}`);
  }
  const e = engine();
  // Kernel variants (src/ops/variants.ts): reductions tree | lanes (lanes on software adapters),
  // element-wise planes | flat (planes for planes of 32+ values).
  const reduction = batchNormReductionVariants.choose(e).variant;
  const elementwise = batchNormElementwiseVariants.choose(e, { hw }).variant;
  if (training) {
    if (m === 0) throw new OpError(OP, `training mode needs at least one value per channel, got x of shape ${fmtShape(x.shape)}`);
    const maxWg = e.limits.maxComputeWorkgroupsPerDimension;
    if (c > maxWg) throw new OpError(OP, `training mode supports at most ${maxWg} channels (one row of workgroups each), got x of shape ${fmtShape(x.shape)}`);
  }

  const w = weight ?? full([c], 1);
  const b = bias ?? zeros([c]);
  const mean = empty([2, c]);
  const invstd = empty([c]);
  if (training) {
    const { s, chunk, q } = slicing(m, c, x);
    const part = empty([c, s, 3]);
    runReduction(reduction, 'batchnorm.stats', { c, hw, m, chunk, s, q }, [x, part], 1, n);
    const params = { c, m, hw, chunk, s, q, eps, momentum };
    if (runningMean && runningVar) {
      e.run({ shader: 'batchnorm.final', entry: 'running', params, bindings: [part, mean, invstd, runningMean, runningVar], workgroups: e.grid1d(c) });
    } else {
      e.run({ shader: 'batchnorm.final', params, bindings: [part, mean, invstd], workgroups: e.grid1d(c) });
    }
    part.dispose();
  } else {
    e.run({ shader: 'batchnorm.evalstats', params: { c, eps }, bindings: [runningMean!, runningVar!, mean, invstd], workgroups: e.grid1d(c) });
  }
  const y = empty(x.shape);
  runElementwise(elementwise, 'batchnorm.fwd', ([off], pt) => ({ total: pt.n * pt.cb * pt.len, c, cb: pt.cb, c0: pt.c0, hw: pt.len, off }), [x, mean, invstd, w, b, y], ['plane', 'whole', 'whole', 'whole', 'whole', 'plane'], n, c, hw);
  if (!bias) b.dispose();

  const inputs = [x];
  if (weight) inputs.push(weight);
  if (bias) inputs.push(bias);
  // Eval backward reads x only for dweight/dbias; frozen affine parameters need no copy of x kept.
  const keepX = training || !!weight?.requiresGrad || !!bias?.requiresGrad;
  const saved = keepX ? [mean, invstd, w, x] : [mean, invstd, w];
  const out = record(OP, y, inputs, saved, (dy, sv, needs) => {
    const [sMean, sInvstd, sW, sX] = sv;
    const needX = needs[0];
    const needW = weight !== null && needs[1];
    const needB = bias !== null && needs[weight ? 2 : 1];
    let dbias: Tensor | null = null;
    let dweight: Tensor | null = null;
    if ((training && needX) || needW || needB) [dbias, dweight] = gradSums(reduction, dy, sX, sMean, sInvstd, c, hw, m);
    let dx: Tensor | null = null;
    if (needX) {
      dx = empty(x.shape);
      if (training) {
        runElementwise(elementwise, 'batchnorm.dx', ([off], pt) => ({ total: pt.n * pt.cb * pt.len, c, cb: pt.cb, c0: pt.c0, hw: pt.len, m, off }), [dy, sX, sMean, sInvstd, sW, dbias!, dweight!, dx], ['plane', 'plane', 'whole', 'whole', 'whole', 'whole', 'whole', 'plane'], n, c, hw);
      } else {
        runElementwise(elementwise, 'batchnorm.dx_eval', ([off], pt) => ({ total: pt.n * pt.cb * pt.len, c, cb: pt.cb, c0: pt.c0, hw: pt.len, off }), [dy, sInvstd, sW, dx], ['plane', 'whole', 'whole', 'plane'], n, c, hw);
      }
    }
    if (!needW) dweight?.dispose();
    if (!needB) dbias?.dispose();
    const grads: (Tensor | null)[] = [dx];
    if (weight) grads.push(needW ? dweight : null);
    if (bias) grads.push(needB ? dbias : null);
    return grads;
  });
  mean.dispose();
  invstd.dispose();
  if (!weight) w.dispose();
  return out;
}
