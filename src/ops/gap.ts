// Global average pooling (torch.nn.functional.adaptive_avg_pool2d with output size 1), the
// image-level branch of DeepLabv3's ASPP: out[n, c, 0, 0] = mean over h·w of x[n, c].
// Backward: dx[n, c, h, w] = dy[n, c, 0, 0] / (h·w). Kernels: shaders/gap.fwd.wgsl, gap.dx.wgsl.
// Above the binding limit: blocks of planes; one plane above the limit is summed in parts that
// carry the partial sums (the same bits), and backward runs per block of channels or positions.

import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record } from '../autograd.js';
import { checkTensor, OpError } from './check.js';
import { runBlocks, sliceFrom } from './split.js';
import { runElementwise, batchNormElementwiseVariants } from './batchnorm.js';

const OP = 'adaptiveAvgPool2d';

/** Averages every [h, w] plane of x [n, c, h, w] to [n, c, 1, 1]. Only output size 1 (or [1, 1])
 * is supported: other adaptive sizes are not used by DeepLab. */
export function adaptiveAvgPool2d(x: Tensor, outputSize: number | [number, number] = 1): Tensor {
  checkTensor(OP, 'x', x, { rank: 4 });
  const size: unknown = outputSize;
  const isOne = size === 1 || (Array.isArray(size) && size.length === 2 && size[0] === 1 && size[1] === 1);
  if (!isOne) {
    throw new OpError(OP, `only output size 1 or [1, 1] (global average pooling) is supported, got ${JSON.stringify(size)} for x of shape ${fmtShape(x.shape)}`);
  }
  const [n, c, h, w] = x.shape;
  const hw = h * w;
  if (hw === 0) throw new OpError(OP, `cannot average an empty plane: x has shape ${fmtShape(x.shape)}`);
  const planes = n * c;
  const scale = 1 / hw;
  const e = engine();
  // Backward's kernel variant, planes | flat (batch norm's element-wise kernels' choice).
  const elementwise = batchNormElementwiseVariants.choose(e, { hw }).variant;
  const maxEl = Math.floor(e.limits.maxStorageBufferBindingSize / 4) - (e.bindingAlignment / 4 - 1);
  // One plane above the limit is summed in parts of a multiple of 4 values, with a carry of 8
  // values bound whole (below).
  if (hw > maxEl && (maxEl < 4 || e.limits.maxStorageBufferBindingSize < 32)) {
    throw new Error(`atrous: ${OP}: maxStorageBufferBindingSize (${e.limits.maxStorageBufferBindingSize} bytes) is below one aligned part of 4 values or the 32 bytes of the partial sums carried between parts`);
  }
  const out = empty([n, c, 1, 1]);
  if (hw <= maxEl) {
    // Planes are independent: above the binding limit they run in blocks of planes.
    runBlocks(OP, planes, [x, out], [hw, 1], (bindings, [xoff, ooff], _, k) =>
      e.run({ shader: 'gap.fwd', params: { planes: k, hw, scale, xoff, ooff, j0: 0, jn: 0 }, bindings, workgroups: e.grid1d(k) }));
  } else {
    // One plane above the limit: parts of a multiple of 4 values, the partial sums carried from
    // part to part (the order of the unsplit sum).
    const chunk = Math.floor(maxEl / 4) * 4;
    const carry = empty([8]);
    try {
      for (let q = 0; q < planes; q++) {
        const [os, ooff] = sliceFrom(out, q, 1);
        for (let j0 = 0; j0 < hw; j0 += chunk) {
          const jn = Math.min(chunk, hw - j0);
          const [xs, xoff] = sliceFrom(x, q * hw + j0, jn);
          e.run({ shader: 'gap.fwd', entry: 'part', params: { planes: 1, hw, scale, xoff, ooff, j0, jn }, bindings: [xs, os, carry], workgroups: [1] });
        }
      }
    } finally {
      carry.dispose();
    }
  }
  return record(OP, out, [x], [], (dy) => {
    const dx = empty(x.shape);
    runElementwise(elementwise, 'gap.dx', ([dyoff, off], pt) => ({ total: pt.n * pt.cb * pt.len, c: pt.cb, hw: pt.len, scale, off, dyoff }), [dy, dx], ['vector', 'plane'], n, c, hw);
    return [dx];
  });
}
