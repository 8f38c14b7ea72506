// GPU memory has an explicit lifetime: a repeated forward/backward/update loop reaches a steady
// state where the live buffer count and bytes, and the buffers the pool owns, stop changing.
import { expect } from 'chai';
import {
  engine, tensor, parameter, tidy, backward, conv2d, batchNorm, relu, add, interpolate, cat, maxPool2d,
  adaptiveAvgPool2d, crossEntropy, SGD, createDeepLabV3, gpuOps, Dropout, zeroGrad, type Tensor, type Ops,
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
    const categories: Record<string, number>[] = [];
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
      if (step === 2 || step === 50) {
        snapshots.push(engine().stats());
        categories.push(engine().pool.liveCategories());
      }
    }
    // The per-category accounting stays flat too (no bytes drift from one category to another).
    expect(categories[1], 'live bytes by category').to.deep.equal(categories[0]);
    expect(Object.values(categories[1]).every((v) => v > 0), 'no category below zero').to.equal(true);
    const [s2, s50] = snapshots;
    expect(s50.liveBuffers, 'live buffers').to.equal(s2.liveBuffers);
    expect(s50.liveBytes, 'live bytes').to.equal(s2.liveBytes);
    expect(s50.allocatedBuffers, 'buffers owned by the pool').to.equal(s2.allocatedBuffers);
    expect(s50.created, 'buffers created').to.equal(s2.created);
    expect(losses[losses.length - 1]).to.be.lessThan(losses[0]);
    for (const t of [...params, rm, rv, x, target]) t.dispose();
    opt.dispose();
  });

  it('a training step frees each activation once consumed: only saved tensors outlive their consumer, same loss and gradients', async () => {
    const model = createDeepLabV3('mini', { seed: 3 });
    model.train();
    const params = model.trainableParameters();
    const x = tensor(randn(2 * 3 * 33 * 33, 7), [2, 3, 33, 33]);
    const target = tensor(Int32Array.from({ length: 2 * 33 * 33 }, (_, i) => (i % 11 === 0 ? 255 : i % model.numClasses)), [2, 33, 33], 'i32');
    const pool = engine().pool;
    // The same network with nothing freed before the scope ends (release a no-op): the reference.
    const keepAll: Ops<Tensor> = { ...gpuOps, release: () => {} };
    const step = (ops: Ops<Tensor> | null) => {
      // Batch-norm running statistics and dropout masks change with each training forward: the
      // two runs start from the same ones.
      const state = model.namedBuffers().map(([, t]) => t);
      const copies = state.map((t) => {
        const c = tensor(new Float32Array(t.size), t.shape);
        t.copyTo(c);
        return c;
      });
      const dropouts = [...model.namedModules()].map(([, m]) => m).filter((m): m is Dropout => m instanceof Dropout);
      const calls = dropouts.map((m) => m.calls);
      pool.resetPeak();
      const before = pool.liveCategories();
      let afterForward: Record<string, number> = {};
      let outBytes = 0;
      const loss = tidy(() => {
        const out = ops ? model.run(x, ops, false).out : model.forward(x);
        outBytes = out.byteLength;
        afterForward = pool.liveCategories();
        const l = crossEntropy(out, target, { ignoreIndex: 255 });
        backward(l);
        return l;
      });
      const peak = pool.stats().peakLiveBytes;
      copies.forEach((c, i) => {
        c.copyTo(state[i]);
        c.dispose();
      });
      dropouts.forEach((m, i) => (m.calls = calls[i]));
      return { loss, peak, before, afterForward, outBytes };
    };
    const ref = step(keepAll);
    const refLoss = await ref.loss.item();
    const refGrads = await Promise.all(params.map((p) => p.grad!.float32()));
    ref.loss.dispose();
    zeroGrad(params);
    const got = step(null);
    const d = (k: string) => (got.afterForward[k] ?? 0) - (got.before[k] ?? 0);
    // After the forward, the only activation alive that no node saved is the logits' output (the
    // batch x, an activation before, is now saved by the first convolution), and no op scratch is
    // left.
    expect(d('activations'), 'unsaved activations alive after the forward').to.equal(got.outBytes - x.byteLength);
    expect(d('scratch'), 'scratch alive after the forward').to.equal(0);
    const dRef = (ref.afterForward.activations ?? 0) - (ref.before.activations ?? 0);
    expect(dRef - d('activations'), 'unsaved intermediates the reference keeps').to.be.greaterThan(got.outBytes);
    expect(got.peak, 'peak bytes of the step').to.be.lessThan(ref.peak);
    expect(await got.loss.item()).to.equal(refLoss);
    const grads = await Promise.all(params.map((p) => p.grad!.float32()));
    grads.forEach((g, i) => expect(Buffer.from(g.buffer).equals(Buffer.from(refGrads[i].buffer)), `gradient of parameter ${i}`).to.equal(true));
    got.loss.dispose();
    zeroGrad(params);
    x.dispose();
    target.dispose();
    model.dispose();
  });

  it('an op given a tensor whose storage was freed refuses it, naming the op and argument, before allocating', async () => {
    const w = parameter(randn(4 * 3 * 9, 11, 0.3), [4, 3, 3, 3]);
    const x = tensor(randn(1 * 3 * 6 * 6, 12), [1, 3, 6, 6]);
    const c = conv2d(x, w, null, { padding: 1 });
    const h = relu(c);
    c.freeStorage();
    await engine().sync();
    const live = engine().stats().liveBytes;
    // Outside any scope: an output allocated before the refusal would leak.
    expect(() => relu(c)).to.throw("relu: argument 'x' (shape [1, 4, 6, 6]) was freed");
    expect(() => add(h, c)).to.throw("add: argument 'b' (shape [1, 4, 6, 6]) was freed");
    expect(() => interpolate(c, { size: [12, 12] })).to.throw("argument 'x' (shape [1, 4, 6, 6]) was freed");
    await engine().sync();
    expect(engine().stats().liveBytes, 'live bytes after the refused ops').to.equal(live);
    for (const t of [h, c, x, w]) t.dispose();
  });

  it('an interior tensor whose storage was freed still backpropagates; a disposed one does not', async () => {
    const w = parameter(randn(4 * 3 * 9, 8, 0.3), [4, 3, 3, 3]);
    const x = tensor(randn(1 * 3 * 6 * 6, 9), [1, 3, 6, 6]);
    const run = (free: boolean) => tidy(() => {
      const c = conv2d(x, w, null, { padding: 1 });
      const h = relu(c);
      if (free) c.freeStorage();
      expect(c.storageFreed).to.equal(free);
      const l = crossEntropy(h, tensor(new Int32Array(36).fill(1), [1, 6, 6], 'i32'));
      if (free) {
        expect(() => c.buffer).to.throw('freed after its last use');
        expect(() => c.ref()).to.throw('freed');
      }
      backward(l);
      return l;
    });
    run(false).dispose();
    const g0 = await w.grad!.float32();
    zeroGrad([w]);
    run(true).dispose();
    expect(Array.from(await w.grad!.float32())).to.deep.equal(Array.from(g0));
    zeroGrad([w]);
    // Disposing an interior tensor frees its node: backward cannot go through it.
    tidy(() => {
      const c = conv2d(x, w, null, { padding: 1 });
      const h = relu(c);
      c.dispose();
      expect(() => backward(h)).to.throw("an input of 'relu' (shape [1, 4, 6, 6]) was disposed before backward()");
    });
    // A leaf whose storage was freed has nothing to hold a gradient.
    const v = parameter(randn(4, 10), [4]);
    tidy(() => {
      const y = add(v, v);
      v.freeStorage();
      expect(() => backward(y)).to.throw("an input of 'add' (shape [4]) was freed before backward()");
    });
    v.dispose();
    // A second backward() into a graph the first one consumed, through a freed intermediate: said
    // so (without freeing, the intermediate would silently count as a leaf).
    tidy(() => {
      const c = conv2d(x, w, null, { padding: 1 });
      const target = tensor(new Int32Array(36).fill(1), [1, 6, 6], 'i32');
      const l1 = crossEntropy(relu(c), target);
      const l2 = crossEntropy(maxPool2d(c, { kernelSize: 1, stride: 1, padding: 0 }), target);
      c.freeStorage();
      backward(l1);
      expect(() => backward(l2)).to.throw("an input of 'maxPool2d' (shape [1, 4, 6, 6]) was freed before backward(): a leaf whose storage was freed, or an intermediate whose graph an earlier backward() already consumed");
    });
    zeroGrad([w]);
    x.dispose();
    w.dispose();
  });
});
