// GPU memory has an explicit lifetime: a repeated forward/backward/update loop reaches a steady
// state where the live buffer count and bytes, and the buffers the pool owns, stop changing.
import { expect } from 'chai';
import {
  engine, tensor, parameter, tidy, backward, conv2d, batchNorm, relu, add, interpolate, cat, maxPool2d,
  adaptiveAvgPool2d, crossEntropy, SGD, type Tensor,
} from '../src/index.js';
import { randn } from './helpers.js';

describe('memory', () => {
  it('live buffers and bytes are identical after step 2 and step 50', async () => {
    const w1 = parameter(randn(4 * 3 * 9, 1, 0.3), [4, 3, 3, 3]);
    const w2 = parameter(randn(5 * 8, 2, 0.3), [5, 8, 1, 1]);
    const b2 = parameter(randn(5, 3, 0.1), [5]);
    const gamma = parameter(randn(4, 4, 0.1, 1), [4]);
    const beta = parameter(randn(4, 5, 0.1), [4]);
    const rm = tensor(new Float32Array(4), [4]);
    const rv = tensor(new Float32Array(4).fill(1), [4]);
    const params = [w1, w2, b2, gamma, beta];
    const opt = new SGD(params, { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
    const x = tensor(randn(2 * 3 * 9 * 9, 6), [2, 3, 9, 9]);
    const target = tensor(Int32Array.from({ length: 2 * 9 * 9 }, (_, i) => (i % 7 === 0 ? 255 : i % 5)), [2, 9, 9], 'i32');
    const snapshots: ReturnType<typeof engine>['stats'] extends () => infer S ? S[] : never = [];
    const losses: number[] = [];
    for (let step = 1; step <= 50; step++) {
      const loss = tidy(() => {
        const h = relu(batchNorm(conv2d(x, w1, null, { padding: 2, dilation: 2 }), gamma, beta, rm, rv, { training: true }));
        const pooled = maxPool2d(h, { kernelSize: 3, stride: 2, padding: 1 });
        const up = interpolate(pooled, { size: [9, 9], alignCorners: false });
        const g = interpolate(adaptiveAvgPool2d(h), { size: [9, 9] });
        const feat = cat([add(up, h), g], 1);
        const logits = conv2d(feat, w2, b2);
        const l: Tensor = crossEntropy(logits, target);
        backward(l);
        return l;
      });
      opt.step();
      opt.zeroGrad();
      if (step % 10 === 0) losses.push(await loss.item());
      loss.dispose();
      await engine().sync();
      if (step === 2 || step === 50) snapshots.push(engine().stats());
    }
    const [s2, s50] = snapshots;
    expect(s50.liveBuffers, 'live buffers').to.equal(s2.liveBuffers);
    expect(s50.liveBytes, 'live bytes').to.equal(s2.liveBytes);
    expect(s50.allocatedBuffers, 'buffers owned by the pool').to.equal(s2.allocatedBuffers);
    expect(s50.created, 'buffers created').to.equal(s2.created);
    expect(losses[losses.length - 1]).to.be.lessThan(losses[0]);
    for (const t of [...params, rm, rv, x, target]) t.dispose();
    opt.dispose();
  });
});
