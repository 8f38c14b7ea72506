import { expect } from 'chai';
import { tensor, parameter, keep, SGD, polyLR, engine, Tensor, type SGDOptions } from '../src/index.js';
import { randn, numel, expectClose, expectOpError } from './helpers.js';

/** float64 torch.optim.SGD for one parameter over several steps; grads[k] null = no gradient. */
function reference(p0: Float32Array, grads: (Float32Array | null)[], lrs: number[], o: Required<Omit<SGDOptions, 'lr'>>) {
  const p = Float64Array.from(p0);
  let buf: Float64Array | null = null;
  grads.forEach((g, k) => {
    if (!g) return;
    const d = Float64Array.from(g, (v, i) => v + o.weightDecay * p[i]);
    if (o.momentum !== 0) {
      if (!buf) buf = Float64Array.from(d);
      else for (let i = 0; i < d.length; i++) buf[i] = o.momentum * buf[i] + (1 - o.dampening) * d[i];
      for (let i = 0; i < d.length; i++) d[i] = o.nesterov ? d[i] + o.momentum * buf[i] : buf[i];
    }
    for (let i = 0; i < d.length; i++) p[i] -= lrs[k] * d[i];
  });
  return { p, buf: buf as Float64Array | null };
}


describe('SGD', () => {
  // Sizes not multiples of 4 (the vec4 tail) or of the workgroup, and one above 64 * 4.
  const shapes = [[3, 5, 3, 3], [7], [1], [64, 33]];
  const configs: { name: string; opts: Required<Omit<SGDOptions, 'lr'>> }[] = [
    { name: 'momentum 0.9 + weight decay', opts: { momentum: 0.9, weightDecay: 0.01, dampening: 0, nesterov: false } },
    { name: 'nesterov, momentum 0.9 + weight decay', opts: { momentum: 0.9, weightDecay: 0.01, dampening: 0, nesterov: true } },
    { name: 'momentum 0.9, dampening 0.1, no weight decay', opts: { momentum: 0.9, weightDecay: 0, dampening: 0.1, nesterov: false } },
    { name: 'plain SGD + weight decay', opts: { momentum: 0, weightDecay: 0.05, dampening: 0, nesterov: false } },
  ];
  for (const cfg of configs) {
    it(`matches torch.optim.SGD over 3 steps: ${cfg.name}, with a poly lr`, async () => {
      const base = 0.1;
      const lrs = [0, 1, 2].map((k) => polyLR(base, k, 3));
      const init = shapes.map((s, j) => randn(numel(s), 100 + j));
      // Parameter 2 has no gradient on the first step: skipped, its buffer starts on step 2.
      const grads = shapes.map((s, j) => [0, 1, 2].map((k) => (j === 2 && k === 0 ? null : randn(numel(s), 10 * j + k + 1, 0.5))));
      const params = shapes.map((s, j) => parameter(init[j], s));
      const buffers = params.map((p) => p.buffer);
      const opt = new SGD(params, { lr: base, ...cfg.opts });
      try {
        for (let k = 0; k < 3; k++) {
          params.forEach((p, j) => {
            const g = grads[j][k];
            p.grad = g ? keep(tensor(g, shapes[j])) : null;
          });
          opt.lr = lrs[k];
          opt.step();
          if (k === 0) expect(opt.momentumBuffer(params[2]), 'no buffer before the first gradient').to.equal(null);
          opt.zeroGrad();
        }
        for (let j = 0; j < shapes.length; j++) {
          expect(params[j].buffer, 'updated in place').to.equal(buffers[j]);
          const ref = reference(init[j], grads[j], lrs, cfg.opts);
          const got = (await params[j].data()) as Float32Array;
          expectClose(got, ref.p, 1e-6, `param ${j}`);
          // The update itself (small next to p) to the usual gradient tolerance.
          expectClose(got.map((v, i) => v - init[j][i]), ref.p.map((v, i) => v - init[j][i]), 1e-4, `param ${j} change`);
          const buf = opt.momentumBuffer(params[j]);
          if (cfg.opts.momentum === 0) expect(buf).to.equal(null);
          else expectClose((await buf!.data()) as Float32Array, ref.buf!, 1e-5, `momentum buffer ${j}`);
        }
      } finally {
        opt.dispose();
        for (const p of params) p.dispose();
      }
    });
  }

  it('zeroGrad disposes the gradients; dispose frees the momentum buffers', () => {
    const p = parameter(randn(10, 1), [10]);
    const q = parameter(randn(6, 2), [2, 3]);
    const opt = new SGD([p, q], { lr: 0.1, momentum: 0.9 });
    const g = keep(tensor(randn(10, 3), [10]));
    p.grad = g;
    const before = engine().stats().liveBuffers;
    opt.step();
    expect(engine().stats().liveBuffers, 'one momentum buffer (q has no grad)').to.equal(before + 1);
    opt.zeroGrad();
    expect(g.disposed).to.equal(true);
    expect(p.grad).to.equal(null);
    opt.step(); // no gradients: nothing happens
    opt.dispose();
    expect(engine().stats().liveBuffers).to.equal(before - 1);
    expect(() => opt.step()).to.throw('dispose');
    p.dispose();
    q.dispose();
  });

  it('setMomentumBuffer resumes a run: step 2 continues from the restored buffer', async () => {
    const o = { momentum: 0.9, weightDecay: 1e-4, dampening: 0, nesterov: false };
    const p0 = randn(13, 4);
    const g1 = randn(13, 5);
    const g2 = randn(13, 6);
    const ref = reference(p0, [g1, g2], [0.1, 0.05], o);
    const after1 = reference(p0, [g1], [0.1], o);
    // A fresh optimizer on the step-1 weights, given the step-1 momentum buffer, takes step 2.
    const p = parameter(Float32Array.from(after1.p), [13]);
    const opt = new SGD([p], { lr: 0.05, ...o });
    opt.setMomentumBuffer(p, Float32Array.from(after1.buf!));
    p.grad = keep(tensor(g2, [13]));
    opt.step();
    expectClose(await p.float32(), ref.p, 1e-6, 'resumed parameter');
    expectClose(await opt.momentumBuffer(p)!.float32(), ref.buf!, 1e-6, 'resumed buffer');
    expect(() => opt.setMomentumBuffer(p, new Float32Array(3))).to.throw('3 values');
    const other = parameter(randn(13, 7), [13]);
    expect(() => opt.setMomentumBuffer(other, new Float32Array(13))).to.throw('not one of');
    opt.zeroGrad();
    opt.dispose();
    for (const t of [p, other]) t.dispose();
  });

  it('rejects bad arguments before any GPU work', () => {
    const p = parameter(randn(6, 1), [2, 3]);
    const xi = tensor(new Int32Array(3), [3]);
    expectOpError(() => new SGD([p], { lr: -1 }), 'SGD', "'lr'", '-1');
    expectOpError(() => new SGD([p], { lr: 0.1, momentum: 0, nesterov: true }), 'SGD', 'nesterov', 'momentum');
    expectOpError(() => new SGD([p], { lr: 0.1, momentum: 0.9, dampening: 0.5, nesterov: true }), 'SGD', 'nesterov', 'dampening');
    expectOpError(() => new SGD([p, p], { lr: 0.1 }), 'SGD', 'params[1]', 'more than once');
    expectOpError(() => new SGD([xi], { lr: 0.1 }), 'SGD', 'params[0]', 'f32', 'i32');
    expectOpError(() => new SGD([null as unknown as Tensor], { lr: 0.1 }), 'SGD', 'params[0]', 'Tensor');
    expectOpError(() => new SGD([p], { lr: 0.1, weightDecay: NaN }), 'SGD', 'weightDecay');
    // A gradient of the wrong shape on the second parameter: the first must not be updated either.
    const q = parameter(randn(4, 2), [4]);
    const opt = new SGD([p, q], { lr: 0.1 });
    p.grad = keep(tensor(randn(6, 3), [2, 3]));
    q.grad = keep(tensor(randn(5, 4), [5]));
    expectOpError(() => opt.step(), 'SGD', 'params[1]', '[4]', '[5]');
    opt.lr = Number.NaN;
    expectOpError(() => opt.step(), 'SGD', "'lr'");
    opt.zeroGrad();
    opt.dispose();
    for (const t of [p, q, xi]) t.dispose();
  });
});

