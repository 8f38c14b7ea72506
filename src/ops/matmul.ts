// matmul (2-D, no autograd): used by the benchmarks as the device's practical ceiling and by
// tests as a reference for the GEMM-shaped kernels. Kernel: shaders/matmul.wgsl.
import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { checkTensor, OpError } from './check.js';

export function matmul(a: Tensor, b: Tensor): Tensor {
  checkTensor('matmul', 'a', a, { rank: 2 });
  checkTensor('matmul', 'b', b, { rank: 2 });
  const [m, k] = a.shape;
  const [k2, n] = b.shape;
  if (k !== k2) throw new OpError('matmul', `inner sizes differ: a ${fmtShape(a.shape)}, b ${fmtShape(b.shape)}`);
  if (n % 4 !== 0) throw new OpError('matmul', `b's column count must be a multiple of 4 (vec4 kernel), got ${fmtShape(b.shape)}`);
  const c = empty([m, n]);
  engine().run({
    shader: 'matmul',
    params: { m, n, k },
    bindings: [a, b, c],
    workgroups: [Math.ceil(n / 4 / 8), Math.ceil(m / 4 / 8)],
  });
  return c;
}
