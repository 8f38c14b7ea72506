import { expect } from 'chai';
import { tensor, parameter, tidy, backward, dropout, Tensor, type DropoutOptions } from '../src/index.js';
import { randn, numel, gradCheck, expectClose, expectOpError } from './helpers.js';

// CPU copy of the mask of shaders/dropout.apply.wgsl: element i is dropped iff
// xxh32(pcg(seed), i) < round(p * 2^32).
function pcg(v: number): number {
  const state = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}
function xxh32(key: number, word: number): number {
  let h = (key + 374761393 + 4) >>> 0;
  h = (h + Math.imul(word, 3266489917)) >>> 0;
  h = Math.imul((h << 17) | (h >>> 15), 668265263) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 2246822519) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 3266489917) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}
function cpuMask(n: number, p: number, seed: number): Uint8Array {
  const key = pcg(seed);
  const threshold = Math.min(Math.round(p * 2 ** 32), 0xffffffff);
  return Uint8Array.from({ length: n }, (_, i) => (xxh32(key, i) >= threshold ? 1 : 0));
}

/** Forward and backward on the GPU. x values are nonzero, so y == 0 marks a dropped element. */
async function gpuDropout(xData: Float32Array, dyData: Float32Array, shape: number[], opts: DropoutOptions) {
  const x = parameter(xData, shape);
  try {
    const y = tidy(() => {
      const out = dropout(x, opts);
      const k = out.ref();
      backward(out, tensor(dyData, shape));
      return k;
    });
    const yv = (await y.data()) as Float32Array;
    y.dispose();
    return { y: yv, dx: (await x.grad!.data()) as Float32Array };
  } finally {
    x.grad?.dispose();
    x.dispose();
  }
}

const nonzero = (n: number, seed: number) => randn(n, seed).map((v) => (v === 0 ? 1 : v));


