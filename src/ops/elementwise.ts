// Element-wise ops: add (residual connections) and the fill/scale helpers the rest of the
// library builds on. Kernels: shaders/add.wgsl, shaders/fill.wgsl.

import { engine } from '../gpu/engine.js';
import { Tensor, empty } from '../tensor.js';
import { record } from '../autograd.js';
import { checkTensor, checkSameShape } from './check.js';
import { runFlat } from './split.js';

function addKernel(a: Tensor, b: Tensor, alpha: number): Tensor {
  const out = empty(a.shape);
  const e = engine();
  runFlat(a.size, [a, b, out], [4, 4, 4], (bs, _, n) => e.run({ shader: 'add', params: { n, alpha }, bindings: bs, workgroups: e.grid1d(n) }));
  return out;
}

/** A tensor filled with one value. */
export function full(shape: readonly number[], value: number): Tensor {
  const t = empty(shape);
  const e = engine();
  runFlat(t.size, [t], [4], (bs, _, n) => e.run({ shader: 'fill', params: { n, value }, bindings: bs, workgroups: e.grid1d(n) }));
  return t;
}

export const zeros = (shape: readonly number[]): Tensor => full(shape, 0);
export const ones = (shape: readonly number[]): Tensor => full(shape, 1);

/** A copy in new storage (no autograd). */
export function clone(t: Tensor): Tensor {
  const out = empty(t.shape, t.dtype);
  engine().copy(t, out, t.byteLength);
  return out;
}

/** out = a + b (same shapes). Backward: both inputs receive dy (copied: gradients never alias). */
export function add(a: Tensor, b: Tensor): Tensor {
  checkTensor('add', 'a', a);
  checkTensor('add', 'b', b);
  checkSameShape('add', 'a', a, 'b', b);
  const out = addKernel(a, b, 1);
  return record('add', out, [a, b], [], (dy, _saved, needs) => [needs[0] ? clone(dy) : null, needs[1] ? clone(dy) : null]);
}

/** In place: y += alpha * x (no autograd; optimizers and gradient accumulation). */
export function axpy_(y: Tensor, x: Tensor, alpha = 1): void {
  checkSameShape('axpy_', 'y', y, 'x', x);
  const e = engine();
  runFlat(x.size, [x, y], [4, 4], (bs, _, n) => e.run({ shader: 'axpy', params: { n, alpha }, bindings: bs, workgroups: e.grid1d(n) }));
}

/** A view with another shape; the gradient is reshaped back. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  checkTensor('reshape', 'x', x, { dtype: x.dtype });
  const out = x.view(shape);
  return record('reshape', out, [x], [], (dy) => {
    const g = clone(dy);
    const v = g.view(x.shape);
    g.dispose();
    return [v];
  });
}
