// Bilinear resize (torch.nn.functional.interpolate, mode 'bilinear'), forward and backward.
// Kernels: shaders/resize_bilinear.fwd.wgsl (one invocation per output element) and
// shaders/resize_bilinear.dx.wgsl (a gather: one invocation per input element, no atomics).
// Above the binding limit: blocks of planes, or, when one plane is above the limit, blocks of rows
// of one plane with the band of rows they read (a bilinear output row reads 2 input rows); the
// same bits.

import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record } from '../autograd.js';
import { checkTensor, pair, OpError } from './check.js';
import { runBlocks, rowBlocks, sliceFrom } from './split.js';

export interface InterpolateOptions {
  size: number | [number, number];
  mode?: 'bilinear';
  alignCorners?: boolean /* default false */;
}

/** ATen's area_pixel_compute_scale in f32 (Math.fround of the f64 quotient is the correctly
 * rounded f32 quotient: 53 >= 2 * 24 + 2 bits, so double rounding cannot occur). */
function scaleOf(nIn: number, nOut: number, alignCorners: boolean): number {
  if (alignCorners) return nOut > 1 ? Math.fround((nIn - 1) / (nOut - 1)) : 0;
  return Math.fround(nIn / nOut);
}

/** Coefficients (a, b, c) of the output range [a·i + b, a·i + c) whose src lies in [i - 1, i + 1),
 * the only outputs that can read input index i (the kernel scans one more candidate on each side
 * against rounding and tests each exactly). */
function spanOf(nIn: number, nOut: number, alignCorners: boolean): [number, number, number] {
  // Every output reads index 0 when there is one input; one output only reads near index 0.
  if (nIn === 1 || nOut === 1) return [0, 0, nOut];
  if (alignCorners) {
    const a = (nOut - 1) / (nIn - 1); // src = o / a; taps of i need src in [i - 1, i + 1)
    return [a, -a, a];
  }
  const a = nOut / nIn; // src = (o + 0.5) / a - 0.5
  return [a, -0.5 * a - 0.5, 1.5 * a - 0.5];
}

