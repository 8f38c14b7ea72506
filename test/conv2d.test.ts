import { expect } from 'chai';
import { tensor, parameter, tidy, backward, noGrad, engine, conv2d, type Tensor, type Conv2dOptions } from '../src/index.js';
import { tapRange, setConv2dVariant, CONV2D_VARIANTS } from '../src/ops/conv2d/index.js';
import { randn, expectClose, gradCheck } from './helpers.js';

// An independent float64 CPU reference: direct loops over the definition of the convolution.
interface Geo {
  n: number; cin: number; h: number; w: number; cout: number; kh: number; kw: number;
  oh: number; ow: number; sh: number; sw: number; ph: number; pw: number; dh: number; dw: number;
}

const two = (v: number | [number, number] | undefined, d: number): [number, number] =>
  v === undefined ? [d, d] : typeof v === 'number' ? [v, v] : v;

function geo(xs: number[], ws: number[], o: Conv2dOptions): Geo {
  const [n, cin, h, w] = xs;
  const [cout, , kh, kw] = ws;
  const [sh, sw] = two(o.stride, 1);
  const [ph, pw] = two(o.padding, 0);
  const [dh, dw] = two(o.dilation, 1);
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  return { n, cin, h, w, cout, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw };
}

/** Calls f(n, co, oy, ox, ci, ky, kx, xIndex, wIndex, yIndex) for every tap that reads inside x. */
function eachTap(g: Geo, f: (xi: number, wi: number, yi: number, co: number) => void): void {
  for (let n = 0; n < g.n; n++)
    for (let co = 0; co < g.cout; co++)
      for (let oy = 0; oy < g.oh; oy++)
        for (let ox = 0; ox < g.ow; ox++)
          for (let ci = 0; ci < g.cin; ci++)
            for (let ky = 0; ky < g.kh; ky++) {
              const iy = oy * g.sh - g.ph + ky * g.dh;
              if (iy < 0 || iy >= g.h) continue;
              for (let kx = 0; kx < g.kw; kx++) {
                const ix = ox * g.sw - g.pw + kx * g.dw;
                if (ix < 0 || ix >= g.w) continue;
                f(((n * g.cin + ci) * g.h + iy) * g.w + ix, ((co * g.cin + ci) * g.kh + ky) * g.kw + kx, ((n * g.cout + co) * g.oh + oy) * g.ow + ox, co);
              }
            }
}

function refForward(g: Geo, x: Float32Array, w: Float32Array, b: Float32Array | null): Float64Array {
  const y = new Float64Array(g.n * g.cout * g.oh * g.ow);
  if (b) for (let i = 0; i < y.length; i++) y[i] = b[Math.floor(i / (g.oh * g.ow)) % g.cout];
  eachTap(g, (xi, wi, yi) => (y[yi] += w[wi] * x[xi]));
  return y;
}

function refBackward(g: Geo, x: Float32Array, w: Float32Array, dy: Float32Array) {
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(g.cout);
  eachTap(g, (xi, wi, yi) => {
    dx[xi] += w[wi] * dy[yi];
    dw[wi] += x[xi] * dy[yi];
  });
  for (let i = 0; i < dy.length; i++) db[Math.floor(i / (g.oh * g.ow)) % g.cout] += dy[i];
  return { dx, dw, db };
}

interface Case {
  name: string;
  x: number[];
  w: number[];
  bias: boolean;
  opts: Conv2dOptions;
}

const dilationCases: Case[] = [1, 2, 6, 12, 18, 24, 36].map((d, i) => ({
  name: `3×3 dilation ${d} padding ${d} on 13×11 (rate vs map size)`,
  x: [i % 2 ? 3 : 2, 5, 13, 11],
  w: [7, 5, 3, 3],
  bias: i !== 3,
  opts: { padding: d, dilation: d },
}));

