// The training step's overhead, counted (never timed): pipelines compiled before the first step,
// asynchronously, by tracing it; a steady loop submits a few times per step and creates no buffer
// and no bind group; tracing leaves the model's CPU-side state alone.

import { expect } from 'chai';
import { engine, tensor, tidy, keep, backward, crossEntropy, SGD, DeepLabV3, modelConfig } from '../src/index.js';
import { traceTrainStep, precompileTrainStep } from '../src/train/precompile.js';
import { Dropout } from '../src/nn/layers.js';

describe('training-step overhead', () => {
  it('trace records no GPU work; precompiled pipelines cover the step; step 4 creates no buffers, uniform buffers or bind groups (dropout seeds change in place)', async () => {
    const e = engine();
    const model = new DeepLabV3(modelConfig('mini', { aspp: { dropout: 0.1 } }));
    model.materialize(0);
    model.train();
    const opt = new SGD(model.trainableParameters(), { lr: 0.001, momentum: 0.9 });
    const [x, y] = tidy(() => [keep(tensor(new Float32Array(2 * 3 * 33 * 33).fill(0.5), [2, 3, 33, 33])), keep(tensor(new Int32Array(2 * 33 * 33), [2, 33, 33], 'i32'))]);
    try {
      const counters = model.counters();
      const dropout = [...model.namedModules()].map(([, m]) => m).filter((m): m is Dropout => m instanceof Dropout);
      expect(dropout.length).to.be.above(0);
      const calls = dropout.map((m) => m.calls);
      const before = e.stats();
      const specs = traceTrainStep(model, opt, 2, 33, 33);
      const after = e.stats();
      expect(after.dispatches, 'nothing dispatched while tracing').to.equal(before.dispatches);
      expect(after.liveBuffers, 'traced tensors and gradients freed').to.equal(before.liveBuffers);
      expect(opt.params.every((p) => p.grad === null)).to.equal(true);
      expect([...model.counters()]).to.deep.equal([...counters]);
      expect(dropout.map((m) => m.calls)).to.deep.equal(calls);
      expect(specs.some((s) => s.shader.startsWith('conv2d.fwd')), 'a conv2d forward kernel (of whichever variant runs)').to.equal(true);
      expect(specs.some((s) => s.shader === 'sgd' && s.entry === 'momentum')).to.equal(true);

      await precompileTrainStep(model, opt, 2, 33, 33);
      expect(await precompileTrainStep(model, opt, 2, 33, 33), 'a second precompile finds every pipeline cached').to.equal(0);
      const step = () =>
        tidy(() => {
          backward(crossEntropy(model.forward(x), y, { ignoreIndex: 255 }));
          opt.step();
          opt.zeroGrad();
        });
      const p0 = e.stats().pipelines;
      step();
      await e.sync();
      expect(e.stats().pipelines - p0, 'no pipeline compiled by the first step').to.equal(0);
      // Steps 2 and 3 still settle the pool (buffers freed late in a step come back in a new order).
      step();
      step();
      await e.sync();
      const s2 = e.stats();
      step();
      await e.sync();
      const s3 = e.stats();
      expect(s3.created - s2.created, 'buffers created by step 4').to.equal(0);
      // Dropout's seed changes every call: its uniform block is rewritten in place, so no new
      // uniform buffer or bind group either.
      const active = dropout.filter((m) => m.p > 0).length;
      expect(active).to.equal(1);
      expect(s3.bindGroups - s2.bindGroups, 'bind groups created by step 4').to.equal(0);
      expect(s3.uniformBuffersCreated - s2.uniformBuffersCreated, 'uniform buffers created by step 4').to.equal(0);
      expect(s3.submits - s2.submits, 'submits per step').to.be.at.most(4);
      expect(s3.liveBuffers).to.equal(s2.liveBuffers);
      expect(s3.peakLiveBytes).to.be.at.least(s3.liveBytes);
      // The poly schedule changes the learning rate every step: still nothing created per step.
      const s4 = e.stats();
      for (let i = 0; i < 3; i++) {
        opt.lr = 0.001 * (1 - (i + 1) / 10) ** 0.9;
        step();
        await e.sync();
      }
      const s5 = e.stats();
      expect(s5.created - s4.created, 'buffers created by 3 steps with a changing lr').to.equal(0);
      expect(s5.uniformBuffersCreated - s4.uniformBuffersCreated, 'uniform buffers created by 3 steps with a changing lr').to.equal(0);
      expect(s5.bindGroups - s4.bindGroups, 'bind groups created by 3 steps with a changing lr').to.equal(0);
    } finally {
      x.dispose();
      y.dispose();
      opt.dispose();
      model.dispose();
    }
  });
});
