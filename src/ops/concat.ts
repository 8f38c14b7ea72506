// Channel concatenation (torch.cat(xs, dim=1) on NCHW), forward and backward. Input i fills
// channels [c0, c0 + cx) of every image of the output: one contiguous block of cx·h·w floats per
// image. Forward: one dispatch of shaders/concat.fwd.wgsl per input. Backward: one Engine.copy per
// (input that needs a gradient, image), moving its blocks of dy out: a copyBufferToBuffer, or,
// when dy and the gradient are blocks of one pool segment (as small tensors usually are), the
// copy kernel (copyBufferToBuffer refuses one buffer at both ends).
// Why the two differ: on lavapipe copyBufferToBuffer measured faster than a copy kernel
// (docs/software-gpu.md), but a copy ends the open compute pass and Engine.timeGpu times one pass,
// so the forward stays a kernel (a model's forward can then be timed whole); the backward already
// records copies elsewhere (add's clone). Above the binding limit the forward runs per block of
// images, or, when one image of the output is above the limit, per chunk of each input's block.

import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record } from '../autograd.js';
import { checkTensor, OpError } from './check.js';
import { runBlocks, sliceFrom } from './split.js';

/** torch.cat(xs, dim) for rank-4 NCHW f32 tensors along the channel dimension (dim 1, or -3). */
export function cat(xs: Tensor[], dim = 1): Tensor {
  const op = 'cat';
  if (!Array.isArray(xs) || xs.length === 0) {
    throw new OpError(op, `'xs' must be a non-empty array of tensors, got ${Array.isArray(xs) ? '[]' : String(xs)}`);
  }
  xs.forEach((x, i) => checkTensor(op, `xs[${i}]`, x, { rank: 4 }));
  if (dim !== 1 && dim !== -3) {
    throw new OpError(op, `only dim 1 (channels) is supported on rank-4 tensors, got dim ${JSON.stringify(dim)} for xs[0] of shape ${fmtShape(xs[0].shape)}`);
  }
  const [n, , h, w] = xs[0].shape;
  for (let i = 1; i < xs.length; i++) {
    const s = xs[i].shape;
    if (s[0] !== n || s[2] !== h || s[3] !== w) {
      throw new OpError(op, `xs[${i}] has shape ${fmtShape(s)} but xs[0] has shape ${fmtShape(xs[0].shape)}: all dimensions except 1 (channels) must match`);
    }
  }
  const hw = h * w;
  const cs = xs.map((x) => x.shape[1]);
  const cy = cs.reduce((a, b) => a + b, 0);
  const c0s = cs.map((_, i) => cs.slice(0, i).reduce((a, b) => a + b, 0));

  const e = engine();
  // vec4 units when every block length and offset is a multiple of 4 floats.
  const v = hw % 4 === 0 ? 4 : 1;
  const maxEl = Math.floor(e.limits.maxStorageBufferBindingSize / 4) - (e.bindingAlignment / 4 - 1);
  // One image of y above the limit is copied in chunks of a multiple of 4 floats (below).
  if (cy * hw > maxEl && maxEl < 4) {
    throw new Error(`atrous: ${op}: maxStorageBufferBindingSize (${e.limits.maxStorageBufferBindingSize} bytes) is below one aligned chunk of 4 values`);
  }
  const y = empty([n, cy, h, w]);
  xs.forEach((x, i) => {
    const chw = (cs[i] * hw) / v;
    if (n * chw === 0) return;
    if (cy * hw > maxEl) {
      // One image of y above the binding limit: input i's block in image b is contiguous in x and
      // in y, so it is copied in chunks (multiples of 4 floats, so that v = 4 keeps every offset
      // a whole vec4), each launch binding a slice of x and of y.
      const chunk = Math.floor(maxEl / 4) * 4;
      const cx = cs[i] * hw;
      for (let b = 0; b < n; b++) {
        for (let j0 = 0; j0 < cx; j0 += chunk) {
          const count = Math.min(chunk, cx - j0);
          const [xs, xoff] = sliceFrom(x, b * cx + j0, count);
          const [ys, yoff] = sliceFrom(y, (b * cy + c0s[i]) * hw + j0, count);
          e.run({
            shader: 'concat.fwd',
            entry: v === 4 ? 'main4' : 'main',
            params: { chw_x: count / v, chw_y: 0, off: yoff / v, xoff: xoff / v },
            bindings: [xs, ys],
            workgroups: [Math.min(Math.ceil(count / v / 64), 4096), 1],
          });
        }
      }
      return;
    }
    // Images are independent: above the binding limit they run in blocks of images (offsets in
    // floats are multiples of 4 whenever v = 4: image starts and aligned slice starts are).
    runBlocks(op, n, [x, y], [cs[i] * hw, cy * hw], (bindings, [xoff, yoff], _, k) =>
      e.run({
        shader: 'concat.fwd',
        entry: v === 4 ? 'main4' : 'main',
        params: { chw_x: chw, chw_y: (cy * hw) / v, off: (yoff + c0s[i] * hw) / v, xoff: xoff / v },
        bindings,
        workgroups: [Math.min(Math.ceil(chw / 64), 4096), k],
      }));
  });
  return record(op, y, xs, [], (dy, _saved, needs) => {
    const eb = engine();
    return xs.map((x, i) => {
      if (!needs[i]) return null;
      const dx = empty(x.shape);
      // Byte offsets of image b's block: b·cx·hw in dx, (b·cy + c0)·hw in dy.
      const bytes = cs[i] * hw * 4;
      if (bytes > 0) for (let b = 0; b < n; b++) eb.copy(dy, dx, bytes, (b * cy + c0s[i]) * hw * 4, b * bytes);
      return dx;
    });
  });
}
