import { expect } from 'chai';
import { tensor, parameter, tidy, argmax, Tensor } from '../src/index.js';
import { randn, numel, expectOpError } from './helpers.js';

/** float64-free reference: index of the first maximum along `dim`. */
function reference(x: ArrayLike<number>, shape: number[], dim: number): Int32Array {
  const d = shape[dim];
  const inner = numel(shape.slice(dim + 1));
  const outer = numel(shape.slice(0, dim));
  const out = new Int32Array(outer * inner);
  for (let o = 0; o < outer; o++) {
    for (let s = 0; s < inner; s++) {
      let best = -Infinity;
      let arg = 0;
      for (let k = 0; k < d; k++) {
        const v = x[o * d * inner + k * inner + s];
        if (v > best) {
          best = v;
          arg = k;
        }
      }
      out[o * inner + s] = arg;
    }
  }
  return out;
}

async function gpuArgmax(data: Float32Array, shape: number[], dim?: number): Promise<{ shape: readonly number[]; v: Int32Array }> {
  const out = tidy(() => argmax(tensor(data, shape), dim));
  expect(out.dtype).to.equal('i32');
  const v = (await out.data()) as Int32Array;
  const s = out.shape;
  out.dispose();
  return { shape: s, v };
}


describe('argmax', () => {
  const cases: { shape: number[]; dim?: number; out: number[] }[] = [
    { shape: [2, 21, 7, 9], out: [2, 7, 9] },
    { shape: [3, 5, 13, 11], dim: 1, out: [3, 13, 11] },
    { shape: [2, 3, 129, 65], out: [2, 129, 65] },
    { shape: [37, 21], out: [37] },
    { shape: [2, 4, 3, 5], dim: 0, out: [4, 3, 5] },
    { shape: [2, 4, 3, 5], dim: 3, out: [2, 4, 3] },
    { shape: [2, 4, 3, 5], dim: -1, out: [2, 4, 3] },
    { shape: [2, 1, 3, 3], out: [2, 3, 3] },
    { shape: [19], dim: 0, out: [] },
  ];
  for (const tc of cases) {
    it(`matches the CPU reference, shape [${tc.shape}] dim ${tc.dim ?? 'default'}`, async () => {
      const x = randn(numel(tc.shape), 7 + numel(tc.shape));
      const got = await gpuArgmax(x, tc.shape, tc.dim);
      expect(got.shape).to.deep.equal(tc.out);
      const dim = tc.dim === undefined ? 1 : tc.dim < 0 ? tc.dim + tc.shape.length : tc.dim;
      expect(Array.from(got.v)).to.deep.equal(Array.from(reference(x, tc.shape, dim)));
    });
  }

  it('returns the lowest index on ties, like torch.argmax', async () => {
    const shape = [2, 6, 5, 7];
    // Values from {0, 1, 2}: most pixels hold their maximum at several channels.
    const x = Float32Array.from(randn(numel(shape), 99), (v) => Math.min(2, Math.floor(Math.abs(v) * 1.5)));
    const got = await gpuArgmax(x, shape);
    const ref = reference(x, shape, 1);
    expect(Array.from(got.v)).to.deep.equal(Array.from(ref));
    // The case has ties whose first index is not the last one.
    let tiesSeen = 0;
    for (let q = 0; q < 70; q++) {
      const ni = Math.floor(q / 35);
      const vals = Array.from({ length: 6 }, (_, k) => x[ni * 6 * 35 + k * 35 + (q % 35)]);
      if (vals.lastIndexOf(Math.max(...vals)) !== ref[q]) tiesSeen++;
    }
    expect(tiesSeen).to.be.greaterThan(10);
    // All equal: index 0 everywhere.
    const flat = await gpuArgmax(new Float32Array(2 * 5 * 3).fill(-3), [2, 5, 3]);
    expect(Array.from(flat.v)).to.deep.equal(new Array(6).fill(0));
  });

  it('records no gradient', () => {
    const x = parameter(randn(24, 1), [2, 3, 4]);
    const out = argmax(x);
    expect(out.requiresGrad).to.equal(false);
    expect(out.node).to.equal(null);
    out.dispose();
    x.dispose();
  });

  it('rejects bad arguments before any GPU work', () => {
    const x = tensor(randn(24, 1), [2, 3, 4]);
    const xi = tensor(new Int32Array(6), [2, 3]);
    const scalar = tensor([1], []);
    const empty = tensor([], [2, 0, 3]);
    expectOpError(() => argmax(x, 3), 'argmax', "'dim'", '[-3, 2]', '[2, 3, 4]', '3');
    expectOpError(() => argmax(x, -4), 'argmax', "'dim'", '-4');
    expectOpError(() => argmax(x, 1.5), 'argmax', "'dim'", '1.5');
    expectOpError(() => argmax(xi), 'argmax', "'x'", 'f32', 'i32');
    expectOpError(() => argmax(scalar), 'argmax', "'x'", '[]');
    expectOpError(() => argmax(empty), 'argmax', 'empty', '[2, 0, 3]');
    expectOpError(() => argmax(undefined as unknown as Tensor), 'argmax', "'x'", 'Tensor');
    for (const t of [x, xi, scalar, empty]) t.dispose();
  });
});