const cases: Case[] = [
  ...dilationCases,
  { name: '7×7 stride 2 padding 3 (the stem)', x: [2, 3, 23, 19], w: [8, 3, 7, 7], bias: true, opts: { stride: 2, padding: 3 } },
  { name: '1×1 stride 2, no bias', x: [3, 6, 9, 12], w: [5, 6, 1, 1], bias: false, opts: { stride: 2 } },
  { name: '1×1 stride 1', x: [1, 6, 9, 12], w: [10, 6, 1, 1], bias: true, opts: {} },
  { name: '3×3 stride 2 padding 1', x: [2, 4, 10, 9], w: [6, 4, 3, 3], bias: true, opts: { stride: 2, padding: 1 } },
  { name: '3×3 stride 2 padding 1, wide (several column blocks per residue)', x: [1, 3, 7, 37], w: [5, 3, 3, 3], bias: false, opts: { stride: 2, padding: 1 } },
  { name: '3×3 stride 2 dilation 2 padding 2', x: [2, 3, 11, 11], w: [4, 3, 3, 3], bias: true, opts: { stride: 2, padding: 2, dilation: 2 } },
  { name: '5×5 padding 1', x: [2, 3, 8, 7], w: [2, 3, 5, 5], bias: true, opts: { padding: 1 } },
  { name: 'padding and dilation pairs [2, 3]', x: [1, 3, 9, 10], w: [5, 3, 3, 3], bias: true, opts: { padding: [2, 3], dilation: [2, 3] } },
  { name: 'stride 3×2, padding [0, 1], dilation [1, 2], 2×4 kernel', x: [2, 3, 11, 14], w: [6, 3, 2, 4], bias: true, opts: { stride: [3, 2], padding: [0, 1], dilation: [1, 2] } },
  { name: '9 → 70 channels on 2×11×13 (crosses the tiled variant\'s 64-channel and 64-pixel tiles)', x: [2, 9, 11, 13], w: [70, 9, 3, 3], bias: true, opts: { padding: 1 } },
  { name: '17 → 33 channels (crosses the channel tiles), dilation 2, no bias', x: [2, 17, 9, 10], w: [33, 17, 3, 3], bias: false, opts: { padding: 2, dilation: 2 } },
  { name: '12 → 20 channels (multiples of 4, not of the 8/16 tiles), stride 2, dilation 3', x: [2, 12, 14, 15], w: [20, 12, 3, 3], bias: true, opts: { stride: 2, padding: 3, dilation: 3 } },
  { name: '1×1 input map, 3×3 padding 1', x: [3, 3, 1, 1], w: [5, 3, 3, 3], bias: true, opts: { padding: 1 } },
  { name: 'padding larger than the kernel reach (border outputs see only padding)', x: [1, 2, 5, 6], w: [3, 2, 3, 3], bias: true, opts: { padding: 4 } },
  { name: 'stride 2 with no padding, odd map (unused last row/column)', x: [2, 5, 12, 13], w: [9, 5, 3, 3], bias: false, opts: { stride: 2 } },
];

