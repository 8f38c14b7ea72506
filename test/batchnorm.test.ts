import { expect } from 'chai';
import { Tensor, tensor, parameter, tidy, backward, batchNorm, engine, type BatchNormOptions } from '../src/index.js';
import { setKernelVariant } from '../src/ops/variants.js';
import { randn, numel, expectClose, gradCheck } from './helpers.js';

// A float64 CPU batch norm (torch.nn.functional.batch_norm semantics, plus the M == 1 rule of
// src/ops/batchnorm.ts) with its gradients for the upstream gradient dy.
interface Ref {
  y: Float64Array;
  dx: Float64Array;
  dw: Float64Array;
  db: Float64Array;
  rm: Float64Array | null;
  rv: Float64Array | null;
}

function bnRef(
  x: Float32Array,
  shape: number[],
  w: Float32Array | null,
  b: Float32Array | null,
  rm: Float32Array | null,
  rv: Float32Array | null,
  training: boolean,
  momentum: number,
  eps: number,
  dy: Float32Array,
): Ref {
  const [n, c] = shape;
  const hw = shape.length === 4 ? shape[2] * shape[3] : 1;
  const m = n * hw;
  const at = (ni: number, ci: number, s: number) => (ni * c + ci) * hw + s;
  const out: Ref = {
    y: new Float64Array(x.length),
    dx: new Float64Array(x.length),
    dw: new Float64Array(c),
    db: new Float64Array(c),
    rm: rm ? Float64Array.from(rm) : null,
    rv: rv ? Float64Array.from(rv) : null,
  };
  for (let ci = 0; ci < c; ci++) {
    let mean: number;
    let v: number;
    if (training) {
      let s = 0;
      for (let ni = 0; ni < n; ni++) for (let k = 0; k < hw; k++) s += x[at(ni, ci, k)];
      mean = s / m;
      let s2 = 0;
      for (let ni = 0; ni < n; ni++) for (let k = 0; k < hw; k++) s2 += (x[at(ni, ci, k)] - mean) ** 2;
      v = s2 / m;
      if (out.rm) out.rm[ci] = (1 - momentum) * out.rm[ci] + momentum * mean;
      if (out.rv && m > 1) out.rv[ci] = (1 - momentum) * out.rv[ci] + (momentum * v * m) / (m - 1);
    } else {
      mean = rm![ci];
      v = rv![ci];
    }
    const invstd = 1 / Math.sqrt(v + eps);
    const wc = w ? w[ci] : 1;
    const bc = b ? b[ci] : 0;
    let sdy = 0;
    let sdyx = 0;
    for (let ni = 0; ni < n; ni++) {
      for (let k = 0; k < hw; k++) {
        const i = at(ni, ci, k);
        const xhat = (x[i] - mean) * invstd;
        out.y[i] = xhat * wc + bc;
        sdy += dy[i];
        sdyx += dy[i] * xhat;
      }
    }
    out.db[ci] = sdy;
    out.dw[ci] = sdyx;
    for (let ni = 0; ni < n; ni++) {
      for (let k = 0; k < hw; k++) {
        const i = at(ni, ci, k);
        const xhat = (x[i] - mean) * invstd;
        out.dx[i] = training ? ((wc * invstd) / m) * (m * dy[i] - sdy - xhat * sdyx) : dy[i] * wc * invstd;
      }
    }
  }
  return out;
}

interface Case {
  shape: number[];
  training: boolean;
  momentum?: number;
  eps?: number;
  affine?: boolean; // weight and bias given (default true)
  running?: boolean; // running statistics given (default true)
  xScale?: number;
  xOffset?: number;
  /** Which of x, weight, bias require a gradient (default all). */
  grads?: [boolean, boolean, boolean];
  seed?: number;
}

interface Result {
  y: Float32Array;
  dx: Float32Array | null;
  dw: Float32Array | null;
  db: Float32Array | null;
  rm: Float32Array | null;
  rv: Float32Array | null;
}

