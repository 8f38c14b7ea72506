// maxPool2d: forward and dx vs a float64 CPU reference (ties, padding, odd sizes), finite
// differences, NaN, memory, errors.
import { expect } from 'chai';
import { tensor, parameter, tidy, backward, noGrad, engine, maxPool2d, type Tensor, type MaxPool2dOptions } from '../src/index.js';
import { randn, numel, expectClose, gradCheck } from './helpers.js';

type Pair = [number, number];

/** PyTorch's max_pool2d on the CPU: windows clipped to the input, the first maximum in row-major
 * order wins (a NaN beats everything), dy routed to that element. */
function reference(x: Float32Array, shape: number[], k: Pair, s: Pair, pad: Pair, dy: Float32Array) {
  const [n, c, h, w] = shape;
  const oh = Math.floor((h + 2 * pad[0] - k[0]) / s[0]) + 1;
  const ow = Math.floor((w + 2 * pad[1] - k[1]) / s[1]) + 1;
  const y = new Float64Array(n * c * oh * ow);
  const dx = new Float64Array(x.length);
  for (let q = 0; q < n * c; q++) {
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        let best = -Infinity;
        let at = -1;
        for (let ky = 0; ky < k[0]; ky++) {
          for (let kx = 0; kx < k[1]; kx++) {
            const iy = oy * s[0] - pad[0] + ky;
            const ix = ox * s[1] - pad[1] + kx;
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            const j = (q * h + iy) * w + ix;
            if (at < 0 || x[j] > best || Number.isNaN(x[j])) {
              best = x[j];
              at = j;
            }
          }
        }
        const o = (q * oh + oy) * ow + ox;
        y[o] = best;
        dx[at] += dy[o];
      }
    }
  }
  return { y, dx, oh, ow };
}

async function gpu(xData: Float32Array, shape: number[], opts: MaxPool2dOptions, dyOf: (size: number) => Float32Array) {
  const x = parameter(xData, shape);
  let dy: Float32Array = new Float32Array(0);
  const y = tidy(() => {
    const out = maxPool2d(x, opts);
    dy = dyOf(out.size);
    backward(out, tensor(dy, out.shape));
    return out;
  });
  const res = { shape: [...y.shape], y: await y.float32(), dx: await x.grad!.float32(), dy };
  y.dispose();
  x.grad!.dispose();
  x.dispose();
  return res;
}

const pairOf = (v: number | Pair | undefined, d: number): Pair => (v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v);

const CASES: { name: string; shape: number[]; opts: MaxPool2dOptions; ties?: boolean }[] = [
  { name: '3x3/s2/p1 (ResNet stem), odd 13x11', shape: [2, 3, 13, 11], opts: { kernelSize: 3, stride: 2, padding: 1 } },
  { name: '3x3/s2/p1, even 8x8', shape: [2, 3, 8, 8], opts: { kernelSize: 3, stride: 2, padding: 1 } },
  { name: '3x3/s2/p1, 2x3', shape: [2, 2, 2, 3], opts: { kernelSize: 3, stride: 2, padding: 1 } },
  { name: '3x3/s2/p1, 1x1', shape: [3, 2, 1, 1], opts: { kernelSize: 3, stride: 2, padding: 1 } },
  { name: '3x3/s2/p1, 33x33 (many planes)', shape: [2, 17, 33, 33], opts: { kernelSize: 3, stride: 2, padding: 1 } },
  { name: '3x3/s2/p1 with ties (values from {0, 1, 2})', shape: [2, 3, 13, 11], opts: { kernelSize: 3, stride: 2, padding: 1 }, ties: true },
  { name: '2x2/s2, even 8x6', shape: [2, 3, 8, 6], opts: { kernelSize: 2, stride: 2 } },
  { name: '2x2/s2 (stride defaults to kernelSize), odd 7x9', shape: [2, 3, 7, 9], opts: { kernelSize: 2 } },
  { name: '2x2/s2 with ties', shape: [2, 3, 7, 9], opts: { kernelSize: 2, stride: 2 }, ties: true },
  { name: '[3, 2] kernel, [2, 1] stride, [1, 0] padding', shape: [2, 3, 9, 7], opts: { kernelSize: [3, 2], stride: [2, 1], padding: [1, 0] } },
  { name: '3x3/s1/p1 (overlapping windows)', shape: [2, 2, 6, 5], opts: { kernelSize: 3, stride: 1, padding: 1 }, ties: true },
];

