// Device limits: work that would exceed a limit fails before it is recorded, with an error that
// names the limit. The limits are lowered through DeviceOptions, as a user could.
import { expect } from 'chai';
import { reinit, engine, tensor, add, tidy } from '../src/index.js';

describe('device limits', () => {
  after(async () => {
    await reinit();
    engine().pool.poison = true;
  });

  it('names maxStorageBufferBindingSize when a launch binds too much (ops split; the engine checks)', async () => {
    await reinit({ limits: { maxStorageBufferBindingSize: 4096 } });
    expect(engine().limits.maxStorageBufferBindingSize).to.equal(4096);
    const before = engine().stats().dispatches;
    tidy(() => {
      const small = tensor(new Float32Array(1024), [1024]);
      const small2 = tensor(new Float32Array(1024), [1024]);
      expect(() => add(small, small2)).not.to.throw();
      const big = tensor(new Float32Array(1025), [1025]);
      const big2 = tensor(new Float32Array(1025), [1025]);
      const e = engine();
      expect(() => e.run({ shader: 'add', params: { n: 1025, alpha: 1 }, bindings: [big, big2, big], workgroups: e.grid1d(1025) })).to.throw(/maxStorageBufferBindingSize \(4096 bytes\)/);
      expect(() => add(big, big2)).not.to.throw(); // split into two launches
    });
    expect(engine().stats().dispatches).to.equal(before + 3);
  });

  it('names maxBufferSize when an allocation is too large', async () => {
    await reinit({ limits: { maxBufferSize: 1 << 16 } });
    expect(() => tensor(new Float32Array(1 << 15), [1 << 15])).to.throw(/maxBufferSize \(65536 bytes\)/);
  });

  it('allocates a tensor that fits maxBufferSize even where its size class would not', async () => {
    // 60000 is no multiple of the size classes (lavapipe's 2^32 − 1 is not either): 59000 bytes
    // round to the class 61440, above it.
    await reinit({ limits: { maxBufferSize: 60000 } });
    const a = Float32Array.from({ length: 14750 }, (_, i) => i);
    const t = tensor(a, [14750]);
    expect(Array.from(await t.data())).to.deep.equal(Array.from(a));
    t.dispose();
    expect(() => tensor(new Float32Array(15001), [15001])).to.throw('a tensor [15001] (f32) needs 60004 bytes, above the device limit maxBufferSize (60000 bytes)');
  });

  it('folds large flat dispatches into two dimensions', async () => {
    await reinit({ limits: { maxComputeWorkgroupsPerDimension: 16 } });
    const n = 64 * 16 * 3 + 5; // needs 49 workgroups of 64: more than 16 in one dimension
    const a = Float32Array.from({ length: n }, (_, i) => i);
    const out = tidy(() => add(tensor(a, [n]), tensor(a, [n])));
    const v = await out.data();
    out.dispose();
    let ok = true;
    for (let i = 0; i < n; i++) if (v[i] !== 2 * i) ok = false;
    expect(ok).to.equal(true);
  });
});
