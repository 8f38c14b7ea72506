// Activations: relu and dropout. Kernels: shaders/relu.fwd.wgsl, relu.bwd.wgsl, dropout.apply.wgsl.
// These are flat element-wise kernels over vec4s: one wide load instead of four bounds-clamped
// scalar loads is what lavapipe rewards (docs/software-gpu.md: measured against a scalar relu), and
// any GPU is memory-bound here.

import { engine, type Bindable } from '../gpu/engine.js';
import { Tensor, empty } from '../tensor.js';
import { record } from '../autograd.js';
import { checkTensor, checkNumber, OpError } from './check.js';
import { clone, zeros } from './elementwise.js';
import { runFlat } from './split.js';

/** Binds a tensor as ceil(size / 4) vec4s. Pool blocks are multiples of 256 bytes, so the last
 * vec4 stays inside the tensor's block; its lanes past `size` are padding that no tensor observes. */
export function vec4Binding(t: Tensor): Bindable {
  const byteLength = Math.max(16, Math.ceil(t.size / 4) * 16);
  if (t.capacity < byteLength) {
    throw new Error(`atrous: internal error: a block of ${t.capacity} bytes cannot be bound as ${byteLength / 16} vec4s (pool blocks must be 16-byte multiples)`);
  }
  return { buffer: t.buffer, offset: t.offset, byteLength, label: t.label };
}

/** Runs a flat vec4 kernel over ceil(size / 4) vec4s (Params field n4); `more` are its other
 * Params fields. */
function runVec4(shader: 'relu.fwd' | 'relu.bwd' | 'dropout.apply', tensors: Tensor[], more: { seed: number; threshold: number; scale: number } | null = null): void {
  const n = tensors[0].size;
  if (n === 0) return;
  const e = engine();
  // Split into slices of whole vec4s when a tensor is above the binding limit (dropout's mask
  // hashes the element index, so its launches take the slice's first vec4 as base4). Dropout's seed
  // changes every call: an unsplit launch's uniform block is rewritten in place (keyed by the output
  // buffer, the same pooled one every step) instead of a new buffer and bind group per step.
  const total4 = Math.ceil(n / 4);
  runFlat(total4, tensors.map(vec4Binding), tensors.map(() => 16), (bindings, base4, n4) => {
    const slot = n4 === total4 ? { uniformSlot: tensors[tensors.length - 1] } : {};
    if (shader === 'dropout.apply') e.run({ shader, params: { n4, base4, ...more! }, bindings, workgroups: e.grid1d(n4), ...slot });
    else e.run({ shader, params: { n4 }, bindings, workgroups: e.grid1d(n4) });
  });
}

/** y = max(x, 0). Backward: dx = dy where y > 0 (saves y, not x). */
export function relu(x: Tensor): Tensor {
  checkTensor('relu', 'x', x);
  const y = empty(x.shape);
  runVec4('relu.fwd', [x, y]);
  return record('relu', y, [x], [y], (dy, [ys]) => {
    const dx = empty(dy.shape);
    runVec4('relu.bwd', [ys, dy, dx]);
    return [dx];
  });
}

export interface DropoutOptions {
  /** Probability of zeroing an element, in [0, 1]. */
  p: number;
  /** false: identity (a copy), as in eval mode. */
  training: boolean;
  /** The mask is a function of (seed, element index): pass a new seed every step. */
  seed: number;
}

/**
 * Training: out = x * mask / (1 - p), mask[i] = 0 with probability p, drawn from a counter-based
 * hash of (seed, i) on the GPU; p = 1 gives zeros. Eval (training = false) or p = 0: a copy.
 * Backward regenerates the same mask from the seed (no mask is stored): dx = dy * mask / (1 - p).
 */
export function dropout(x: Tensor, opts: DropoutOptions): Tensor {
  checkTensor('dropout', 'x', x);
  if (!opts || typeof opts !== 'object') throw new OpError('dropout', `'opts' must be an object {p, training, seed}, got ${JSON.stringify(opts)}`);
  const p = checkNumber('dropout', 'p', opts.p, { min: 0, max: 1 });
  if (typeof opts.training !== 'boolean') throw new OpError('dropout', `'training' must be a boolean, got ${JSON.stringify(opts.training)}`);
  const seed = checkNumber('dropout', 'seed', opts.seed, { integer: true, min: 0, max: 0xffffffff });
  if (!opts.training || p === 0) {
    return record('dropout', clone(x), [x], [], (dy) => [clone(dy)]);
  }
  if (p === 1) {
    return record('dropout', zeros(x.shape), [x], [], (dy) => [zeros(dy.shape)]);
  }
  // Drop iff hash < threshold: P(drop) = threshold / 2^32 = p up to 2^-33.
  const threshold = Math.min(Math.round(p * 2 ** 32), 0xffffffff);
  const scale = 1 / (1 - p);
  const apply = (src: Tensor): Tensor => {
    const dst = empty(src.shape);
    runVec4('dropout.apply', [src, dst], { seed, threshold, scale });
    return dst;
  };
  return record('dropout', apply(x), [x], [], (dy) => [apply(dy)]);
}