describe('maxPool2d', () => {
  for (const cs of CASES) {
    it(`${cs.name}: forward and dx vs CPU float64`, async () => {
      const seed = cs.shape.reduce((a, b) => a * 31 + b, cs.ties ? 5 : 9);
      const x = cs.ties ? randn(numel(cs.shape), seed).map((v) => Math.min(2, Math.floor(Math.abs(v) * 2))) : randn(numel(cs.shape), seed);
      const k = pairOf(cs.opts.kernelSize, 1);
      const got = await gpu(x, cs.shape, cs.opts, (size) => randn(size, seed + 1));
      const ref = reference(x, cs.shape, k, cs.opts.stride === undefined ? k : pairOf(cs.opts.stride, 1), pairOf(cs.opts.padding, 0), got.dy);
      expect(got.shape).to.deep.equal([cs.shape[0], cs.shape[1], ref.oh, ref.ow]);
      expectClose(got.y, ref.y, 1e-4, 'y');
      expectClose(got.dx, ref.dx, 1e-3, 'dx');
    });
  }

  it('passes a finite-difference check with distinct values', async () => {
    // A permutation spaced 0.1 apart: the eps = 0.01 steps never change which element is the max.
    const distinct = (len: number, seed: number) => {
      const r = randn(len, seed);
      const order = Array.from(r.keys()).sort((a, b) => r[a] - r[b]);
      const v = new Float32Array(len);
      order.forEach((j, rank) => (v[j] = 0.1 * rank - 0.05 * len));
      return v;
    };
    await gradCheck((x) => maxPool2d(x, { kernelSize: 3, stride: 2, padding: 1 }), [{ data: distinct(2 * 2 * 5 * 4, 41), shape: [2, 2, 5, 4] }], { samples: 24 });
    await gradCheck((x) => maxPool2d(x, { kernelSize: 2, stride: 2 }), [{ data: distinct(1 * 2 * 4 * 5, 42), shape: [1, 2, 4, 5] }], { samples: 24 });
  });

  it('propagates NaN like PyTorch (the last NaN of a window is its argmax)', async () => {
    const shape = [1, 1, 5, 5];
    const x = randn(25, 51);
    x[6] = Number.NaN; // (1, 1): in windows (0, 0), (0, 1), (1, 0), (1, 1)
    x[12] = Number.NaN; // (2, 2): only in window (1, 1), where it is the later NaN and takes dy
    const got = await gpu(x, shape, { kernelSize: 3, stride: 2, padding: 1 }, (size) => randn(size, 52));
    const ref = reference(x, shape, [3, 3], [2, 2], [1, 1], got.dy);
    expect(Array.from(got.y).map(Number.isNaN)).to.deep.equal(Array.from(ref.y).map(Number.isNaN));
    expect(Array.from(got.y).filter(Number.isNaN).length).to.equal(4);
    expectClose(got.dx, ref.dx, 1e-6, 'dx');
  });

  it('saves no argmax without autograd and frees the saved argmax after backward', async () => {
    const x = parameter(randn(2 * 3 * 7 * 7, 61), [2, 3, 7, 7]);
    const xc = tensor(randn(2 * 3 * 7 * 7, 61), [2, 3, 7, 7]);
    const e = engine();
    const live = e.stats().liveBuffers;
    const a = noGrad(() => maxPool2d(x, { kernelSize: 3, stride: 2, padding: 1 }));
    const b = maxPool2d(xc, { kernelSize: 3, stride: 2, padding: 1 });
    expect(a.node).to.equal(null);
    expect(b.node).to.equal(null);
    expect(e.stats().liveBuffers).to.equal(live + 2);
    expect(Array.from(await a.float32())).to.deep.equal(Array.from(await b.float32()));
    a.dispose();
    b.dispose();
    tidy(() => backward(maxPool2d(x, { kernelSize: 3, stride: 2, padding: 1 })));
    x.grad!.dispose();
    x.grad = null;
    expect(e.stats().liveBuffers).to.equal(live);
    x.dispose();
    xc.dispose();
  });

  it('rejects bad arguments before any GPU work, naming the op and the argument', () => {
    const x = tensor(randn(2 * 3 * 4 * 5, 1), [2, 3, 4, 5]);
    const xi = tensor(new Int32Array(2 * 3 * 4 * 5), [2, 3, 4, 5], 'i32');
    const x3 = tensor(randn(12, 1), [3, 4, 1]);
    const e = engine();
    const before = e.stats();
    const bad: [() => Tensor, RegExp][] = [
      [() => maxPool2d(x3, { kernelSize: 2 }), /maxPool2d: argument 'x' must have rank 4.*\[3, 4, 1\]/],
      [() => maxPool2d(xi, { kernelSize: 2 }), /maxPool2d: argument 'x' must be f32, got i32/],
      [() => maxPool2d(x, {} as MaxPool2dOptions), /maxPool2d: 'kernelSize' is required/],
      [() => maxPool2d(x, { kernelSize: 0 }), /maxPool2d: 'kernelSize' must be an integer >= 1/],
      [() => maxPool2d(x, { kernelSize: [3, 1.5] }), /maxPool2d: 'kernelSize' must be an integer >= 1/],
      [() => maxPool2d(x, { kernelSize: 3, stride: 0 }), /maxPool2d: 'stride' must be an integer >= 1/],
      [() => maxPool2d(x, { kernelSize: 3, padding: -1 }), /maxPool2d: 'padding' must be an integer >= 0/],
      [() => maxPool2d(x, { kernelSize: 3, padding: 2 }), /maxPool2d: 'padding' \[2, 2\] must be at most half of 'kernelSize' \[3, 3\]/],
      [() => maxPool2d(x, { kernelSize: 5 }), /maxPool2d: x of shape \[2, 3, 4, 5\] is too small for kernelSize \[5, 5\]/],
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
