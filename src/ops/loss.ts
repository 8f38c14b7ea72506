// Softmax cross-entropy with ignore_index, mean reduction (torch.nn.functional.cross_entropy).
// Kernels: shaders/cross_entropy.fwd.wgsl (per pixel), cross_entropy.reduce.wgsl (fixed-order
// tree reduction to the scalar, no atomics), cross_entropy.bwd.wgsl (per pixel). Nothing is read
// back to the CPU: the valid-pixel count and the upstream gradient stay on the GPU.
// Above the binding limit the per-pixel passes run per block of whole images, or, when one image
// is above the limit, per range of positions of one image and per block of classes (one image's
// logits are strided by h·w per class): a running maximum, then a running sum of exp in class order,
// then dx per class block; the same bits as unsplit.

import { engine, type Bindable } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record } from '../autograd.js';
import { runBlocks, sliceFrom as window } from './split.js';
import { checkTensor, checkNumber, OpError } from './check.js';

export interface CrossEntropyOptions {
  /** Target value whose pixels contribute neither loss nor gradient (default 255, VOC's border). */
  ignoreIndex?: number;
  reduction?: 'mean';
}

/** Workgroup size and elements per invocation of cross_entropy.reduce.wgsl. */
const REDUCE_WG = 256;
const REDUCE_K = 8;

/** One pass of the (sum, count) reduction: `groups` workgroups, each summing REDUCE_WG * REDUCE_K
 * consecutive pairs of src into dst[group]. Above the binding limit the groups run in chunks that
 * bind slices of src and dst; each group sums the same pairs in the same order as unsplit. */
function reducePass(src: Tensor, dst: Tensor, loss: Tensor, n: number, groups: number, final: number): void {
  const e = engine();
  const per = REDUCE_WG * REDUCE_K; // pairs per group
  const max = e.limits.maxStorageBufferBindingSize;
  const run = (bindings: Bindable[], count: number, groupCount: number, doff: number) =>
    e.run({ shader: 'cross_entropy.reduce', constants: { WG: REDUCE_WG }, params: { n: count, final_pass: final, doff }, bindings, workgroups: [groupCount] });
  if (src.byteLength <= max && dst.byteLength <= max) {
    run([src, dst, loss], n, groups, 0);
    return;
  }
  // src slices start at a group (per * 8 = 16 KiB, aligned); dst slices start at an aligned pair
  // up to alignment / 8 - 1 pairs before the chunk's first group (doff).
  const slack = e.bindingAlignment / 8 - 1;
  const chunk = Math.min(Math.floor(max / (per * 8)), Math.floor(max / 8) - slack);
  if (chunk < 1) throw new Error(`atrous: crossEntropy: maxStorageBufferBindingSize (${max} bytes) is below one group of the loss reduction (${per * 8} bytes)`);
  for (let g0 = 0; g0 < groups; g0 += chunk) {
    const gn = Math.min(chunk, groups - g0);
    const count = Math.min(gn * per, n - g0 * per);
    const at = Math.floor(g0 / (slack + 1)) * (slack + 1);
    run([e.slice(src, g0 * per * 8, count * 8), e.slice(dst, at * 8, (g0 - at + gn) * 8), loss], count, gn, g0 - at);
  }
}

/** Whether the per-pixel passes can run per block of whole images (every binding's image fits). */
function imagesFit(c: number, hw: number): boolean {
  const e = engine();
  const maxEl = Math.floor(e.limits.maxStorageBufferBindingSize / 4) - (e.bindingAlignment / 4 - 1);
  return c * hw <= maxEl && 2 * hw <= maxEl;
}

/** One launch's part when one image is above the binding limit: positions [s0, s0 + sn) of image
 * ni and classes [k0, k0 + kn). */
interface ClassBlock {
  ni: number;
  s0: number;
  sn: number;
  k0: number;
  kn: number;
}

