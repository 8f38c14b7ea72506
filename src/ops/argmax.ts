// argmax along a dimension (class maps from logits). Kernel: shaders/argmax.wgsl. No gradient.

import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { checkTensor, OpError } from './check.js';

/** Index of the largest value along `dim` (default 1, the channels of [n, C, h, w] -> i32
 * [n, h, w]); ties go to the lowest index, as torch.argmax. Negative dims count from the end. */
export function argmax(x: Tensor, dim = 1): Tensor {
  checkTensor('argmax', 'x', x);
  if (x.rank === 0) throw new OpError('argmax', `argument 'x' must have at least one dimension, got shape ${fmtShape(x.shape)}`);
  if (!Number.isInteger(dim) || dim < -x.rank || dim >= x.rank) {
    throw new OpError('argmax', `'dim' must be an integer in [${-x.rank}, ${x.rank - 1}] for x of shape ${fmtShape(x.shape)}, got ${JSON.stringify(dim)}`);
  }
  const axis = dim < 0 ? dim + x.rank : dim;
  const d = x.shape[axis];
  if (d === 0) throw new OpError('argmax', `dimension ${axis} of x ${fmtShape(x.shape)} is empty: there is no maximum`);
  const outShape = x.shape.filter((_, i) => i !== axis);
  const inner = x.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const out = empty(outShape, 'i32');
  const total = out.size;
  if (total === 0) return out;
  const e = engine();
  e.run({ shader: 'argmax', params: { total, d, inner }, bindings: [x, out], workgroups: e.grid1d(total) });
  return out;
}
