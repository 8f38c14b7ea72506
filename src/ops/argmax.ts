// argmax along a dimension (class maps from logits). Kernel: shaders/argmax.wgsl. No gradient.

import { engine, type Bindable } from '../gpu/engine.js';
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
  const max = e.limits.maxStorageBufferBindingSize;
  if (x.byteLength <= max) {
    e.run({ shader: 'argmax', params: { total, d, inner, xoff: 0, ooff: 0, k0: 0, kn: d }, bindings: [x, out], workgroups: e.grid1d(total) });
    return out;
  }
  argmaxBlocks(x, out, total / inner, d, inner);
  return out;
}

/** argmax of x [outer, d, inner] above the binding limit: per outer index, channel blocks (and
 * position ranges when one channel alone is too large) of slices that fit, keeping a running
 * maximum in a scratch tensor. Exactly the unsplit result. */
function argmaxBlocks(x: Tensor, out: Tensor, outer: number, d: number, inner: number): void {
  const e = engine();
  const maxEl = Math.floor(e.limits.maxStorageBufferBindingSize / 4);
  const align = e.bindingAlignment / 4; // elements
  const slack = align - 1; // a slice starts up to this many elements before its first element
  // Whole channels per launch where at least one channel fits, else one channel and a position range.
  const kb = inner + slack <= maxEl ? Math.min(d, Math.floor((maxEl - slack - inner) / inner) + 1) : 1;
  const sb = inner + slack <= maxEl ? inner : maxEl - slack;
  if (sb < 1) throw new Error(`atrous: argmax: maxStorageBufferBindingSize (${maxEl * 4} bytes) is below one aligned slice`);
  const best = empty([outer, inner]);
  best.label = 'argmax.best';
  const window = (t: Tensor, start: number, count: number): [Bindable, number] => {
    const at = Math.floor(start / align) * align;
    return [e.slice(t, at * 4, (start - at + count) * 4), start - at];
  };
  try {
    for (let o = 0; o < outer; o++) {
      for (let s0 = 0; s0 < inner; s0 += sb) {
        const sn = Math.min(sb, inner - s0);
        for (let k0 = 0; k0 < d; k0 += kb) {
          const kn = Math.min(kb, d - k0);
          const [xs, xoff] = window(x, (o * d + k0) * inner + s0, (kn - 1) * inner + sn);
          const [os, ooff] = window(out, o * inner + s0, sn);
          const [bs] = window(best, o * inner + s0, sn);
          e.run({ shader: 'argmax', entry: 'block', params: { total: sn, d, inner, xoff, ooff, k0, kn }, bindings: [xs, os, bs], workgroups: e.grid1d(sn) });
        }
      }
    }
  } finally {
    best.dispose();
  }
}