/** The parts of x [n, c, hw] (one image above the binding limit) in launch order: per image, per
 * range of positions whose vec2 slices (pairs, stats) fit, class blocks in class order, each a
 * window of (kn - 1)·hw + sn values of x that fits. */
function classBlocks(n: number, c: number, hw: number): ClassBlock[][] {
  const e = engine();
  const max = e.limits.maxStorageBufferBindingSize;
  const align = e.bindingAlignment;
  const maxEl = Math.floor(max / 4) - (align / 4 - 1);
  const sb = Math.min(hw, Math.floor((max - align) / 8));
  if (sb < 1) throw new Error(`atrous: crossEntropy: maxStorageBufferBindingSize (${max} bytes) is below one aligned slice`);
  const kb = Math.max(1, Math.min(c, 1 + Math.floor((maxEl - sb) / hw)));
  const out: ClassBlock[][] = [];
  for (let ni = 0; ni < n; ni++) {
    for (let s0 = 0; s0 < hw; s0 += sb) {
      const sn = Math.min(sb, hw - s0);
      const blocks: ClassBlock[] = [];
      for (let k0 = 0; k0 < c; k0 += kb) blocks.push({ ni, s0, sn, k0, kn: Math.min(kb, c - k0) });
      out.push(blocks);
    }
  }
  return out;
}

/**
 * Mean over valid pixels of logsumexp_c(x) - x_target, for logits x f32 [n, C, h, w] (or [n, C],
 * or any [n, C, ...]) and target i32 [n, h, w] (or [n], ...). A pixel is valid when its target is
 * not `ignoreIndex` and lies in [0, C): out-of-range labels are treated as ignored (the data layer
 * validates labels up front; a kernel cannot raise). When no pixel is valid the loss and its
 * gradient are 0, where PyTorch gives NaN. Returns a scalar tensor of shape [].
 */