async function runCase(k: Case): Promise<{ gpu: Result; ref: Ref }> {
  const seed = k.seed ?? 1;
  const c = k.shape[1];
  const size = numel(k.shape);
  const affine = k.affine ?? true;
  const running = k.running ?? true;
  const [gx, gw, gb] = k.grads ?? [true, true, true];
  const xData = randn(size, seed, k.xScale ?? 1, k.xOffset ?? 0);
  const wData = affine ? randn(c, seed + 1, 0.5, 1) : null;
  const bData = affine ? randn(c, seed + 2) : null;
  const rmData = running ? randn(c, seed + 3) : null;
  const rvData = running ? randn(c, seed + 4).map((v) => 0.25 + Math.abs(v)) : null;
  const dy = randn(size, seed + 5);
  const momentum = k.momentum ?? 0.1;
  const eps = k.eps ?? 1e-5;
  const mk = (d: Float32Array | null, shape: number[], grad: boolean) => (d ? (grad ? parameter(d, shape) : tensor(d, shape)) : null);
  const x = mk(xData, k.shape, gx)!;
  const w = mk(wData, [c], gw);
  const b = mk(bData, [c], gb);
  const rm = mk(rmData, [c], false);
  const rv = mk(rvData, [c], false);
  const opts: BatchNormOptions = { training: k.training };
  if (k.momentum !== undefined) opts.momentum = k.momentum;
  if (k.eps !== undefined) opts.eps = k.eps;
  const y = tidy(() => {
    const out = batchNorm(x, w, b, rm, rv, opts);
    if (out.requiresGrad) backward(out, tensor(dy, k.shape));
    return out;
  });
  const read = async (t: Tensor | null | undefined) => (t ? ((await t.data()) as Float32Array) : null);
  const gpu: Result = {
    y: (await y.data()) as Float32Array,
    dx: await read(x.grad),
    dw: await read(w?.grad),
    db: await read(b?.grad),
    rm: await read(rm),
    rv: await read(rv),
  };
  for (const t of [y, x, w, b, rm, rv]) {
    if (!t) continue;
    t.grad?.dispose();
    t.grad = null;
    t.dispose();
  }
  const ref = bnRef(xData, k.shape, wData, bData, rmData, rvData, k.training, momentum, eps, dy);
  return { gpu, ref };
}

/** Forward, every gradient and the running statistics against the float64 reference. */
async function checkCase(k: Case): Promise<void> {
  const { gpu, ref } = await runCase(k);
  const [gx, gw, gb] = k.grads ?? [true, true, true];
  const affine = k.affine ?? true;
  const what = `${k.training ? 'training' : 'eval'} ${JSON.stringify(k.shape)}`;
  expectClose(gpu.y, ref.y, 1e-4, `${what} y`);
  if (gx) expectClose(gpu.dx!, ref.dx, 1e-3, `${what} dx`);
  else expect(gpu.dx).to.equal(null);
  if (affine && gw) expectClose(gpu.dw!, ref.dw, 1e-3, `${what} dweight`);
  if (affine && gb) expectClose(gpu.db!, ref.db, 1e-3, `${what} dbias`);
  if (!affine || !gw) expect(gpu.dw).to.equal(null);
  if (!affine || !gb) expect(gpu.db).to.equal(null);
  if (ref.rm) {
    expectClose(gpu.rm!, ref.rm, 1e-5, `${what} running_mean`);
    expectClose(gpu.rv!, ref.rv!, 1e-5, `${what} running_var`);
  }
}

