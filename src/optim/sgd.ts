// Stochastic gradient descent with momentum, weight decay and Nesterov, exactly torch.optim.SGD.
// One in-place kernel per parameter (shaders/sgd.wgsl); parameters keep their buffers.

import { engine } from '../gpu/engine.js';
import { Tensor, empty, tensor, fmtShape } from '../tensor.js';
import { keep } from '../scope.js';
import { zeroGrad } from '../autograd.js';
import { checkNumber, OpError } from '../ops/check.js';
import { vec4Binding } from '../ops/activation.js';
import { runFlat } from '../ops/split.js';

/** Parameters that share a learning-rate multiplier (torch.optim.SGD's param groups, with the
 * group's lr given relative to the optimizer's, as mmseg's lr_mult). */
export interface ParamGroup {
  params: Tensor[];
  /** The group trains at lr × lrMult (default 1; 0 leaves its parameters unchanged). May be
   * changed between steps through `paramGroups`. */
  lrMult?: number;
}

export interface SGDOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  dampening?: number;
  nesterov?: boolean;
}

/**
 * torch.optim.SGD: d = grad + weightDecay * p; with momentum, buf = d on a parameter's first step,
 * then buf = momentum * buf + (1 - dampening) * d, and d = nesterov ? d + momentum * buf : buf;
 * finally p -= lr * d, in place. Parameters whose .grad is null are skipped (their momentum buffer
 * starts at their first real step, as in PyTorch). `lr` may be changed between steps (polyLR).
 * The momentum buffers are GPU tensors owned by the optimizer, outside every scope: dispose() frees them.
 * `params` is a list of tensors (one group) or of groups {params, lrMult}: a group's parameters
 * are updated with lr × lrMult (with lrMult 1 exactly as without groups).
 */
export class SGD {
  /** Every parameter, group after group. */
  readonly params: readonly Tensor[];
  /** The groups, in the order given (one group of every parameter when a plain list was given). */
  readonly paramGroups: { readonly params: readonly Tensor[]; lrMult: number }[];
  lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  private buffers = new Map<Tensor, Tensor>();
  private disposed = false;

  constructor(paramsOrGroups: Tensor[] | ParamGroup[], opts: SGDOptions) {
    if (!Array.isArray(paramsOrGroups)) throw new OpError('SGD', `'params' must be an array of tensors or of groups {params, lrMult}, got ${typeof paramsOrGroups}`);
    const isGroups = paramsOrGroups.length > 0 && !(paramsOrGroups[0] instanceof Tensor) && paramsOrGroups[0] !== null && typeof paramsOrGroups[0] === 'object' && 'params' in paramsOrGroups[0];
    const groups: ParamGroup[] = isGroups ? (paramsOrGroups as ParamGroup[]) : [{ params: paramsOrGroups as Tensor[] }];
    groups.forEach((g, j) => {
      if (!g || typeof g !== 'object' || !Array.isArray(g.params)) throw new OpError('SGD', `param group ${j} must be {params: Tensor[], lrMult?}, got ${g instanceof Tensor ? 'a Tensor' : JSON.stringify(g)}`);
      if (g.lrMult !== undefined) checkNumber('SGD', `param group ${j} lrMult`, g.lrMult, { min: 0 });
    });
    const params = groups.flatMap((g) => g.params);
    const seen = new Set<Tensor>();
    params.forEach((p, i) => {
      if (!(p instanceof Tensor)) throw new OpError('SGD', `params[${i}] must be a Tensor, got ${p === null ? 'null' : typeof p}`);
      if (p.dtype !== 'f32') throw new OpError('SGD', `params[${i}] must be f32, got ${p.dtype} (shape ${fmtShape(p.shape)})`);
      if (p.disposed) throw new OpError('SGD', `params[${i}] (shape ${fmtShape(p.shape)}) was disposed`);
      if (p.node) throw new OpError('SGD', `params[${i}] (shape ${fmtShape(p.shape)}) is the result of an op, not a leaf parameter`);
      if (seen.has(p)) throw new OpError('SGD', `params[${i}] (shape ${fmtShape(p.shape)}) appears more than once`);
      seen.add(p);
    });
    if (!opts || typeof opts !== 'object') throw new OpError('SGD', `'opts' must be an object {lr, momentum?, ...}, got ${JSON.stringify(opts)}`);
    this.lr = checkNumber('SGD', 'lr', opts.lr, { min: 0 });
    this.momentum = checkNumber('SGD', 'momentum', opts.momentum ?? 0, { min: 0 });
    this.weightDecay = checkNumber('SGD', 'weightDecay', opts.weightDecay ?? 0, { min: 0 });
    this.dampening = checkNumber('SGD', 'dampening', opts.dampening ?? 0);
    const nesterov = opts.nesterov ?? false;
    if (typeof nesterov !== 'boolean') throw new OpError('SGD', `'nesterov' must be a boolean, got ${JSON.stringify(nesterov)}`);
    if (nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new OpError('SGD', `nesterov needs momentum > 0 and dampening 0 (as in PyTorch), got momentum ${this.momentum}, dampening ${this.dampening}`);
    }
    this.nesterov = nesterov;
    this.params = [...params];
    this.paramGroups = groups.map((g) => ({ params: [...g.params], lrMult: g.lrMult ?? 1 }));
  }

