import { expect } from 'chai';
import { tensor, parameter, tidy, backward, noGrad, crossEntropy, engine, Tensor } from '../src/index.js';
import { randn, numel, expectClose, gradCheck, maxAbsErr, expectOpError } from './helpers.js';

/** float64 reference of F.cross_entropy(x, target, ignore_index, reduction='mean') and of
 * d(dyScalar * loss)/dx, with out-of-range targets ignored and loss 0 when nothing is valid. */
function reference(x: Float32Array, target: Int32Array, shape: number[], ignoreIndex: number, dyScalar: number): { loss: number; dx: Float64Array } {
  const [n, c] = shape;
  const hw = numel(shape.slice(2));
  const dx = new Float64Array(x.length);
  const softmax: Float64Array[] = [];
  let sum = 0;
  let count = 0;
  for (let ni = 0; ni < n; ni++) {
    for (let s = 0; s < hw; s++) {
      const t = target[ni * hw + s];
      const at = (k: number) => ni * c * hw + k * hw + s;
      if (t === ignoreIndex || t < 0 || t >= c) {
        softmax.push(new Float64Array(0));
        continue;
      }
      let m = -Infinity;
      for (let k = 0; k < c; k++) m = Math.max(m, x[at(k)]);
      let z = 0;
      for (let k = 0; k < c; k++) z += Math.exp(x[at(k)] - m);
      sum += m + Math.log(z) - x[at(t)];
      count++;
      softmax.push(Float64Array.from({ length: c }, (_, k) => Math.exp(x[at(k)] - m) / z));
    }
  }
  if (count > 0) {
    for (let ni = 0; ni < n; ni++) {
      for (let s = 0; s < hw; s++) {
        const q = ni * hw + s;
        const sm = softmax[q];
        if (!sm.length) continue;
        for (let k = 0; k < c; k++) dx[ni * c * hw + k * hw + s] = (dyScalar * (sm[k] - (k === target[q] ? 1 : 0))) / count;
      }
    }
  }
  return { loss: count > 0 ? sum / count : 0, dx };
}

/** Random labels in [0, c) with a fraction `ignored` set to 255. */
function labels(count: number, c: number, ignored: number, seed: number): Int32Array {
  const u = randn(2 * count, seed);
  return Int32Array.from({ length: count }, (_, i) => {
    const r = 0.5 * (1 + Math.tanh(u[2 * i])); // roughly uniform in (0, 1)
    if (r < ignored) return 255;
    return Math.min(c - 1, Math.floor(((u[2 * i + 1] * 1e4) % 1 + 1) % 1 * c));
  });
}

async function gpuCrossEntropy(xData: Float32Array, tData: Int32Array, shape: number[], opts: { ignoreIndex?: number } = {}, dyScalar = 1) {
  const x = parameter(xData, shape);
  const target = tensor(tData, [shape[0], ...shape.slice(2)], 'i32');
  try {
    const loss = tidy(() => {
      const l = crossEntropy(x, target, opts);
      const keepL = l.ref();
      backward(l, tensor([dyScalar], []));
      return keepL;
    });
    expect(loss.shape).to.deep.equal([]);
    const lv = await loss.item();
    loss.dispose();
    return { loss: lv, dx: (await x.grad!.data()) as Float32Array };
  } finally {
    x.grad?.dispose();
    x.dispose();
    target.dispose();
  }
}