describe('polyLR', () => {
  it('is baseLr * (1 - step / maxSteps)^power', () => {
    expect(polyLR(0.01, 0, 100)).to.equal(0.01);
    expect(polyLR(0.01, 50, 100)).to.be.closeTo(0.01 * 0.5 ** 0.9, 1e-15);
    expect(polyLR(0.007, 30, 120, 2)).to.be.closeTo(0.007 * 0.75 ** 2, 1e-15);
    expect(polyLR(0.01, 100, 100)).to.equal(0);
    const lrs = [0, 10, 20, 30].map((s) => polyLR(1, s, 30));
    for (let i = 1; i < lrs.length; i++) expect(lrs[i]).to.be.below(lrs[i - 1]);
  });

  it('rejects steps outside [0, maxSteps] and bad settings', () => {
    expect(() => polyLR(0.01, 101, 100)).to.throw(/polyLR.*'step'.*<= 100.*101/);
    expect(() => polyLR(0.01, -1, 100)).to.throw(/polyLR.*'step'/);
    expect(() => polyLR(0.01, 0, 0)).to.throw(/polyLR.*'maxSteps'/);
    expect(() => polyLR(-0.01, 0, 10)).to.throw(/polyLR.*'baseLr'/);
    expect(() => polyLR(0.01, 0, 10, -1)).to.throw(/polyLR.*'power'/);
  });
});
