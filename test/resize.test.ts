// interpolate (bilinear): forward and dx vs a float64 CPU reference, finite differences, errors.
import { expect } from 'chai';
import { tensor, parameter, tidy, backward, noGrad, engine, interpolate, type Tensor } from '../src/index.js';
import { randn, numel, expectClose, gradCheck } from './helpers.js';

interface Tap {
  i0: number;
  i1: number;
  l1: number;
}

/** The taps of one axis, in float64 from the definition of align_corners (not from the kernel). */
function axisTaps(nIn: number, nOut: number, alignCorners: boolean): Tap[] {
  const taps: Tap[] = [];
  for (let d = 0; d < nOut; d++) {
    if (nIn === nOut) {
      taps.push({ i0: d, i1: d, l1: 0 });
      continue;
    }
    let src: number;
    if (alignCorners) src = nOut > 1 ? (d * (nIn - 1)) / (nOut - 1) : 0;
    else src = Math.max(((d + 0.5) * nIn) / nOut - 0.5, 0);
    const i0 = Math.min(Math.floor(src), nIn - 1);
    taps.push({ i0, i1: Math.min(i0 + 1, nIn - 1), l1: Math.min(Math.max(src - i0, 0), 1) });
  }
  return taps;
}

/** Forward and dx (scattering dy through the same weights) on the CPU. */
function reference(x: Float32Array, shape: number[], oh: number, ow: number, alignCorners: boolean, dy: Float32Array) {
  const [n, c, h, w] = shape;
  const ty = axisTaps(h, oh, alignCorners);
  const tx = axisTaps(w, ow, alignCorners);
  const y = new Float64Array(n * c * oh * ow);
  const dx = new Float64Array(x.length);
  for (let q = 0; q < n * c; q++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        const o = (q * oh + oy) * ow + ox;
        const a = ty[oy];
        const b = tx[ox];
        const taps: [number, number, number][] = [
          [a.i0, b.i0, (1 - a.l1) * (1 - b.l1)],
          [a.i0, b.i1, (1 - a.l1) * b.l1],
          [a.i1, b.i0, a.l1 * (1 - b.l1)],
          [a.i1, b.i1, a.l1 * b.l1],
        ];
        for (const [iy, ix, wt] of taps) {
          const k = (q * h + iy) * w + ix;
          y[o] += wt * x[k];
          dx[k] += wt * dy[o];
        }
      }
    }
  }
  return { y, dx };
}

/** Runs interpolate forward and backward on the GPU; returns y and x.grad. */
async function gpu(xData: Float32Array, shape: number[], size: [number, number], alignCorners: boolean, dy: Float32Array) {
  const x = parameter(xData, shape);
  const y = tidy(() => {
    const out = interpolate(x, { size, alignCorners });
    backward(out, tensor(dy, out.shape));
    return out;
  });
  const yv = await y.float32();
  const dxv = await x.grad!.float32();
  y.dispose();
  x.grad!.dispose();
  x.dispose();
  return { y: yv, dx: dxv };
}

const CASES: { name: string; shape: number[]; size: [number, number] }[] = [
  { name: 'x2', shape: [2, 3, 5, 4], size: [10, 8] },
  { name: 'x4', shape: [2, 3, 5, 5], size: [20, 20] },
  { name: 'x8', shape: [2, 2, 3, 5], size: [24, 40] },
  { name: 'x16', shape: [2, 2, 3, 4], size: [48, 64] },
  { name: 'non-integer 7x5 -> 17x13', shape: [2, 3, 7, 5], size: [17, 13] },
  { name: 'down 17x13 -> 7x5', shape: [2, 3, 17, 13], size: [7, 5] },
  { name: '9x9 -> 17x17', shape: [2, 2, 9, 9], size: [17, 17] },
  { name: 'from 1x1', shape: [2, 3, 1, 1], size: [5, 6] },
  { name: 'to one row and one column', shape: [2, 2, 6, 7], size: [1, 3] },
  { name: 'same size (copy)', shape: [2, 2, 5, 6], size: [5, 6] },
  { name: 'one axis up, one down, odd', shape: [3, 1, 3, 29], size: [11, 7] },
];