describe('crossEntropy', () => {
  const cases: { name: string; shape: number[]; ignored: number; dy?: number; scale?: number }[] = [
    { name: 'some ignored', shape: [2, 5, 7, 6], ignored: 0.2, dy: 0.7 },
    { name: 'none ignored', shape: [2, 4, 5, 3], ignored: 0 },
    { name: 'C = 21, batch 3, odd sizes', shape: [3, 21, 9, 11], ignored: 0.1, dy: -1.3 },
    { name: '[n, C] input', shape: [37, 21], ignored: 0.15 },
    { name: '[n, C] input, one row', shape: [1, 21], ignored: 0 },
    { name: 'two reduction passes (4230 pixels)', shape: [2, 3, 47, 45], ignored: 0.3 },
    { name: 'large logits ±1e4', shape: [2, 21, 5, 7], ignored: 0.1, scale: 1e4 },
  ];
  for (const tc of cases) {
    it(`matches the CPU reference: ${tc.name} ${JSON.stringify(tc.shape)}`, async () => {
      const size = numel(tc.shape);
      const npix = size / tc.shape[1];
      const x = randn(size, 3 + size, tc.scale ?? 2);
      const t = labels(npix, tc.shape[1], tc.ignored, 17 + size);
      const ref = reference(x, t, tc.shape, 255, tc.dy ?? 1);
      const got = await gpuCrossEntropy(x, t, tc.shape, {}, tc.dy ?? 1);
      expect(Number.isFinite(got.loss)).to.equal(true);
      expectClose([got.loss], [ref.loss], 1e-4, 'loss');
      expectClose(got.dx, ref.dx, 1e-3, 'dx');
      // Element-wise too: a norm can hide one wrongly written element.
      const peak = ref.dx.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxAbsErr(got.dx, ref.dx), 'max abs error of dx').to.be.at.most(1e-5 * peak);
    });
  }

  it('gives loss 0 and gradient 0 when every pixel is ignored (PyTorch: NaN)', async () => {
    const shape = [2, 5, 3, 4];
    const got = await gpuCrossEntropy(randn(numel(shape), 9), new Int32Array(24).fill(255), shape);
    expect(got.loss).to.equal(0);
    expect(Array.from(got.dx).every((v) => v === 0)).to.equal(true);
  });

  it('treats targets outside [0, C) as ignored, and honours a custom ignoreIndex', async () => {
    const shape = [2, 5, 4, 3];
    const x = randn(numel(shape), 31);
    const t = Int32Array.from({ length: 24 }, (_, i) => [0, 1, 2, 3, 4, 5, -1, 255, 1000, 3][i % 10]);
    // ignoreIndex 3: class 3 is ignored, 255 is out of range for C = 5 and ignored as well.
    const ref = reference(x, t, shape, 3, 1);
    const got = await gpuCrossEntropy(x, t, shape, { ignoreIndex: 3 });
    expectClose([got.loss], [ref.loss], 1e-4, 'loss');
    expectClose(got.dx, ref.dx, 1e-3, 'dx');
    // The check is not vacuous: fewer valid pixels than with ignoreIndex 255.
    expect(reference(x, t, shape, 255, 1).loss).to.not.be.closeTo(ref.loss, 1e-6);
  });

  it('stays finite with extreme logits (one-hot ±1e4)', async () => {
    const shape = [2, 21, 3, 3];
    const x = new Float32Array(numel(shape)).fill(-1e4);
    const t = labels(18, 21, 0, 5);
    for (let q = 0; q < 18; q++) {
      const ni = Math.floor(q / 9);
      // Correct class at +1e4 for even pixels, a wrong class for odd ones.
      const k = q % 2 === 0 ? t[q] : (t[q] + 1) % 21;
      x[ni * 21 * 9 + k * 9 + (q % 9)] = 1e4;
    }
    const ref = reference(x, t, shape, 255, 1);
    const got = await gpuCrossEntropy(x, t, shape);
    expect(Array.from(got.dx).every(Number.isFinite)).to.equal(true);
    expectClose([got.loss], [ref.loss], 1e-4, 'loss');
    expectClose(got.dx, ref.dx, 1e-3, 'dx');
  });

  it('is deterministic and reads nothing back between forward and backward', async () => {
    const shape = [2, 21, 33, 31];
    const x = parameter(randn(numel(shape), 8), shape);
    const t = tensor(labels(2 * 33 * 31, 21, 0.1, 4), [2, 33, 31], 'i32');
    const dy = tensor([1], []);
    const e = engine();
    const losses: number[] = [];
    for (let rep = 0; rep < 2; rep++) {
      e.flush();
      const submits = e.stats().submits;
      const loss = tidy(() => {
        const l = crossEntropy(x, t);
        const k = l.ref();
        backward(l, dy);
        return k;
      });
      expect(e.stats().submits, 'forward + backward submitted (a readback)').to.equal(submits);
      losses.push(await loss.item());
      loss.dispose();
      x.grad!.dispose();
      x.grad = null;
    }
    expect(losses[1]).to.equal(losses[0]);
    x.dispose();
    t.dispose();
    dy.dispose();
  });

  it('passes a finite-difference check', async () => {
    const shape = [2, 3, 2, 3];
    const t = tensor(Int32Array.from([0, 2, 1, 255, 1, 0, 2, 2, 0, 1, 255, 1]), [2, 2, 3], 'i32');
    await gradCheck((x) => crossEntropy(x, t), [{ data: randn(numel(shape), 12), shape }], { eps: 1e-2, tol: 2e-3 });
    const t2 = tensor(Int32Array.from([4, 0, 255, 3, 1]), [5], 'i32');
    await gradCheck((x) => crossEntropy(x, t2), [{ data: randn(25, 13), shape: [5, 5] }], { eps: 1e-2, tol: 2e-3 });
    t.dispose();
    t2.dispose();
  });

  it('frees its intermediates, with and without backward', () => {
    const x = parameter(randn(2 * 21 * 50 * 50, 2), [2, 21, 50, 50]);
    const t = tensor(labels(5000, 21, 0.1, 3), [2, 50, 50], 'i32');
    const before = engine().stats().liveBuffers;
    tidy(() => {
      crossEntropy(x, t);
    });
    expect(engine().stats().liveBuffers).to.equal(before);
    noGrad(() => crossEntropy(x, t)).dispose();
    expect(engine().stats().liveBuffers).to.equal(before);
    tidy(() => backward(crossEntropy(x, t)));
    x.grad!.dispose();
    x.grad = null;
    expect(engine().stats().liveBuffers).to.equal(before);
    x.dispose();
    t.dispose();
  });

  it('rejects bad arguments before any GPU work', () => {
    const x = tensor(randn(2 * 5 * 3 * 4, 1), [2, 5, 3, 4]);
    const tf = tensor(new Float32Array(24), [2, 3, 4]);
    const tWrong = tensor(new Int32Array(24), [2, 4, 3]);
    const t = tensor(new Int32Array(24), [2, 3, 4]);
    const x1 = tensor([1, 2], [2]);
    expectOpError(() => crossEntropy(x, tf), 'crossEntropy', "'target'", 'i32', 'f32');
    expectOpError(() => crossEntropy(x, tWrong), 'crossEntropy', "'target'", '[2, 4, 3]', '[2, 5, 3, 4]', '[2, 3, 4]');
    expectOpError(() => crossEntropy(x1, t), 'crossEntropy', "'x'", '[2]');
    expectOpError(() => crossEntropy(x, t, { reduction: 'sum' as 'mean' }), 'crossEntropy', 'reduction', 'sum');
    expectOpError(() => crossEntropy(x, t, { ignoreIndex: 2.5 }), 'crossEntropy', 'ignoreIndex', '2.5');
    expectOpError(() => crossEntropy(x, null as unknown as Tensor), 'crossEntropy', "'target'", 'Tensor');
    for (const a of [x, tf, tWrong, t, x1]) a.dispose();
  });
});
