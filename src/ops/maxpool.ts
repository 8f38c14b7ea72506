// 2-D max pooling (torch.nn.functional.max_pool2d, floor output size), forward and backward.
// Kernels: shaders/maxpool.fwd.wgsl (one invocation per output; entry `with_argmax` also saves the
// argmax for backward) and shaders/maxpool.dx.wgsl (a gather over the saved argmax, no atomics).
// Above the binding limit: blocks of planes, or, when one plane is above the limit, blocks of rows
// of one plane with the band of rows they read (the same bits).

import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record, isGradEnabled } from '../autograd.js';
import { checkTensor, pair, OpError } from './check.js';
import { runBlocks, rowBlocks, sliceFrom } from './split.js';

export interface MaxPool2dOptions {
  kernelSize: number | [number, number];
  stride?: number | [number, number] /* default kernelSize */;
  padding?: number | [number, number] /* default 0 */;
}

/** torch.nn.functional.max_pool2d(x, kernel_size, stride, padding) on NCHW f32. */
export function maxPool2d(x: Tensor, opts: MaxPool2dOptions): Tensor {
  const op = 'maxPool2d';
  checkTensor(op, 'x', x, { rank: 4 });
  if (opts === null || typeof opts !== 'object') throw new OpError(op, `'opts' must be an object { kernelSize, stride?, padding? }, got ${String(opts)}`);
  if (opts.kernelSize === undefined) throw new OpError(op, `'kernelSize' is required`);
  const [kh, kw] = pair(op, 'kernelSize', opts.kernelSize, 1, 1);
  // PyTorch: stride=None means stride = kernel_size.
  const [sh, sw] = opts.stride === undefined || opts.stride === null ? [kh, kw] : pair(op, 'stride', opts.stride, 1, 1);
  const [ph, pw] = pair(op, 'padding', opts.padding, 0, 0);
  if (ph > Math.floor(kh / 2) || pw > Math.floor(kw / 2)) {
    throw new OpError(op, `'padding' [${ph}, ${pw}] must be at most half of 'kernelSize' [${kh}, ${kw}]`);
  }
  const [n, c, h, w] = x.shape;
  const oh = Math.floor((h + 2 * ph - kh) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - kw) / sw) + 1;
  if (oh < 1 || ow < 1) {
    throw new OpError(op, `x of shape ${fmtShape(x.shape)} is too small for kernelSize [${kh}, ${kw}] with padding [${ph}, ${pw}] (output would be ${oh}x${ow})`);
  }

  const params = { nc: n * c, h, w, oh, ow, kh, kw, sh, sw, ph, pw };
  const e = engine();
  const maxEl = Math.floor(e.limits.maxStorageBufferBindingSize / 4) - (e.bindingAlignment / 4 - 1);
  // One plane above the binding limit: per plane, blocks of output rows with the band of input
  // rows their windows read (else blocks of whole planes); planned before y is allocated.
  const byRows = h * w > maxEl || oh * ow > maxEl;
  const blocks = byRows ? rowBlocks(op, x.label ?? `x ${fmtShape(x.shape)}`, oh, ow, w, (r0, r1) => [Math.max(0, r0 * sh - ph), Math.min(h, (r1 - 1) * sh - ph + kh)]) : [];
  const y = empty([n, c, oh, ow]);
  const forward = (entry: 'main' | 'with_argmax', outs: Tensor[]) => {
    if (!byRows) {
      // Planes are independent: above the binding limit they run in blocks of planes.
      runBlocks(op, n * c, [x, ...outs], [h * w, oh * ow, oh * ow], (bindings, [xoff, yoff], _, k) =>
        e.run({ shader: 'maxpool.fwd', entry, params: { ...params, nc: k, xoff, yoff, r0: 0, rows: oh, b0: 0 }, bindings, workgroups: e.grid1d(k * oh * ow) }));
      return;
    }
    for (let q = 0; q < n * c; q++) {
      for (const { r0, rows, b0, b1 } of blocks) {
        const [xs, xoff] = sliceFrom(x, q * h * w + b0 * w, (b1 - b0) * w);
        const ys = outs.map((t) => sliceFrom(t, q * oh * ow + r0 * ow, rows * ow));
        e.run({ shader: 'maxpool.fwd', entry, params: { ...params, nc: 1, xoff, yoff: ys[0][1], r0, rows, b0 }, bindings: [xs, ...ys.map(([b]) => b)], workgroups: e.grid1d(rows * ow) });
      }
    }
  };
  if (!isGradEnabled() || !x.requiresGrad) {
    forward('main', [y]);
    return y;
  }
  // The argmax (flat index ih * w + iw within each plane) is all the backward needs.
  const argmax = empty([n, c, oh, ow], 'i32');
  forward('with_argmax', [y, argmax]);
  const out = record(op, y, [x], [argmax], (dy, [idx]) => {
    const eb = engine();
    // Input rows [r0, r1) receive gradient from output rows [lo, hi]: the windows that cover them
    // (planned before dx is allocated).
    const lo = (i: number) => (i + ph + 1 > kh ? Math.ceil((i + ph + 1 - kh) / sh) : 0);
    const hi = (i: number) => Math.min(Math.floor((i + ph) / sh), oh - 1);
    const blocks = byRows ? rowBlocks(op, `the gradient of ${fmtShape(y.shape)}`, h, w, ow, (r0, r1) => [Math.max(0, Math.min(lo(r0), hi(r1 - 1))), hi(r1 - 1) + 1]) : [];
    const dx = empty(x.shape);
    if (!byRows) {
      runBlocks(op, n * c, [dy, idx, dx], [oh * ow, oh * ow, h * w], (bindings, [yoff, , xoff], _, k) =>
        eb.run({ shader: 'maxpool.dx', params: { ...params, nc: k, xoff, yoff, r0: 0, rows: h, b0: 0 }, bindings, workgroups: eb.grid1d(k * h * w) }));
      return [dx];
    }
    for (let q = 0; q < n * c; q++) {
      for (const { r0, rows, b0, b1 } of blocks) {
        const [dys, yoff] = sliceFrom(dy, q * oh * ow + b0 * ow, (b1 - b0) * ow);
        const [ids] = sliceFrom(idx, q * oh * ow + b0 * ow, (b1 - b0) * ow);
        const [dxs, xoff] = sliceFrom(dx, q * h * w + r0 * w, rows * w);
        eb.run({ shader: 'maxpool.dx', params: { ...params, nc: 1, xoff, yoff, r0, rows, b0 }, bindings: [dys, ids, dxs], workgroups: eb.grid1d(rows * w) });
      }
    }
    return [dx];
  });
  // The node holds its own handle on the argmax storage.
  argmax.dispose();
  return out;
}