describe('conv2d', () => {
  // Every forward kernel variant (shaders/conv2d.fwd*.wgsl), forced in turn.
  for (const variant of CONV2D_VARIANTS) describe(`forward (${variant} variant) and gradients vs a float64 CPU reference`, () => {
    before(() => setConv2dVariant(variant));
    after(() => setConv2dVariant(null));
    cases.forEach((c, ci) => {
      it(c.name, async () => {
        const g = geo(c.x, c.w, c.opts);
        const seed = 100 * (ci + 1);
        const xd = randn(c.x.reduce((a, b) => a * b), seed);
        const wd = randn(c.w.reduce((a, b) => a * b), seed + 1, 0.3);
        const bd = c.bias ? randn(c.w[0], seed + 2) : null;
        const dyd = randn(g.n * g.cout * g.oh * g.ow, seed + 3);
        const x = parameter(xd, c.x);
        const w = parameter(wd, c.w);
        const b = bd ? parameter(bd, [c.w[0]]) : null;
        try {
          const y = tidy(() => {
            const out = conv2d(x, w, b, c.opts);
            const keepOut = noGrad(() => conv2d(x, w, b, c.opts));
            backward(out, tensor(dyd, out.shape));
            return keepOut;
          });
          expect(y.shape).to.deep.equal([g.n, g.cout, g.oh, g.ow]);
          expectClose(await y.float32(), refForward(g, xd, wd, bd), 1e-4, 'y');
          y.dispose();
          const ref = refBackward(g, xd, wd, dyd);
          expectClose(await x.grad!.float32(), ref.dx, 1e-3, 'dx');
          expectClose(await w.grad!.float32(), ref.dw, 1e-3, 'dw');
          if (b) expectClose(await b.grad!.float32(), ref.db, 1e-3, 'db');
        } finally {
          for (const t of [x, w, b]) {
            t?.grad?.dispose();
            t?.dispose();
          }
        }
      });
    });
  });

  describe('finite differences', () => {
    const f = (opts: Conv2dOptions) => (x: Tensor, w: Tensor, b: Tensor) => conv2d(x, w, b, opts);
    it('3×3 dilation 2 stride 2 padding 2', async () => {
      await gradCheck(f({ stride: 2, padding: 2, dilation: 2 }), [
        { data: randn(2 * 2 * 7 * 6, 11), shape: [2, 2, 7, 6] },
        { data: randn(3 * 2 * 9, 12, 0.5), shape: [3, 2, 3, 3] },
        { data: randn(3, 13), shape: [3] },
      ]);
    });
    it('3×3 padding 1, odd sizes', async () => {
      await gradCheck(f({ padding: 1 }), [
        { data: randn(1 * 3 * 5 * 3, 21), shape: [1, 3, 5, 3] },
        { data: randn(5 * 3 * 9, 22, 0.5), shape: [5, 3, 3, 3] },
        { data: randn(5, 23), shape: [5] },
      ]);
    });
  });

  describe('tap pruning', () => {
    it('finds the taps that can reach the input', () => {
      // k, stride, pad, dil, size, out
      expect(tapRange(3, 1, 1, 1, 13, 13)).to.deep.equal([0, 3]);
      expect(tapRange(3, 1, 12, 12, 13, 13)).to.deep.equal([0, 3]);
      expect(tapRange(3, 1, 18, 18, 13, 13)).to.deep.equal([1, 2]);
      expect(tapRange(3, 1, 36, 36, 11, 11)).to.deep.equal([1, 2]);
      expect(tapRange(7, 2, 3, 1, 5, 3)).to.deep.equal([0, 7]);
      // Only the last tap of a 3-tap kernel reaches a 1-pixel map padded by 4 on the left.
      expect(tapRange(3, 1, 4, 2, 1, 5)).to.deep.equal([0, 3]);
      expect(tapRange(3, 1, 4, 4, 1, 1)).to.deep.equal([1, 2]);
    });

    for (const variant of CONV2D_VARIANTS) it(`a 3×3 conv at rate 36 on 13×11 is bit-for-bit the 1×1 conv with its centre taps (${variant} forward)`, async () => {
      setConv2dVariant(variant);
      const xs = [2, 6, 13, 11];
      const xd = randn(2 * 6 * 13 * 11, 5);
      const wd = randn(9 * 6 * 9, 6);
      const bd = randn(9, 7);
      const dyd = randn(2 * 9 * 13 * 11, 8);
      const centre = new Float32Array(9 * 6).map((_, i) => wd[i * 9 + 4]);
      const run = (w: Float32Array, k: number, opts: Conv2dOptions) => {
        const x = parameter(xd, xs);
        const wt = parameter(w, [9, 6, k, k]);
        const b = parameter(bd, [9]);
        tidy(() => {
          const y = conv2d(x, wt, b, opts);
          backward(y, tensor(dyd, y.shape));
          return [];
        });
        const y = noGrad(() => conv2d(x, wt, b, opts));
        const out = { y, dx: x.grad!, dw: wt.grad!, db: b.grad! };
        for (const t of [x, wt, b]) t.dispose();
        return out;
      };
      const big = run(wd, 3, { padding: 36, dilation: 36 });
      const one = run(centre, 1, {});
      const [yb, y1, dxb, dx1, dwb, dw1] = await Promise.all([big.y, one.y, big.dx, one.dx, big.dw, one.dw].map((t) => t.float32()));
      expect(Array.from(yb)).to.deep.equal(Array.from(y1));
      expect(Array.from(dxb)).to.deep.equal(Array.from(dx1));
      // dw: the centre taps equal the 1×1 gradient; the pruned taps are written as exact zeros.
      const expected = new Float32Array(dwb.length);
      dw1.forEach((v, i) => (expected[i * 9 + 4] = v));
      expect(Array.from(dwb)).to.deep.equal(Array.from(expected));
      for (const t of [...Object.values(big), ...Object.values(one)]) t.dispose();
      setConv2dVariant(null);
    });
  });

  describe('only the needed gradients are computed', () => {
    const dispatchesOfBackward = (xGrad: boolean, wGrad: boolean, bGrad: boolean) => {
      const x = xGrad ? parameter(randn(2 * 3 * 6 * 5, 1), [2, 3, 6, 5]) : tensor(randn(2 * 3 * 6 * 5, 1), [2, 3, 6, 5]);
      const w = wGrad ? parameter(randn(4 * 3 * 9, 2), [4, 3, 3, 3]) : tensor(randn(4 * 3 * 9, 2), [4, 3, 3, 3]);
      const b = bGrad ? parameter(randn(4, 3), [4]) : tensor(randn(4, 3), [4]);
      let n = 0;
      tidy(() => {
        const y = conv2d(x, w, b, { padding: 1 });
        const dy = tensor(randn(y.size, 4), y.shape);
        const before = engine().stats().dispatches;
        backward(y, dy);
        n = engine().stats().dispatches - before;
      });
      const grads = [x.grad, w.grad, b.grad].map((gr) => gr !== null);
      for (const t of [x, w, b]) {
        t.grad?.dispose();
        t.dispose();
      }
      return { n, grads };
    };

    it('computes dx only when x requires a gradient (the first conv needs none)', () => {
      const all = dispatchesOfBackward(true, true, true);
      const noX = dispatchesOfBackward(false, true, true);
      const onlyX = dispatchesOfBackward(true, false, false);
      const onlyB = dispatchesOfBackward(false, false, true);
      expect(all.grads).to.deep.equal([true, true, true]);
      expect(noX.grads).to.deep.equal([false, true, true]);
      expect(onlyX.grads).to.deep.equal([true, false, false]);
      expect(onlyB.grads).to.deep.equal([false, false, true]);
      // dx = weight packing + gather (2 dispatches), dw = 2 channels-last copies + reduction (3), db = 1.
      expect(all.n - noX.n).to.equal(2);
      expect(all.n - onlyX.n).to.equal(4);
      expect(noX.n - onlyB.n).to.equal(3);
    });

    it('handles an empty batch (n = 0): empty output, zero dw and db', async () => {
      const x = parameter(new Float32Array(0), [0, 3, 5, 4]);
      const w = parameter(randn(2 * 3 * 9, 2), [2, 3, 3, 3]);
      const b = parameter(randn(2, 3), [2]);
      tidy(() => {
        const y = conv2d(x, w, b, { padding: 1 });
        expect(y.shape).to.deep.equal([0, 2, 5, 4]);
        backward(y, tensor(new Float32Array(0), y.shape));
      });
      expect(x.grad!.shape).to.deep.equal([0, 3, 5, 4]);
      expect(Array.from(await w.grad!.float32())).to.deep.equal(new Array(2 * 3 * 9).fill(0));
      expect(Array.from(await b.grad!.float32())).to.deep.equal([0, 0]);
      for (const t of [x, w, b]) {
        t.grad?.dispose();
        t.dispose();
      }
    });

    it('frees its intermediates: packed weights, channels-last copies, saved tensors', () => {
      const before = engine().stats().liveBuffers;
      const x = parameter(randn(2 * 5 * 7 * 6, 1), [2, 5, 7, 6]);
      const w = parameter(randn(6 * 5 * 9, 2), [6, 5, 3, 3]);
      const b = parameter(randn(6, 3), [6]);
      tidy(() => {
        const y = conv2d(x, w, b, { stride: 2, padding: 2, dilation: 2 });
        backward(y, tensor(randn(y.size, 4), y.shape));
        conv2d(x, w, null); // a forward whose graph is never walked
      });
      for (const t of [x, w, b]) {
        t.grad?.dispose();
        t.dispose();
      }
      expect(engine().stats().liveBuffers).to.equal(before);
    });

    it('records no graph under noGrad or when nothing requires a gradient', () => {
      const x = tensor(randn(1 * 2 * 4 * 4, 1), [1, 2, 4, 4]);
      const w = parameter(randn(3 * 2 * 9, 2), [3, 2, 3, 3]);
      tidy(() => {
        expect(noGrad(() => conv2d(x, w, null, { padding: 1 })).node).to.equal(null);
        const wc = tensor(randn(3 * 2 * 9, 2), [3, 2, 3, 3]);
        expect(conv2d(x, wc).requiresGrad).to.equal(false);
        expect(conv2d(x, w).requiresGrad).to.equal(true);
      });
      x.dispose();
      w.dispose();
    });
  });

  describe('argument errors (thrown before any GPU work)', () => {
    const bad = (fn: (x: Tensor, w: Tensor, b: Tensor) => unknown, ...parts: (string | RegExp)[]) => {
      tidy(() => {
        const x = tensor(randn(2 * 5 * 13 * 11, 1), [2, 5, 13, 11]);
        const w = tensor(randn(7 * 5 * 9, 2), [7, 5, 3, 3]);
        const b = tensor(randn(7, 3), [7]);
        const before = engine().stats().dispatches;
        let err: Error | null = null;
        try {
          fn(x, w, b);
        } catch (e) {
          err = e as Error;
        }
        expect(err, 'expected an error').to.be.instanceOf(Error);
        expect(err!.message).to.match(/^atrous: conv2d: /);
        for (const p of parts) {
          if (typeof p === 'string') expect(err!.message).to.include(p);
          else expect(err!.message).to.match(p);
        }
        expect(engine().stats().dispatches).to.equal(before);
      });
    };

    it('weight cin ≠ x cin', () => {
      bad((x) => conv2d(x, tensor(randn(7 * 4 * 9, 2), [7, 4, 3, 3])), '[2, 5, 13, 11]', '[7, 4, 3, 3]', 'input channels');
    });
    it('rank ≠ 4', () => {
      bad((_x, w) => conv2d(tensor(randn(5 * 13 * 11, 1), [5, 13, 11]), w), "'x'", 'rank 4', '[5, 13, 11]');
      bad((x) => conv2d(x, tensor(randn(7 * 5 * 3, 1), [7, 5, 3])), "'weight'", 'rank 4', '[7, 5, 3]');
    });
    it('bias shape', () => {
      bad((x, w) => conv2d(x, w, tensor(randn(6, 1), [6])), 'bias [6]', '[7]', '[7, 5, 3, 3]');
      bad((x, w) => conv2d(x, w, tensor(randn(7, 1), [1, 7])), 'bias [1, 7]');
    });
    it('groups ≠ 1', () => {
      bad((x, w, b) => conv2d(x, w, b, { groups: 5 }), 'groups', '[2, 5, 13, 11]', '[7, 5, 3, 3]');
      bad((x, w, b) => conv2d(x, w, b, { groups: 1.5 }), "'groups'", '1.5', '[2, 5, 13, 11]');
    });
    it('negative padding, zero stride or dilation, malformed pairs', () => {
      bad((x, w, b) => conv2d(x, w, b, { padding: -1 }), "'padding'", '-1', '[2, 5, 13, 11]', '[7, 5, 3, 3]');
      bad((x, w, b) => conv2d(x, w, b, { padding: [1, -2] }), "'padding'", '[1,-2]');
      bad((x, w, b) => conv2d(x, w, b, { stride: 0 }), "'stride'", '>= 1');
      bad((x, w, b) => conv2d(x, w, b, { dilation: [1, 0] }), "'dilation'", '>= 1');
      bad((x, w, b) => conv2d(x, w, b, { stride: 1.5 }), "'stride'");
    });
    it('output size ≤ 0', () => {
      bad((_x, w) => conv2d(tensor(randn(1 * 5 * 2 * 9, 1), [1, 5, 2, 9]), w), 'output size 0×7', '[1, 5, 2, 9]', '[7, 5, 3, 3]');
      bad((x, w) => conv2d(x, w, null, { dilation: 7 }), 'output size -1×-3', 'dilation [7, 7]');
    });
    it('non-tensor arguments', () => {
      bad((x) => conv2d(x, null as unknown as Tensor), "'weight' must be a Tensor");
    });
  });
});