export function crossEntropy(x: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  checkTensor('crossEntropy', 'x', x);
  if (x.rank < 2) throw new OpError('crossEntropy', `argument 'x' must be [n, C, h, w] or [n, C], got shape ${fmtShape(x.shape)}`);
  checkTensor('crossEntropy', 'target', target, { dtype: 'i32' });
  const want = [x.shape[0], ...x.shape.slice(2)];
  if (target.rank !== want.length || target.shape.some((d, i) => d !== want[i])) {
    throw new OpError('crossEntropy', `'target' has shape ${fmtShape(target.shape)} but x ${fmtShape(x.shape)} needs a target of shape ${fmtShape(want)}`);
  }
  if (!opts || typeof opts !== 'object') throw new OpError('crossEntropy', `'opts' must be an object, got ${JSON.stringify(opts)}`);
  const ignoreIndex = checkNumber('crossEntropy', 'ignoreIndex', opts.ignoreIndex ?? 255, { integer: true, min: -0x80000000, max: 0x7fffffff });
  if ((opts.reduction ?? 'mean') !== 'mean') {
    throw new OpError('crossEntropy', `only reduction 'mean' is supported, got ${JSON.stringify(opts.reduction)}`);
  }
  const c = x.shape[1];
  const npix = target.size;
  if (c === 0 || npix === 0) throw new OpError('crossEntropy', `x ${fmtShape(x.shape)} has no elements`);
  const hw = npix / x.shape[0];
  const e = engine();
  // Limits no split can meet are refused here, before any allocation or GPU work: the loss
  // reduction's groups (reducePass) and one image's class blocks (classBlocks).
  const max = e.limits.maxStorageBufferBindingSize;
  if (npix * 8 > max && max < REDUCE_WG * REDUCE_K * 8) {
    throw new Error(`atrous: crossEntropy: maxStorageBufferBindingSize (${max} bytes) is below one group of the loss reduction (${REDUCE_WG * REDUCE_K * 8} bytes)`);
  }
  const parts = imagesFit(c, hw) ? null : classBlocks(x.shape[0], c, hw);

  const pairs = empty([npix, 2]);
  const stats = empty([npix, 2]);
  if (!parts) {
    // Images are independent: above the binding limit they run in blocks of images.
    runBlocks('crossEntropy', x.shape[0], [x, target, pairs, stats], [c * hw, hw, 2 * hw, 2 * hw], (bindings, [xoff, loff, poff], _, k) =>
      e.run({ shader: 'cross_entropy.fwd', params: { npix: k * hw, c, hw, ignoreIndex, xoff, loff, poff: poff / 2, k0: 0, kn: c, phase: 0 }, bindings, workgroups: e.grid1d(k * hw) }));
  } else {
    // One image above the limit: per range of positions, a running maximum over the class blocks,
    // then a running sum of exp in class order (the order of the unsplit kernel: same bits).
    for (const blocks of parts) {
      for (const phase of [0, 1]) {
        for (const { ni, s0, sn, k0, kn } of blocks) {
          const [xs, xoff] = window(x, (ni * c + k0) * hw + s0, (kn - 1) * hw + sn, 4);
          const [ls, loff] = window(target, ni * hw + s0, sn, 4);
          const [ps, poff] = window(pairs, ni * hw + s0, sn, 8);
          const [ss, soff] = window(stats, ni * hw + s0, sn, 8);
          if (soff !== poff) throw new Error('atrous: internal error: crossEntropy pairs and stats windows differ');
          e.run({ shader: 'cross_entropy.fwd', entry: 'block', params: { npix: sn, c, hw, ignoreIndex, xoff, loff, poff, k0, kn, phase }, bindings: [xs, ls, ps, ss], workgroups: e.grid1d(sn) });
        }
      }
    }
  }

  // Passes of WG * K elements per workgroup until a single workgroup writes (sum, count) and loss.
  const loss = empty([]);
  let src = pairs;
  let n = npix;
  for (;;) {
    const groups = Math.ceil(n / (REDUCE_WG * REDUCE_K));
    const dst = empty([groups, 2]);
    const final = groups === 1 ? 1 : 0;
    reducePass(src, dst, loss, n, groups, final);
    src.dispose();
    src = dst;
    n = groups;
    if (final) break;
  }
  const tot = src;

  const out = record('crossEntropy', loss, [x], [x, target, stats, tot], (dy, [xs, ts, ss, totals]) => {
    const eb = engine();
    const parts = imagesFit(c, hw) ? null : classBlocks(xs.shape[0], c, hw);
    const dx = empty(xs.shape);
    if (!parts) {
      runBlocks('crossEntropy backward', xs.shape[0], [xs, ts, ss, totals, dy, dx], [c * hw, hw, 2 * hw, 0, 0, c * hw], (bindings, [xoff, loff, soff], _, k) =>
        eb.run({ shader: 'cross_entropy.bwd', params: { npix: k * hw, c, hw, ignoreIndex, xoff, loff, soff: soff / 2, k0: 0, kn: c }, bindings, workgroups: eb.grid1d(k * hw) }));
    } else {
      // One image above the limit: dx = softmax - onehot per class block, from the saved logsumexp.
      for (const blocks of parts) {
        for (const { ni, s0, sn, k0, kn } of blocks) {
          const [xw, xoff] = window(xs, (ni * c + k0) * hw + s0, (kn - 1) * hw + sn, 4);
          const [dw] = window(dx, (ni * c + k0) * hw + s0, (kn - 1) * hw + sn, 4);
          const [lw, loff] = window(ts, ni * hw + s0, sn, 4);
          const [sw, soff] = window(ss, ni * hw + s0, sn, 8);
          eb.run({ shader: 'cross_entropy.bwd', entry: 'block', params: { npix: sn, c, hw, ignoreIndex, xoff, loff, soff, k0, kn }, bindings: [xw, lw, sw, totals, dy, dw], workgroups: eb.grid1d(sn) });
        }
      }
    }
    return [dx];
  });
  // The node holds its own references; without one (no gradient needed) these are freed now.
  stats.dispose();
  tot.dispose();
  return out;
}
