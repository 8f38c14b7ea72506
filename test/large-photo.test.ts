// What a whole large photo needs beyond the binding-limit splits: a forward that lets the GPU catch
// up between pieces of the network (DeepLabV3.forwardAsync, used by segment()), and a buffer pool
// whose free lists stay bounded while tensor sizes keep changing.
import { expect } from 'chai';
import { engine, tensor, tidy, noGrad, createDeepLabV3, full, type Tensor } from '../src/index.js';
import { BufferPool } from '../src/gpu/pool.js';
import { randn } from './helpers.js';

describe('large photos: stepwise forward and a bounded pool', () => {
  it('forwardAsync gives forward()\'s logits bit for bit, pauses after every unit, and leaves only the logits alive', async () => {
    const model = createDeepLabV3('mini', { seed: 3 });
    model.eval();
    const x = tensor(randn(3 * 37 * 45, 5), [1, 3, 37, 45]);
    const want = noGrad(() => tidy(() => model.forward(x)));
    const expected = await want.data();
    want.dispose();
    const before = engine().pool.stats().liveBytes;
    let pauses = 0;
    const y = await model.forwardAsync(x, async () => {
      pauses++;
      await engine().sync();
    });
    const units = model.backbone.stages.reduce((a, s) => a + s.layers.length, 0);
    expect(pauses).to.equal(units + 2); // the stem, each unit, the classifier
    const got = await y.data();
    expect(Array.from(got)).to.deep.equal(Array.from(expected));
    // Nothing but the logits was left alive.
    const liveWithY = engine().pool.stats().liveBytes;
    y.dispose();
    expect(liveWithY - engine().pool.stats().liveBytes).to.be.greaterThan(0);
    expect(engine().pool.stats().liveBytes).to.equal(before);
    expect(y.requiresGrad).to.equal(false); // no graph recorded
    x.dispose();
    model.dispose();
  });

  it('forwardAsync that fails between pieces frees everything it made', async () => {
    const model = createDeepLabV3('mini', { seed: 3 });
    model.eval();
    const x = tensor(randn(3 * 33 * 33, 6), [1, 3, 33, 33]);
    const before = engine().pool.stats().liveBytes;
    let n = 0;
    let err: Error | null = null;
    try {
      await model.forwardAsync(x, async () => {
        if (++n === 3) throw new Error('stop here');
      });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.equal('stop here');
    await engine().sync();
    expect(engine().pool.stats().liveBytes).to.equal(before);
    x.dispose();
    model.dispose();
  });

  it('in compact mode the pool lends a free buffer up to twice the size asked for, and keeps its free lists below half the most bytes ever live', async () => {
    const pool = new BufferPool(engine().device, engine().limits.maxBufferSize);
    pool.compact = true;
    const MiB = 2 ** 20;
    // A larger free buffer (within 2x) serves a smaller request: no new buffer.
    const a = pool.acquire(300 * MiB);
    pool.release(a);
    pool.afterSubmit();
    const b = pool.acquire(200 * MiB);
    expect(b).to.equal(a);
    expect(pool.stats().created).to.equal(1);
    expect(pool.stats().liveBytes).to.equal(a.size);
    pool.release(b);
    pool.afterSubmit();
    // Not one more than twice as large.
    const c = pool.acquire(100 * MiB);
    expect(c).to.not.equal(a);
    pool.release(c);
    pool.afterSubmit();
    // Sizes that keep changing: the free lists never hold more than the most bytes ever live at
    // once (here 400 MiB; 256 MiB may always be kept).
    let live: GPUBuffer[] = [];
    for (let i = 0; i < 12; i++) {
      for (const x of live) pool.release(x);
      pool.afterSubmit();
      live = [pool.acquire((40 + 37 * i) * MiB * 0.25), pool.acquire((47 + 29 * i) * MiB * 0.25)];
      const s = pool.stats();
      // The most ever live at once was the first 300 MiB buffer: its half is below the 256 MiB floor.
      expect(s.allocatedBytes - s.liveBytes).to.be.at.most(256 * MiB);
    }
    for (const x of live) pool.release(x);
    pool.afterSubmit();
    pool.trim();
    expect(pool.stats().allocatedBytes).to.equal(0);
  });

  it('out of compact mode (training) the free lists are left alone: a loop that repeats its allocations creates no buffer once warm', async () => {
    expect(engine().pool.compact).to.equal(false);
    const sizes = [3e6, 7e6, 1.2e7, 5e5, 2.5e7];
    const created: number[] = [];
    for (let step = 0; step < 6; step++) {
      tidy(() => {
        for (const s of sizes) full([Math.floor(s)], step);
      });
      engine().flush();
      created.push(engine().pool.stats().created);
    }
    expect(created[5]).to.equal(created[2]);
  });
});