describe('dropout', () => {
  for (const p of [0.1, 0.5, 0.9]) {
    it(`drops a fraction p = ${p}, scales kept elements by exactly 1/(1-p), and backward uses the same mask`, async () => {
      const n = 200003; // not a multiple of 4 or of the workgroup
      const x = nonzero(n, 1);
      const dy = randn(n, 2);
      const { y, dx } = await gpuDropout(x, dy, [n], { p, training: true, seed: 1234 });
      const scale = Math.fround(1 / (1 - p));
      let dropped = 0;
      let pairs = 0;
      const wrong: string[] = [];
      for (let i = 0; i < n; i++) {
        if (y[i] === 0) {
          dropped++;
          if (i > 0 && y[i - 1] === 0) pairs++;
          if (dx[i] !== 0) wrong.push(`dx[${i}] = ${dx[i]} where y was dropped`);
        } else {
          if (y[i] !== Math.fround(x[i] * scale)) wrong.push(`y[${i}] = ${y[i]}, x * scale = ${Math.fround(x[i] * scale)}`);
          if (dx[i] !== Math.fround(dy[i] * scale)) wrong.push(`dx[${i}] = ${dx[i]}, dy * scale = ${Math.fround(dy[i] * scale)}`);
        }
      }
      expect(wrong.slice(0, 5), `${wrong.length} mismatches`).to.deep.equal([]);
      const sigma = Math.sqrt((p * (1 - p)) / n);
      expect(Math.abs(dropped / n - p), `dropped fraction ${dropped / n}`).to.be.below(5 * sigma);
      // Neighbours are independent: both dropped with probability p^2.
      expect(Math.abs(pairs / (n - 1) - p * p), `neighbour pairs ${pairs / (n - 1)}`).to.be.below(0.01);
    });
  }

  it('follows the documented hash exactly, including the vec4 tail', async () => {
    for (const [n, seed, p] of [[1, 0, 0.5], [7, 42, 0.3], [4101, 0xffffffff, 0.7]] as const) {
      const { y } = await gpuDropout(nonzero(n, n), randn(n, 5), [n], { p, training: true, seed });
      const mask = cpuMask(n, p, seed);
      expect(Array.from(y, (v) => (v === 0 ? 0 : 1))).to.deep.equal(Array.from(mask));
    }
  });

  it('gives the same mask for the same seed and an unrelated mask for another seed', async () => {
    const n = 50001;
    const shape = [3, 7, 2381];
    const x = nonzero(numel(shape), 3);
    const dy = randn(numel(shape), 4);
    const masks: Uint8Array[] = [];
    for (const seed of [7, 7, 8, 9, 1007]) {
      const { y } = await gpuDropout(x, dy, shape, { p: 0.5, training: true, seed });
      masks.push(Uint8Array.from(y, (v) => (v === 0 ? 0 : 1)));
    }
    expect(Array.from(masks[1])).to.deep.equal(Array.from(masks[0]));
    for (let a = 1; a < masks.length; a++) {
      for (let b = a + 1; b < masks.length; b++) {
        let agree = 0;
        for (let i = 0; i < n; i++) if (masks[a][i] === masks[b][i]) agree++;
        // Independent masks at p = 0.5 agree on half of the elements.
        expect(Math.abs(agree / n - 0.5), `seeds #${a} and #${b} agree on ${agree / n}`).to.be.below(0.02);
      }
    }
  });

  it('is an identity copy in eval mode or with p = 0 (the gradient passes through)', async () => {
    const shape = [2, 3, 5, 7];
    const x = randn(numel(shape), 6);
    const dy = randn(numel(shape), 7);
    for (const opts of [{ p: 0.5, training: false, seed: 1 }, { p: 0, training: true, seed: 1 }]) {
      const { y, dx } = await gpuDropout(x, dy, shape, opts);
      expect(Array.from(y)).to.deep.equal(Array.from(x));
      expect(Array.from(dx)).to.deep.equal(Array.from(dy));
    }
  });

  it('gives zeros and a zero gradient with p = 1', async () => {
    const shape = [2, 3, 5];
    const { y, dx } = await gpuDropout(nonzero(30, 1), randn(30, 2), shape, { p: 1, training: true, seed: 3 });
    expect(Array.from(y).every((v) => v === 0)).to.equal(true);
    expect(Array.from(dx).every((v) => v === 0)).to.equal(true);
  });

  it('passes a finite-difference check', async () => {
    const data = randn(2 * 3 * 4 * 5, 9);
    await gradCheck((x) => dropout(x, { p: 0.4, training: true, seed: 77 }), [{ data, shape: [2, 3, 4, 5] }], { tol: 1e-3 });
  });

  it('matches x * mask / (1 - p) on a 4-D batch', async () => {
    const shape = [2, 8, 9, 11];
    const n = numel(shape);
    const x = nonzero(n, 12);
    const dy = randn(n, 13);
    const { y, dx } = await gpuDropout(x, dy, shape, { p: 0.25, training: true, seed: 5 });
    const mask = cpuMask(n, 0.25, 5);
    expectClose(y, Array.from(x, (v, i) => (mask[i] * v) / 0.75), 1e-6, 'y');
    expectClose(dx, Array.from(dy, (v, i) => (mask[i] * v) / 0.75), 1e-6, 'dx');
  });

  it('rejects bad arguments before any GPU work', () => {
    const x = tensor(randn(6, 1), [2, 3]);
    const xi = tensor(new Int32Array(6), [2, 3]);
    expectOpError(() => dropout(x, { p: -0.1, training: true, seed: 1 }), 'dropout', "'p'", '>= 0', '<= 1', '-0.1');
    expectOpError(() => dropout(x, { p: 1.5, training: true, seed: 1 }), 'dropout', "'p'", '1.5');
    expectOpError(() => dropout(x, { p: NaN, training: true, seed: 1 }), 'dropout', "'p'");
    expectOpError(() => dropout(x, { p: 0.5, training: true, seed: -1 }), 'dropout', "'seed'", '-1');
    expectOpError(() => dropout(x, { p: 0.5, training: true, seed: 0.5 }), 'dropout', "'seed'", 'integer');
    expectOpError(() => dropout(x, { p: 0.5, seed: 1 } as DropoutOptions), 'dropout', "'training'");
    expectOpError(() => dropout(x, undefined as unknown as DropoutOptions), 'dropout', "'opts'");
    expectOpError(() => dropout(xi, { p: 0.5, training: true, seed: 1 }), 'dropout', "'x'", 'f32', 'i32');
    expectOpError(() => dropout(null as unknown as Tensor, { p: 0.5, training: true, seed: 1 }), 'dropout', "'x'");
    x.dispose();
    xi.dispose();
  });
});
