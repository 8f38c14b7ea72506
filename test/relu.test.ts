import { expect } from 'chai';
import { tensor, parameter, tidy, backward, relu, engine, Tensor } from '../src/index.js';
import { randn, numel, expectClose, gradCheck, expectOpError } from './helpers.js';

/** Runs relu forward and backward on the GPU; returns y and dx. */
async function gpuRelu(xData: Float32Array, dyData: Float32Array, shape: number[]): Promise<{ y: Float32Array; dx: Float32Array }> {
  const x = parameter(xData, shape);
  try {
    const y = tidy(() => {
      const out = relu(x);
      const keepY = out.ref();
      backward(out, tensor(dyData, shape));
      return keepY;
    });
    const yv = (await y.data()) as Float32Array;
    y.dispose();
    return { y: yv, dx: (await x.grad!.data()) as Float32Array };
  } finally {
    x.grad?.dispose();
    x.dispose();
  }
}


describe('relu', () => {
  // Odd sizes, sizes that are not multiples of 4 (the vec4 tail) or of the workgroup, batch >= 2.
  const shapes = [[1], [3], [2, 3, 7, 5], [3, 5, 13, 11], [4099], [2, 16, 33, 33]];
  for (const shape of shapes) {
    it(`matches the CPU reference forward and backward, shape [${shape}]`, async () => {
      const n = numel(shape);
      const x = randn(n, 11 + n);
      const dy = randn(n, 23 + n);
      const { y, dx } = await gpuRelu(x, dy, shape);
      const yRef = Array.from(x, (v) => Math.max(v, 0));
      const dxRef = Array.from(x, (v, i) => (v > 0 ? dy[i] : 0));
      expectClose(y, yRef, 1e-4, 'y');
      expectClose(dx, dxRef, 1e-3, 'dx');
      // relu is exact: every element equal, not only close in norm.
      expect(Array.from(y)).to.deep.equal(yRef);
      expect(Array.from(dx)).to.deep.equal(dxRef);
    });
  }

  it('passes a finite-difference check away from 0', async () => {
    const raw = randn(2 * 3 * 3 * 5, 5);
    // |x| >= 0.1 keeps x ± eps on one side of the kink.
    const data = raw.map((v) => Math.sign(v || 1) * (0.1 + Math.abs(v)));
    await gradCheck((x) => relu(x), [{ data, shape: [2, 3, 3, 5] }], { eps: 1e-2, tol: 1e-3 });
  });

  it('handles an empty tensor', async () => {
    const y = tidy(() => relu(tensor([], [0, 3])));
    expect(y.shape).to.deep.equal([0, 3]);
    y.dispose();
  });

  it('frees everything after backward', () => {
    const x = parameter(randn(30, 3), [2, 15]);
    const before = engine().stats().liveBuffers;
    tidy(() => backward(relu(relu(x)), tensor(randn(30, 4), [2, 15])));
    x.grad!.dispose();
    x.grad = null;
    expect(engine().stats().liveBuffers).to.equal(before);
    x.dispose();
  });

  it('rejects bad arguments before any GPU work', () => {
    const xi = tensor(new Int32Array(6), [2, 3]);
    expectOpError(() => relu(xi), 'relu', "'x'", 'f32', 'i32', '[2, 3]');
    expectOpError(() => relu(null as unknown as Tensor), 'relu', "'x'", 'Tensor');
    const xd = tensor([1, 2], [2]);
    xd.dispose();
    expectOpError(() => relu(xd), 'relu', 'disposed');
    xi.dispose();
  });
});