/** torch.nn.functional.interpolate(x, size, mode='bilinear', align_corners) on NCHW f32. */
export function interpolate(x: Tensor, opts: InterpolateOptions): Tensor {
  const op = 'interpolate';
  checkTensor(op, 'x', x, { rank: 4 });
  if (opts === null || typeof opts !== 'object') throw new OpError(op, `'opts' must be an object { size, mode?, alignCorners? }, got ${String(opts)}`);
  if (opts.size === undefined) throw new OpError(op, `'size' is required (an output size or an [oh, ow] pair) for x of shape ${fmtShape(x.shape)}`);
  const [oh, ow] = pair(op, 'size', opts.size, 1, 1);
  const mode = opts.mode ?? 'bilinear';
  if (mode !== 'bilinear') throw new OpError(op, `'mode' must be 'bilinear' (the only mode implemented), got ${JSON.stringify(mode)}`);
  const alignCorners = opts.alignCorners ?? false;
  if (typeof alignCorners !== 'boolean') throw new OpError(op, `'alignCorners' must be a boolean, got ${JSON.stringify(alignCorners)}`);
  const [n, c, h, w] = x.shape;
  if (h < 1 || w < 1) throw new OpError(op, `x must have a non-empty spatial size, got shape ${fmtShape(x.shape)}`);

  const nc = n * c;
  const common = { nc, h, w, oh, ow, scale_h: scaleOf(h, oh, alignCorners), scale_w: scaleOf(w, ow, alignCorners), align: alignCorners ? 1 : 0 };
  const e = engine();
  const maxEl = Math.floor(e.limits.maxStorageBufferBindingSize / 4) - (e.bindingAlignment / 4 - 1);
  const byRows = h * w > maxEl || oh * ow > maxEl;
  // Source row of output row d (f64; the kernel's f32 value is within a row of it, and the bands
  // below keep a margin of a row or two on each side).
  const src = (d: number) => Math.max(0, alignCorners ? common.scale_h * d : common.scale_h * (d + 0.5) - 0.5);
  // One plane above the limit: blocks of output rows, x bound as the band of rows they read
  // (planned before y is allocated: a row whose band cannot fit is an error).
  const band = (r0: number, r1: number): [number, number] =>
    h === oh ? [r0, r1] : [Math.max(0, Math.floor(src(r0)) - 1), Math.min(h, Math.floor(src(r1 - 1)) + 3)];
  const blocks = byRows ? rowBlocks(op, x.label ?? `x ${fmtShape(x.shape)}`, oh, ow, w, band) : [];
  const y = empty([n, c, oh, ow]);
  if (!byRows) {
    // Planes are independent: above the binding limit they run in blocks of planes.
    runBlocks(op, nc, [x, y], [h * w, oh * ow], (bindings, [xoff, yoff], _, k) =>
      e.run({ shader: 'resize_bilinear.fwd', params: { ...common, nc: k, xoff, yoff, r0: 0, rows: oh, b0: 0 }, bindings, workgroups: e.grid1d(k * oh * ow) }));
  } else {
    for (let q = 0; q < nc; q++) {
      for (const { r0, rows, b0, b1 } of blocks) {
        const [xs, xoff] = sliceFrom(x, q * h * w + b0 * w, (b1 - b0) * w);
        const [ys, yoff] = sliceFrom(y, q * oh * ow + r0 * ow, rows * ow);
        e.run({ shader: 'resize_bilinear.fwd', params: { ...common, nc: 1, xoff, yoff, r0, rows, b0 }, bindings: [xs, ys], workgroups: e.grid1d(rows * ow) });
      }
    }
  }

  return record(op, y, [x], [], (dy) => {
    const e = engine();
    const [a_h, b_h, c_h] = spanOf(h, oh, alignCorners);
    const [a_w, b_w, c_w] = spanOf(w, ow, alignCorners);
    const params = { ...common, a_h, b_h, c_h, a_w, b_w, c_w };
    // One plane above the limit: blocks of input rows, dy bound as the band of output rows whose
    // taps can reach them (the kernel's span, widened by a row each side against f32 rounding;
    // rows 0 and 1 are read by every output whose source was clamped to 0). Planned before dx is
    // allocated.
    const band = (r0: number, r1: number): [number, number] => {
      if (h === oh) return [r0, r1];
      const lo = r0 <= 1 ? 0 : Math.max(0, Math.floor(a_h * r0 + b_h) - 1);
      return [lo, Math.min(oh, Math.ceil(a_h * (r1 - 1) + c_h) + 2)];
    };
    const blocks = byRows ? rowBlocks(op, `the gradient of ${fmtShape(y.shape)}`, h, w, ow, band) : [];
    const dx = empty(x.shape);
    if (!byRows) {
      runBlocks(op, nc, [dy, dx], [oh * ow, h * w], (bindings, [dyoff, dxoff], _, k) =>
        e.run({ shader: 'resize_bilinear.dx', params: { ...params, nc: k, dyoff, dxoff, r0: 0, rows: h, b0: 0 }, bindings, workgroups: e.grid1d(k * h * w) }));
      return [dx];
    }
    for (let q = 0; q < nc; q++) {
      for (const { r0, rows, b0, b1 } of blocks) {
        const [dys, dyoff] = sliceFrom(dy, q * oh * ow + b0 * ow, (b1 - b0) * ow);
        const [dxs, dxoff] = sliceFrom(dx, q * h * w + r0 * w, rows * w);
        e.run({ shader: 'resize_bilinear.dx', params: { ...params, nc: 1, dyoff, dxoff, r0, rows, b0 }, bindings: [dys, dxs], workgroups: e.grid1d(rows * w) });
      }
    }
    return [dx];
  });
}