  /** Updates every parameter that has a gradient, in place (records GPU work; nothing is awaited). */
  step(): void {
    if (this.disposed) throw new OpError('SGD', 'step() after dispose()');
    const lr = checkNumber('SGD', 'lr', this.lr, { min: 0 });
    // Validate everything before recording any update: a bad gradient must not leave half a step.
    this.params.forEach((p, i) => {
      if (p.disposed) throw new OpError('SGD', `params[${i}] (shape ${fmtShape(p.shape)}) was disposed`);
      const g = p.grad;
      if (g && (g.disposed || g.dtype !== 'f32' || g.rank !== p.rank || g.shape.some((d, j) => d !== p.shape[j]))) {
        throw new OpError('SGD', `params[${i}] ${fmtShape(p.shape)} has a gradient of shape ${fmtShape(g.shape)} (${g.dtype}${g.disposed ? ', disposed' : ''})`);
      }
    });
    const mults = this.paramGroups.map((gr, j) => checkNumber('SGD', `param group ${j} lrMult`, gr.lrMult, { min: 0 }));
    const e = engine();
    for (let j = 0; j < this.paramGroups.length; j++) for (const p of this.paramGroups[j].params) {
      const g = p.grad;
      if (!g || p.size === 0) continue;
      const n4 = Math.ceil(p.size / 4);
      // lr × 1 is lr exactly: one group updates bit for bit as before groups existed.
      const params = { n4, lr: mults[j] === 1 ? lr : lr * mults[j], momentum: this.momentum, dampening: this.dampening, weightDecay: this.weightDecay, nesterov: this.nesterov ? 1 : 0 };
      if (this.momentum === 0) {
        runFlat(n4, [vec4Binding(g), vec4Binding(p)], [16, 16], (bindings, _, k) =>
          e.run({ shader: 'sgd', entry: 'plain', params: { ...params, n4: k, first: 0 }, bindings, workgroups: e.grid1d(k), ...(k === n4 ? { uniformSlot: p } : {}) }));
        continue;
      }
      let buf = this.buffers.get(p);
      const first = buf ? 0 : 1;
      if (!buf) {
        buf = keep(empty(p.shape)).setCategory('optimizer');
        buf.label = `${p.label ?? 'param'}.momentum_buffer`;
        this.buffers.set(p, buf);
      }
      // uniformSlot: the lr changes every step (poly schedule); an unsplit launch has one uniform
      // buffer per parameter, rewritten in place.
      runFlat(n4, [vec4Binding(g), vec4Binding(p), vec4Binding(buf)], [16, 16, 16], (bindings, _, k) =>
        e.run({ shader: 'sgd', entry: 'momentum', params: { ...params, n4: k, first }, bindings, workgroups: e.grid1d(k), ...(k === n4 ? { uniformSlot: p } : {}) }));
    }
  }

  /** Sets every parameter's .grad to null, returning the gradient buffers to the pool. */
  zeroGrad(): void {
    zeroGrad(this.params);
  }

  /** The momentum buffer of a parameter (null before its first step or without momentum). */
  momentumBuffer(p: Tensor): Tensor | null {
    return this.buffers.get(p) ?? null;
  }

  /** Restores a parameter's momentum buffer (from a checkpoint, to resume a run); copies `data`.
   * The next step then treats the parameter as already started. */
  setMomentumBuffer(p: Tensor, data: Float32Array): void {
    if (this.disposed) throw new OpError('SGD', 'setMomentumBuffer() after dispose()');
    if (!this.params.includes(p)) throw new OpError('SGD', `setMomentumBuffer: the tensor ${fmtShape(p.shape)} is not one of this optimizer's parameters`);
    if (data.length !== p.size) throw new OpError('SGD', `setMomentumBuffer: ${data.length} values for a parameter of shape ${fmtShape(p.shape)}`);
    const b = keep(tensor(data, p.shape)).setCategory('optimizer');
    b.label = `${p.label ?? 'param'}.momentum_buffer`;
    this.buffers.get(p)?.dispose();
    this.buffers.set(p, b);
  }

  /** Frees the momentum buffers. The parameters are the caller's and stay alive. */
  dispose(): void {
    for (const b of this.buffers.values()) b.dispose();
    this.buffers.clear();
    this.disposed = true;
  }
}
