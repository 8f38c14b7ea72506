// 2-D max pooling (torch.nn.functional.max_pool2d, floor output size), forward and backward.
// Kernels: shaders/maxpool.fwd.wgsl (one invocation per output; entry `with_argmax` also saves the
// argmax for backward) and shaders/maxpool.dx.wgsl (a gather over the saved argmax, no atomics).

import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record, isGradEnabled } from '../autograd.js';
import { checkTensor, pair, OpError } from './check.js';
import { runBlocks } from './split.js';

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
  const y = empty([n, c, oh, ow]);
  if (!isGradEnabled() || !x.requiresGrad) {
    runBlocks(op, n * c, [x, y], [h * w, oh * ow], (bindings, [xoff, yoff], _, k) =>
      e.run({ shader: 'maxpool.fwd', params: { ...params, nc: k, xoff, yoff }, bindings, workgroups: e.grid1d(k * oh * ow) }));
    return y;
  }
  // The argmax (flat index ih * w + iw within each plane) is all the backward needs.
  const argmax = empty([n, c, oh, ow], 'i32');
  // Planes are independent: above the binding limit they run in blocks of planes.
  runBlocks(op, n * c, [x, y, argmax], [h * w, oh * ow, oh * ow], (bindings, [xoff, yoff], _, k) =>
    e.run({ shader: 'maxpool.fwd', entry: 'with_argmax', params: { ...params, nc: k, xoff, yoff }, bindings, workgroups: e.grid1d(k * oh * ow) }));
  const out = record(op, y, [x], [argmax], (dy, [idx]) => {
    const dx = empty(x.shape);
    const eb = engine();
    runBlocks(op, n * c, [dy, idx, dx], [oh * ow, oh * ow, h * w], (bindings, [yoff, , xoff], _, k) =>
      eb.run({ shader: 'maxpool.dx', params: { ...params, nc: k, xoff, yoff }, bindings, workgroups: eb.grid1d(k * h * w) }));
    return [dx];
  });
  // The node holds its own handle on the argmax storage.
  argmax.dispose();
  return out;
}
