// matmul (2-D, no autograd): used by the benchmarks as the device's practical ceiling and by
// tests as a reference for the GEMM-shaped kernels. Kernel: shaders/matmul.wgsl.
// Above the binding limit: blocks of rows of a and c, and blocks of columns of b (copied to a
// contiguous scratch tensor when b is above the limit); bit-identical to one launch.
import { engine, type Bindable } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { checkTensor, OpError } from './check.js';
import { sliceFrom } from './split.js';

/** c = a · b for a f32 [m, k] and b f32 [k, n] (n a multiple of 4) -> c f32 [m, n]. Launches above
 * maxStorageBufferBindingSize are split (see above); one row of a or c, or one column block of 4
 * of b, above the limit is an error naming it and the limit. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  checkTensor('matmul', 'a', a, { rank: 2 });
  checkTensor('matmul', 'b', b, { rank: 2 });
  const [m, k] = a.shape;
  const [k2, n] = b.shape;
  if (k !== k2) throw new OpError('matmul', `inner sizes differ: a ${fmtShape(a.shape)}, b ${fmtShape(b.shape)}`);
  if (n % 4 !== 0) throw new OpError('matmul', `b's column count must be a multiple of 4 (vec4 kernel), got ${fmtShape(b.shape)}`);
  const e = engine();
  const max = e.limits.maxStorageBufferBindingSize;
  const maxEl = Math.floor(max / 4) - (e.bindingAlignment / 4 - 1);
  const launch = (bindings: Bindable[], rows: number, cols: number, ldb: number, aoff: number, boff: number, coff: number) =>
    e.run({ shader: 'matmul', params: { m: rows, n: cols, k, ldb, ldc: n / 4, aoff, boff, coff }, bindings, workgroups: [Math.ceil(cols / 4 / 8), Math.ceil(rows / 4 / 8)] });
  if (a.byteLength <= max && b.byteLength <= max && m * n * 4 <= max) {
    const c = empty([m, n]);
    launch([a, b, c], m, n, n / 4, 0, 0, 0);
    return c;
  }
  // Column blocks of b: all of it when it fits, else blocks of nb columns copied row by row into
  // a contiguous [k, nb] scratch tensor.
  const nb = b.byteLength <= max ? n : Math.min(n, Math.floor(Math.floor(max / 4) / Math.max(1, k) / 4) * 4);
  if (nb < 4) throw new Error(`atrous: matmul: b ${fmtShape(b.shape)} is ${b.byteLength} bytes and 4 of its columns (${k * 16} bytes) are above the device limit maxStorageBufferBindingSize (${max} bytes)`);
  // Row blocks of a and c: whole rows of both.
  const mb = Math.min(m, Math.floor(maxEl / Math.max(k, n, 1)));
  if (mb < 1) throw new Error(`atrous: matmul: one row of a ${fmtShape(a.shape)} or c [${m}, ${n}] (${Math.max(k, n) * 4} bytes) is above the device limit maxStorageBufferBindingSize (${max} bytes)`);
  const c = empty([m, n]);
  const scratch = nb < n ? empty([k, nb]) : null;
  try {
    for (let j0 = 0; j0 < n; j0 += nb) {
      const cols = Math.min(nb, n - j0);
      if (scratch) for (let kk = 0; kk < k; kk++) e.copy(b, scratch, cols * 4, (kk * n + j0) * 4, kk * cols * 4);
      const bb: Bindable = scratch ?? b;
      for (let r0 = 0; r0 < m; r0 += mb) {
        const rows = Math.min(mb, m - r0);
        const [as, aoff] = sliceFrom(a, r0 * k, rows * k);
        const [cs, coff] = sliceFrom(c, r0 * n, rows * n);
        launch([as, bb, cs], rows, cols, scratch ? cols / 4 : n / 4, aoff, 0, (coff + j0) / 4);
      }
    }
  } finally {
    scratch?.dispose();
  }
  return c;
}
