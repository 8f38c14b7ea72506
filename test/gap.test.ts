import { expect } from 'chai';
import { Tensor, tensor, parameter, tidy, backward, adaptiveAvgPool2d, engine } from '../src/index.js';
import { setKernelVariant } from '../src/ops/variants.js';
import { randn, numel, expectClose, gradCheck } from './helpers.js';

// float64 CPU global average pooling and its gradient for the upstream gradient dy [n, c].
function gapRef(x: Float32Array, shape: number[], dy: Float32Array): { y: Float64Array; dx: Float64Array } {
  const [n, c, h, w] = shape;
  const hw = h * w;
  const y = new Float64Array(n * c);
  const dx = new Float64Array(x.length);
  for (let q = 0; q < n * c; q++) {
    let s = 0;
    for (let k = 0; k < hw; k++) s += x[q * hw + k];
    y[q] = s / hw;
    for (let k = 0; k < hw; k++) dx[q * hw + k] = dy[q] / hw;
  }
  return { y, dx };
}

async function check(shape: number[], seed: number, offset = 0): Promise<void> {
  const [n, c] = shape;
  const xData = randn(numel(shape), seed, 1, offset);
  const dy = randn(n * c, seed + 1);
  const x = parameter(xData, shape);
  const y = tidy(() => {
    const out = adaptiveAvgPool2d(x);
    backward(out, tensor(dy, [n, c, 1, 1]));
    return out;
  });
  const ref = gapRef(xData, shape, dy);
  expect(y.shape).to.deep.equal([n, c, 1, 1]);
  expectClose((await y.data()) as Float32Array, ref.y, 1e-4, `y ${JSON.stringify(shape)}`);
  expectClose((await x.grad!.data()) as Float32Array, ref.dx, 1e-3, `dx ${JSON.stringify(shape)}`);
  y.dispose();
  x.grad!.dispose();
  x.dispose();
}

describe('adaptiveAvgPool2d (global average pooling)', function () {
  this.timeout(60_000);

  // The backward kernel has a per-plane and a flat entry ('auto' picks by plane size).
  for (const elementwise of ['auto', 'planes', 'flat'] as const) {
    it(`matches the float64 reference forward and backward (element-wise kernels: ${elementwise})`, async () => {
      setKernelVariant('batchNorm.elementwise', elementwise);
      try {
        await check([2, 3, 5, 7], 1);
        await check([3, 4, 1, 1], 2); // 1×1 input: the identity
        await check([2, 3, 33, 33], 3, 2); // DeepLab's 513 input at output stride 16
        await check([1, 5, 13, 11], 4);
        await check([2, 67, 2, 3], 5); // more planes than one workgroup
        await check([1, 1, 1, 3], 6); // h·w below the 4-wide unroll
        await check([1, 2, 65, 65], 7, -3);
      } finally {
        setKernelVariant('batchNorm.elementwise', null);
      }
    });
  }

  it('accepts output size 1, [1, 1] or none', async () => {
    const x = tensor(randn(2 * 3 * 4 * 5, 10), [2, 3, 4, 5]);
    const outs = [adaptiveAvgPool2d(x), adaptiveAvgPool2d(x, 1), adaptiveAvgPool2d(x, [1, 1])];
    const vals = await Promise.all(outs.map(async (t) => Array.from(await t.data())));
    expect(vals[1]).to.deep.equal(vals[0]);
    expect(vals[2]).to.deep.equal(vals[0]);
    for (const t of [x, ...outs]) t.dispose();
  });

  it('passes a finite-difference gradient check', async () => {
    await gradCheck((x) => adaptiveAvgPool2d(x), [{ data: randn(2 * 3 * 3 * 4, 20), shape: [2, 3, 3, 4] }]);
    await gradCheck((x) => adaptiveAvgPool2d(x, [1, 1]), [{ data: randn(3 * 2, 21), shape: [3, 2, 1, 1] }]);
  });

  it('frees every temporary buffer', () => {
    const x = parameter(randn(2 * 3 * 4 * 5, 30), [2, 3, 4, 5]);
    const before = engine().stats().liveBuffers;
    tidy(() => backward(adaptiveAvgPool2d(x), tensor(randn(6, 31), [2, 3, 1, 1])));
    x.grad!.dispose();
    x.grad = null;
    expect(engine().stats().liveBuffers).to.equal(before);
    x.dispose();
  });

  describe('argument errors (thrown before any GPU work)', () => {
    let x: Tensor, x3: Tensor, xi: Tensor, x0: Tensor;
    before(() => {
      x = tensor(randn(2 * 3 * 4 * 5, 40), [2, 3, 4, 5]);
      x3 = tensor(randn(3 * 4 * 5, 41), [3, 4, 5]);
      xi = tensor(new Int32Array(2 * 3 * 4), [2, 3, 2, 2]);
      x0 = tensor([], [2, 3, 0, 5]);
    });
    after(() => {
      for (const t of [x, x3, xi, x0]) t.dispose();
    });
    const expectThrow = (fn: () => unknown, re: RegExp) => {
      const d = engine().stats().dispatches;
      expect(fn).to.throw(re);
      expect(engine().stats().dispatches, 'no kernel was recorded').to.equal(d);
    };

    it('rejects output sizes other than 1', () => {
      expectThrow(() => adaptiveAvgPool2d(x, 2), /adaptiveAvgPool2d: only output size 1 or \[1, 1\] \(global average pooling\) is supported, got 2 for x of shape \[2, 3, 4, 5\]/);
      expectThrow(() => adaptiveAvgPool2d(x, [1, 2]), /adaptiveAvgPool2d: only output size 1 .* got \[1,2\]/);
      expectThrow(() => adaptiveAvgPool2d(x, [1] as unknown as [number, number]), /got \[1\]/);
    });

    it('rejects a wrong rank, dtype or an empty plane', () => {
      expectThrow(() => adaptiveAvgPool2d(x3), /adaptiveAvgPool2d: argument 'x' must have rank 4 \[n, c, h, w\], got shape \[3, 4, 5\]/);
      expectThrow(() => adaptiveAvgPool2d(xi), /adaptiveAvgPool2d: argument 'x' must be f32, got i32/);
      expectThrow(() => adaptiveAvgPool2d(x0), /adaptiveAvgPool2d: cannot average an empty plane: x has shape \[2, 3, 0, 5\]/);
    });
  });
});
