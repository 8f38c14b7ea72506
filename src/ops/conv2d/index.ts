// conv2d with torch.nn.functional.conv2d semantics (groups = 1), forward and backward.
// The op (this file): checks the arguments and computes the geometry (geometry.ts), chooses the
// kernel variant (autotune.ts, through the one variant mechanism of src/ops/variants.ts), and
// records the kernel launches (launch.ts) for the forward pass and the gradients its inputs need.
// The subgroup kernels' region tables: regions.ts.

import { Tensor } from '../../tensor.js';
import { record } from '../../autograd.js';
import { conv2dGeometry, type Conv2dOptions } from './geometry.js';
import { conv2dVariants } from './autotune.js';
import { conv2dForward, conv2dBackwardData, conv2dBackwardWeight, conv2dBackwardBias, type Conv2dVariant } from './launch.js';

export { conv2dGeometry, convOutputSize, tapRange, type Conv2dOptions, type Conv2dGeometry } from './geometry.js';
export { conv2dForward, conv2dBackwardData, conv2dBackwardWeight, conv2dBackwardBias, CONV2D_VARIANTS, type Conv2dVariant } from './launch.js';
export { conv2dVariants, autotuneConv2d, conv2dAutotuned, clearConv2dAutotune, describeConv2dVariant, AUTOTUNE_FILE, type Conv2dVariantChoice } from './autotune.js';

/** Forces a conv2d variant for this process (null or 'auto': back to env / autotune). */
export const setConv2dVariant = (v: Conv2dVariant | 'auto' | null): void => conv2dVariants.force(v);

/**
 * 2-D convolution, torch.nn.functional.conv2d semantics with groups = 1.
 * x [n, cin, h, w], weight [cout, cin, kh, kw] (PyTorch layout), bias [cout] or null;
 * returns [n, cout, oh, ow] with oh = floor((h + 2·padH − dilH·(kh − 1) − 1) / strideH) + 1.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const b = bias ?? null;
  const g = conv2dGeometry(x, weight, b, opts);
  // register | tiled | subgroup: setConv2dVariant(), ATROUS_CONV_VARIANT or the adapter's autotune.
  const variant = conv2dVariants.choose().variant;
  const y = conv2dForward(x, weight, b, g, variant);
  const inputs = b ? [x, weight, b] : [x, weight];
  // Save only what the needed gradients read: dx needs the weight, dw needs x.
  const needX = x.requiresGrad;
  const needW = weight.requiresGrad;
  const saved = [...(needW ? [x] : []), ...(needX ? [weight] : [])];
  return record('conv2d', y, inputs, saved, (dy, s, needs) => {
    const xs = needW ? s[0] : null;
    const ws = needX ? s[needW ? 1 : 0] : null;
    // A pass that throws (a split that cannot fit the binding limit) frees the gradients the
    // passes before it returned.
    const grads: (Tensor | null)[] = [];
    try {
      grads.push(needs[0] && ws ? conv2dBackwardData(dy, ws, g, variant) : null);
      grads.push(needs[1] && xs ? conv2dBackwardWeight(xs, dy, g, variant) : null);
      if (b) grads.push(needs[2] ? conv2dBackwardBias(dy, g) : null);
    } catch (err) {
      for (const t of grads) t?.dispose();
      throw err;
    }
    return grads;
  });
}