describe('batchNorm', function () {
  this.timeout(60_000);

  // Every path of the kernels (kernel variants batchNorm.reduction and batchNorm.elementwise): 'auto' picks lanes/planes-or-flat on this
  // software adapter, the other two force the real-GPU tree reductions and each element-wise entry.
  for (const tuning of [
    { reduction: 'auto', elementwise: 'auto' },
    { reduction: 'tree', elementwise: 'flat' },
    { reduction: 'lanes', elementwise: 'planes' },
  ] as const) {
    describe(`kernels: reduction ${tuning.reduction}, element-wise ${tuning.elementwise}`, () => {
      before(() => {
        setKernelVariant('batchNorm.reduction', tuning.reduction);
        setKernelVariant('batchNorm.elementwise', tuning.elementwise);
      });
      after(() => {
        setKernelVariant('batchNorm.reduction', null);
        setKernelVariant('batchNorm.elementwise', null);
      });

      describe('training mode (batch statistics, running statistics updated in place)', () => {
        it('matches the float64 reference on odd shapes, n >= 2', async () => {
          await checkCase({ shape: [2, 3, 5, 7], training: true });
          await checkCase({ shape: [3, 17, 9, 11], training: true, seed: 3 });
          await checkCase({ shape: [2, 5, 1, 1], training: true, seed: 4 }); // the ASPP pooling branch
          await checkCase({ shape: [5, 3, 3, 5], training: true, seed: 5, xScale: 3, xOffset: -2 });
        });

        it('matches with long channels split over several workgroups', async () => {
          // m = 16900 values per channel, few channels: the statistics run in 9 slices per channel.
          await checkCase({ shape: [4, 2, 65, 65], training: true, seed: 6, xOffset: 5 });
          // m = 2049: two slices of unequal length, h·w < the workgroup width.
          await checkCase({ shape: [3, 7, 1, 683], training: true, seed: 7 });
        });

        it('updates the running statistics in place with momentum 0.0003 (decay 0.9997)', async () => {
          // runCase reads back the very tensors it passed in, after the op.
          await checkCase({ shape: [2, 6, 7, 5], training: true, momentum: 0.0003, seed: 8, xOffset: 3, xScale: 2 });
          await checkCase({ shape: [2, 4, 3, 3], training: true, momentum: 1, seed: 9 });
          await checkCase({ shape: [2, 4, 3, 3], training: true, momentum: 0, seed: 10 });
        });

        it('accepts rank 2 input [n, c]', async () => {
          await checkCase({ shape: [6, 10], training: true, seed: 11 });
          await checkCase({ shape: [3000, 3], training: true, seed: 12 }); // several slices, h·w = 1
        });

        it('works without running statistics and without weight/bias', async () => {
          await checkCase({ shape: [2, 3, 4, 5], training: true, running: false, seed: 13 });
          await checkCase({ shape: [2, 3, 4, 5], training: true, affine: false, seed: 14 });
          await checkCase({ shape: [3, 5], training: true, affine: false, running: false, seed: 15 });
        });

        it('computes only the gradients asked for', async () => {
          await checkCase({ shape: [2, 3, 4, 5], training: true, grads: [true, false, false], seed: 16 });
          await checkCase({ shape: [2, 3, 4, 5], training: true, grads: [false, true, false], seed: 17 });
          await checkCase({ shape: [2, 3, 4, 5], training: true, grads: [false, false, true], seed: 18 });
        });

        it('is stable for a large mean: x = 1000 + 0.01 randn', async () => {
          await checkCase({ shape: [2, 8, 33, 33], training: true, xOffset: 1000, xScale: 0.01, seed: 19 });
          await checkCase({ shape: [4, 2, 65, 65], training: true, xOffset: 1000, xScale: 0.01, seed: 20 });
          await checkCase({ shape: [3, 3, 5, 5], training: true, xOffset: -1000, xScale: 0.01, seed: 21, affine: false });
        });

        it('defines M == 1 (one value per channel): y = bias, dx = 0, dweight = 0, running_var unchanged', async () => {
          for (const shape of [
            [1, 5, 1, 1],
            [1, 4],
          ]) {
            const { gpu, ref } = await runCase({ shape, training: true, seed: 22 });
            const c = shape[1];
            for (const v of [...gpu.y, ...gpu.dx!, ...gpu.dw!, ...gpu.db!, ...gpu.rm!, ...gpu.rv!]) expect(Number.isFinite(v)).to.equal(true);
            expect(Array.from(gpu.y)).to.deep.equal(Array.from(Float32Array.from(ref.y))); // = bias, exactly
            expect(gpu.dx!.every((v) => v === 0)).to.equal(true);
            expect(gpu.dw!.every((v) => v === 0)).to.equal(true);
            expectClose(gpu.db!, ref.db, 1e-6, 'dbias = dy');
            expectClose(gpu.rm!, ref.rm!, 1e-6, 'running_mean');
            expect(Array.from(gpu.rv!)).to.deep.equal(Array.from(Float32Array.from(ref.rv!))); // unchanged
            expect(gpu.y.length).to.equal(c);
          }
        });

        it('is deterministic run to run', async () => {
          const a = await runCase({ shape: [4, 2, 65, 65], training: true, seed: 23 });
          const b = await runCase({ shape: [4, 2, 65, 65], training: true, seed: 23 });
          expect(Array.from(a.gpu.y)).to.deep.equal(Array.from(b.gpu.y));
          expect(Array.from(a.gpu.dx!)).to.deep.equal(Array.from(b.gpu.dx!));
          expect(Array.from(a.gpu.dw!)).to.deep.equal(Array.from(b.gpu.dw!));
        });
      });

      describe('eval and frozen mode (running statistics, gradients still flow)', () => {
        it('matches the float64 reference (frozen: x, weight and bias all trained)', async () => {
          await checkCase({ shape: [2, 5, 7, 3], training: false, seed: 40 });
          await checkCase({ shape: [3, 17, 4, 9], training: false, eps: 1e-3, seed: 41 });
          await checkCase({ shape: [4, 9], training: false, seed: 42 });
          await checkCase({ shape: [1, 3, 1, 1], training: false, seed: 43 });
        });

        it('handles frozen affine parameters and missing weight/bias', async () => {
          await checkCase({ shape: [2, 5, 7, 3], training: false, grads: [true, false, false], seed: 44 });
          await checkCase({ shape: [2, 5, 7, 3], training: false, grads: [true, false, true], seed: 45 });
          await checkCase({ shape: [2, 5, 7, 3], training: false, grads: [false, true, false], seed: 46 });
          await checkCase({ shape: [2, 5, 7, 3], training: false, affine: false, seed: 47 });
        });

        it('leaves the running statistics unchanged', async () => {
          const { gpu, ref } = await runCase({ shape: [2, 4, 3, 3], training: false, seed: 48 });
          expect(Array.from(gpu.rm!)).to.deep.equal(Array.from(Float32Array.from(ref.rm!)));
          expect(Array.from(gpu.rv!)).to.deep.equal(Array.from(Float32Array.from(ref.rv!)));
        });
      });
    });
  }

  describe('finite-difference gradient checks', () => {
    it('training mode', async () => {
      // Random dy: with dy = 1 the training-mode dx and dweight would be ~0 (Σ xhat = 0).
      await gradCheck((x, w, b) => batchNorm(x, w, b, null, null, { training: true }), [
        { data: randn(2 * 3 * 2 * 3, 31), shape: [2, 3, 2, 3] },
        { data: randn(3, 32, 0.5, 1), shape: [3] },
        { data: randn(3, 33), shape: [3] },
      ]);
      await gradCheck((x) => batchNorm(x, null, null, null, null, { training: true, eps: 1e-3 }), [{ data: randn(5 * 2, 34), shape: [5, 2] }]);
    });

    it('eval mode', async () => {
      const rm = tensor(randn(3, 50), [3]);
      const rv = tensor(randn(3, 51).map((v) => 0.5 + Math.abs(v)), [3]);
      try {
        await gradCheck((x, w, b) => batchNorm(x, w, b, rm, rv, { training: false }), [
          { data: randn(2 * 3 * 3 * 2, 52), shape: [2, 3, 3, 2] },
          { data: randn(3, 53), shape: [3] },
          { data: randn(3, 54), shape: [3] },
        ]);
      } finally {
        rm.dispose();
        rv.dispose();
      }
    });
  });

  it('frees every temporary buffer', async () => {
    const x = parameter(randn(2 * 3 * 4 * 5, 60), [2, 3, 4, 5]);
    const w = parameter(randn(3, 61), [3]);
    const rm = tensor(randn(3, 62), [3]);
    const rv = tensor(new Float32Array(3).fill(1), [3]);
    const before = engine().stats().liveBuffers;
    for (const training of [true, false]) {
      tidy(() => backward(batchNorm(x, w, null, rm, rv, { training }), tensor(randn(x.size, 63), x.shape)));
      x.grad!.dispose();
      w.grad!.dispose();
      x.grad = w.grad = null;
      tidy(() => {
        batchNorm(x, w, null, rm, rv, { training }); // never backpropagated: its saved tensors go with it
      });
      expect(engine().stats().liveBuffers).to.equal(before);
    }
    for (const t of [x, w, rm, rv]) t.dispose();
  });

  describe('argument errors (thrown before any GPU work)', () => {
    const c = 3;
    let x: Tensor, x3: Tensor, x5: Tensor, xi: Tensor, w: Tensor, w4: Tensor, w2d: Tensor, rm: Tensor, rv: Tensor;
    before(() => {
      x = tensor(randn(2 * c * 2 * 2, 70), [2, c, 2, 2]);
      x3 = tensor(randn(2 * c * 2, 71), [2, c, 2]);
      x5 = tensor(randn(2 * c * 2 * 2 * 2, 72), [2, c, 2, 2, 2]);
      xi = tensor(new Int32Array(2 * c * 4), [2, c, 2, 2]);
      w = tensor(randn(c, 73), [c]);
      w4 = tensor(randn(4, 74), [4]);
      w2d = tensor(randn(c, 75), [1, c]);
      rm = tensor(randn(c, 76), [c]);
      rv = tensor(new Float32Array(c).fill(1), [c]);
    });
    after(() => {
      for (const t of [x, x3, x5, xi, w, w4, w2d, rm, rv]) t.dispose();
    });

    const expectThrow = (fn: () => unknown, re: RegExp) => {
      const d = engine().stats().dispatches;
      expect(fn).to.throw(re);
      expect(engine().stats().dispatches, 'no kernel was recorded').to.equal(d);
    };

    it('rejects a wrong rank or dtype of x', () => {
      expectThrow(() => batchNorm(x3, w, w, rm, rv, { training: true }), /batchNorm: argument 'x' must have rank 4 \[n, c, h, w\] or rank 2 \[n, c\], got shape \[2, 3, 2\]/);
      expectThrow(() => batchNorm(x5, w, w, rm, rv, { training: false }), /batchNorm: .*'x'.*\[2, 3, 2, 2, 2\]/);
      expectThrow(() => batchNorm(xi, w, w, rm, rv, { training: true }), /batchNorm: argument 'x' must be f32, got i32/);
    });

    it('rejects weight, bias or running statistics whose shape is not [c]', () => {
      expectThrow(() => batchNorm(x, w4, w, rm, rv, { training: true }), /batchNorm: argument 'weight' must have shape \[c\] = \[3\] for x of shape \[2, 3, 2, 2\], got \[4\]/);
      expectThrow(() => batchNorm(x, w, w2d, rm, rv, { training: true }), /batchNorm: argument 'bias' must have shape \[c\] = \[3\].*got \[1, 3\]/);
      expectThrow(() => batchNorm(x, w, w, w4, rv, { training: false }), /batchNorm: argument 'runningMean' must have shape \[c\] = \[3\].*got \[4\]/);
      expectThrow(() => batchNorm(x, w, w, rm, w4, { training: true }), /batchNorm: argument 'runningVar' must have shape \[c\] = \[3\].*got \[4\]/);
    });

    it('rejects a negative or zero eps and a momentum outside [0, 1]', () => {
      expectThrow(() => batchNorm(x, w, w, rm, rv, { training: true, eps: -1e-5 }), /batchNorm: 'eps' must be a finite number > 0, got -0.00001/);
      expectThrow(() => batchNorm(x, w, w, rm, rv, { training: false, eps: 0 }), /batchNorm: 'eps' must be a finite number > 0, got 0/);
      expectThrow(() => batchNorm(x, w, w, rm, rv, { training: true, momentum: -0.1 }), /batchNorm: 'momentum' must be a finite number >= 0 and <= 1, got -0.1/);
      expectThrow(() => batchNorm(x, w, w, rm, rv, { training: true, momentum: 1.5 }), /batchNorm: 'momentum' must be .* <= 1, got 1.5/);
      expectThrow(() => batchNorm(x, w, w, rm, rv, { training: true, momentum: NaN }), /batchNorm: 'momentum' must be a finite number/);
    });

    it('rejects eval mode without running statistics, and half-given or shared running statistics', () => {
      expectThrow(() => batchNorm(x, w, w, null, null, { training: false }), /batchNorm: eval mode \(training: false\) .* 'runningMean' and 'runningVar' must be given/);
      expectThrow(() => batchNorm(x, w, w, rm, null, { training: true }), /batchNorm: 'runningMean' and 'runningVar' must both be given or both be null, got only runningMean/);
      expectThrow(() => batchNorm(x, w, w, null, rv, { training: false }), /both be given or both be null, got only runningVar/);
      expectThrow(() => batchNorm(x, w, w, rm, rm, { training: true }), /batchNorm: 'runningMean' and 'runningVar' must be different tensors/);
    });

    it('rejects a missing training flag', () => {
      expectThrow(() => batchNorm(x, w, w, rm, rv, {} as BatchNormOptions), /batchNorm: 'opts.training' must be true or false, got undefined/);
    });
  });
});