describe('interpolate (bilinear)', () => {
  for (const alignCorners of [false, true]) {
    for (const cs of CASES) {
      it(`${cs.name}, alignCorners=${alignCorners}: forward and dx vs CPU float64`, async () => {
        const seed = cs.shape.reduce((a, b) => a * 31 + b, alignCorners ? 7 : 3);
        const x = randn(numel(cs.shape), seed);
        const [n, c] = cs.shape;
        const dy = randn(n * c * cs.size[0] * cs.size[1], seed + 1);
        const ref = reference(x, cs.shape, cs.size[0], cs.size[1], alignCorners, dy);
        const got = await gpu(x, cs.shape, cs.size, alignCorners, dy);
        expectClose(got.y, ref.y, 1e-4, 'y');
        expectClose(got.dx, ref.dx, 1e-3, 'dx');
      });
    }
  }

  it('accepts a single number as the size', async () => {
    const x = randn(2 * 1 * 3 * 4, 5);
    const dy = randn(2 * 7 * 7, 6);
    const ref = reference(x, [2, 1, 3, 4], 7, 7, false, dy);
    const out = noGrad(() => interpolate(tensor(x, [2, 1, 3, 4]), { size: 7 }));
    expect(out.shape).to.deep.equal([2, 1, 7, 7]);
    expectClose(await out.float32(), ref.y, 1e-4, 'y');
    out.dispose();
  });

  it('gives bit-identical dx on repeated runs (the gather has a fixed summation order)', async () => {
    const x = randn(2 * 2 * 5 * 3, 11);
    const dy = randn(2 * 2 * 37 * 29, 12);
    const a = await gpu(x, [2, 2, 5, 3], [37, 29], false, dy);
    const b = await gpu(x, [2, 2, 5, 3], [37, 29], false, dy);
    expect(Array.from(a.dx)).to.deep.equal(Array.from(b.dx));
  });

  it('propagates NaN like PyTorch, through zero-weight taps too (forward and dx)', async () => {
    // Output (0, 0) of a x4 upsample reads inputs 0 and 1 of each axis, index 1 with weight 0.
    const shape = [1, 1, 3, 3];
    const x = randn(9, 31);
    x[4] = Number.NaN;
    const dy = randn(144, 32);
    dy[0] = Number.NaN;
    const ref = reference(x, shape, 12, 12, false, dy);
    const got = await gpu(x, shape, [12, 12], false, dy);
    for (const [what, a, b] of [['y', got.y, ref.y], ['dx', got.dx, ref.dx]] as const) {
      const finiteA = Array.from(a).map((v, i) => (Number.isNaN(b[i]) ? 0 : v));
      const finiteB = Array.from(b).map((v) => (Number.isNaN(v) ? 0 : v));
      expect(Array.from(a).map(Number.isNaN), `${what} NaN pattern`).to.deep.equal(Array.from(b).map(Number.isNaN));
      expectClose(finiteA, finiteB, 1e-4, what);
    }
    expect(Array.from(ref.dx).filter(Number.isNaN).length).to.be.greaterThan(1);
  });

  for (const alignCorners of [false, true]) {
    it(`passes a finite-difference check on tiny shapes, alignCorners=${alignCorners}`, async () => {
      await gradCheck((x) => interpolate(x, { size: [5, 7], alignCorners }), [{ data: randn(24, 21), shape: [1, 2, 3, 4] }]);
      await gradCheck((x) => interpolate(x, { size: [3, 2], alignCorners }), [{ data: randn(60, 22), shape: [2, 1, 5, 6] }]);
    });
  }

  it('rejects bad arguments before any GPU work, naming the op and the argument', () => {
    const x = tensor(randn(2 * 3 * 4 * 5, 1), [2, 3, 4, 5]);
    const xi = tensor(new Int32Array(2 * 3 * 4 * 5), [2, 3, 4, 5], 'i32');
    const x3 = tensor(randn(12, 1), [3, 4, 1]);
    const e = engine();
    const before = e.stats();
    const bad: [() => Tensor, RegExp][] = [
      [() => interpolate(x3, { size: 4 }), /interpolate: argument 'x' must have rank 4.*\[3, 4, 1\]/],
      [() => interpolate(xi, { size: 4 }), /interpolate: argument 'x' must be f32, got i32/],
      [() => interpolate(x, { size: 0 }), /interpolate: 'size' must be an integer >= 1/],
      [() => interpolate(x, { size: [4, 2.5] }), /interpolate: 'size' must be an integer >= 1/],
      [() => interpolate(x, { size: [4, 4, 4] as unknown as [number, number] }), /interpolate: 'size'/],
      [() => interpolate(x, {} as unknown as { size: number }), /interpolate: 'size' is required.*\[2, 3, 4, 5\]/],
      [() => interpolate(x, { size: 8, mode: 'nearest' as 'bilinear' }), /interpolate: 'mode' must be 'bilinear'.*"nearest"/],
      [() => interpolate(x, { size: 8, alignCorners: 1 as unknown as boolean }), /interpolate: 'alignCorners' must be a boolean/],
    ];
    for (const [f, msg] of bad) expect(f).to.throw(msg);
    const after = e.stats();
    expect(after.dispatches).to.equal(before.dispatches);
    expect(after.liveBuffers).to.equal(before.liveBuffers);
    x.dispose();
    xi.dispose();
    x3.dispose();
  });
});
