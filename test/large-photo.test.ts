// What a whole large photo needs beyond the binding-limit splits: a forward that lets the GPU catch
// up between pieces of the network (DeepLabV3.forwardAsync, used by segment()), and a buffer pool
// that sub-allocates, so that tensor sizes that keep changing do not pile up buffers.
import { expect } from 'chai';
import { engine, tensor, tidy, noGrad, createDeepLabV3, full, empty, relu, add, segment, type Tensor } from '../src/index.js';
import { BufferPool } from '../src/gpu/pool.js';
import { randn } from './helpers.js';

describe('large photos: stepwise forward and a sub-allocating pool', () => {
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

  it('segment() past the pool\'s memory limit fails before any GPU work, naming the tensor and the limit', async () => {
    const model = createDeepLabV3('mini', { seed: 3 });
    model.eval();
    const pool = engine().pool;
    await engine().sync();
    pool.trim();
    const was = pool.memoryLimit;
    pool.memoryLimit = pool.stats().allocatedBytes + 4 * 2 ** 20;
    const image = new Float32Array(3 * 257 * 257);
    const live = pool.stats().liveBuffers;
    const d = engine().stats().dispatches;
    try {
      let err: Error | null = null;
      await segment(model, image, 257, 257).catch((e: Error) => (err = e));
      expect(err!.message).to.match(/^atrous: out of memory: a tensor \[1, \d+, \d+, \d+\] \(f32\) needs \d+ bytes .* the memory limit/);
      expect(engine().stats().dispatches, 'no kernel recorded').to.equal(d);
      expect(pool.stats().liveBuffers, 'nothing left alive').to.equal(live);
      // Within the limit the trace's segments are the run's: the run makes none of its own.
      pool.memoryLimit = was;
      await segment(model, image, 257, 257);
      pool.trim();
      const traced = engine().trace(() => noGrad(() => tidy(() => void model.forward(empty([1, 3, 257, 257])))));
      expect(traced.length).to.be.above(0);
      const created = pool.stats().created;
      await segment(model, image, 257, 257);
      expect(pool.stats().created, 'segments made by the run after its trace').to.equal(created);
    } finally {
      pool.memoryLimit = was;
      model.dispose();
    }
  });

  it('the pool sub-allocates: tensors are aligned blocks of shared segments, reused at once and merged when freed', async () => {
    const pool = new BufferPool(engine().device, engine().limits.maxBufferSize);
    const MiB = 2 ** 20;
    // Small requests share one 2 MiB segment, each block on a 256-byte boundary.
    const s1 = pool.acquire(1000);
    const s2 = pool.acquire(5000);
    expect(s1.buffer).to.equal(s2.buffer);
    expect([s1.offset, s1.size, s2.offset, s2.size]).to.deep.equal([0, 1024, 1024, 5120]);
    expect(pool.stats().allocatedBytes).to.equal(2 * MiB);
    // A released block serves the next request that fits straight away (no submit in between).
    pool.release(s1);
    const s3 = pool.acquire(900);
    expect([s3.buffer, s3.offset]).to.deep.equal([s1.buffer, 0]);
    pool.release(s3);
    pool.release(s2);
    // Freed neighbours merge: the whole segment is one block again.
    const whole = pool.acquire(1 * MiB);
    expect([whole.buffer, whole.offset]).to.deep.equal([s1.buffer, 0]);
    pool.release(whole);
    expect(pool.stats().created).to.equal(1);
    // A large request gets a segment of its own size (rounded to 2 MiB); a smaller one later takes
    // its front and leaves the rest free for others.
    const a = pool.acquire(300 * MiB);
    expect(a.size).to.equal(300 * MiB);
    pool.release(a);
    const b = pool.acquire(200 * MiB);
    const c = pool.acquire(90 * MiB);
    expect([b.buffer, b.offset, c.buffer, c.offset]).to.deep.equal([a.buffer, 0, a.buffer, 200 * MiB]);
    expect(pool.stats().created).to.equal(2);
    // Best fit: the smallest free block that holds the request.
    pool.release(b);
    const d = pool.acquire(5 * MiB); // free: [0, 200) and [290, 300) MiB; the 10 MiB one fits best
    expect(d.offset).to.equal(290 * MiB);
    // Releasing c merges [0, 200) and [200, 290) into one block that a 290 MiB request fits.
    pool.release(c);
    const e = pool.acquire(290 * MiB);
    expect([e.buffer, e.offset, pool.stats().created]).to.deep.equal([a.buffer, 0, 2]);
    pool.release(e);
    pool.release(d);
    pool.trim();
    expect(pool.stats().allocatedBytes).to.equal(0);
  });

  it('in compact mode wholly free segments are given back before a new one is made; otherwise they are kept', async () => {
    const MiB = 2 ** 20;
    for (const compact of [true, false]) {
      const pool = new BufferPool(engine().device, engine().limits.maxBufferSize);
      pool.compact = compact;
      const destroyed: GPUBuffer[] = [];
      pool.onDestroy = (buf) => destroyed.push(buf);
      const a = pool.acquire(64 * MiB);
      const keep = pool.acquire(30 * MiB); // its own segment, live throughout
      pool.release(a);
      const b = pool.acquire(100 * MiB); // fits no free block: a new segment
      expect(destroyed).to.deep.equal(compact ? [a.buffer] : []);
      expect(pool.stats().allocatedBytes).to.equal(compact ? 130 * MiB : 194 * MiB);
      pool.release(b);
      pool.release(keep);
      pool.trim();
      expect(pool.stats().allocatedBytes).to.equal(0);
    }
  });

  it('in compact mode a segment freed by work still only recorded is destroyed only after that work is submitted', async () => {
    const pool = engine().pool;
    pool.compact = true;
    try {
      const a = full([3_000_000], 2); // 12 MB: a segment of its own
      const r = relu(a); // recorded, not submitted
      a.dispose(); // a's segment is wholly free now, still used by relu
      const submits = engine().stats().submits;
      const big = empty([20_000_000]); // fits no free block: free segments go first
      expect(engine().stats().submits, 'the recorded work was submitted before the destroy').to.be.above(submits);
      expect((await r.data(3)).every((v) => v === 2)).to.equal(true); // no "used in submit while destroyed"
      r.dispose();
      big.dispose();
    } finally {
      pool.compact = false;
    }
  });

  it('tensors at an offset in a shared buffer: uploads, reads, copies and kernels use their own bytes only', async () => {
    const a = tensor(new Float32Array([1, -2, 3]), [3]);
    const b = tensor(new Float32Array([-4, 5, -6, 7, -8]), [5]);
    expect(a.buffer).to.equal(b.buffer);
    expect(b.offset).to.equal(a.offset + 256);
    const r = tidy(() => relu(b));
    expect(Array.from(await r.data())).to.deep.equal([0, 5, 0, 7, 0]);
    b.copyTo(a, 2, 3, 1);
    expect(Array.from(await a.data())).to.deep.equal([1, 7, -8]);
    expect(Array.from(await b.data())).to.deep.equal([-4, 5, -6, 7, -8]);
    a.write(new Float32Array([9, 9, 9]));
    expect(Array.from(await b.data(2))).to.deep.equal([-4, 5]);
    for (const t of [a, b, r]) t.dispose();
  });

  it('the same tensor bound twice in one launch (x + x) is read from a copy, which is freed at once', async () => {
    const x = tensor(new Float32Array([1, 2, 3, 4, 5]), [5]);
    const live = engine().pool.stats().liveBuffers;
    const d = engine().stats().dispatches;
    const y = add(x, x);
    expect(engine().stats().dispatches - d, 'the copy and the add').to.equal(2);
    expect(engine().pool.stats().liveBuffers).to.equal(live + 1); // y only
    expect(Array.from(await y.data())).to.deep.equal([2, 4, 6, 8, 10]);
    // An output that is also an input is read from a copy too (in place: x += y).
    engine().run({ shader: 'add', params: { n: 5, alpha: 1 }, bindings: [x, y, x], workgroups: [1] });
    expect(Array.from(await x.data())).to.deep.equal([3, 6, 9, 12, 15]);
    // Two written bindings that overlap are refused, naming them.
    const e = engine();
    const params = { total: 5, d: 1, inner: 5, xoff: 0, ooff: 0, k0: 0, kn: 1 };
    expect(() => e.run({ shader: 'argmax', entry: 'block', params, bindings: [x, y, y], workgroups: [1] })).to.throw('argmax: bindings 2 and 3 overlap in one buffer and both are written');
    x.dispose();
    y.dispose();
  });

  it('a block reused at once is not overwritten early: the poison fill waits for the work recorded with its last tensor', async () => {
    const pool = engine().pool;
    pool.poison = true;
    try {
      const x = tensor(new Float32Array(1000).map((_, i) => i - 500), [1000]);
      const y = relu(x);
      const [xBuffer, xOffset] = [x.buffer, x.offset];
      x.dispose(); // its block is free now, while relu is still only recorded
      const z = empty([1000]); // takes x's block; poisoning it must not overtake relu
      expect([z.buffer, z.offset]).to.deep.equal([xBuffer, xOffset]);
      const got = await y.data();
      expect(Array.from(got).every((v, i) => v === Math.max(0, i - 500))).to.equal(true);
      y.dispose();
      z.dispose();
    } finally {
      pool.poison = false;
    }
  });

  it('a loop that repeats its allocations creates no segment once warm (training keeps what it has)', async () => {
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
    expect(created[5]).to.equal(created[1]);
  });
});
