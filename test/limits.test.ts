// Device limits: work that would exceed a limit fails before it is recorded, with an error that
// names the limit. The limits are lowered through DeviceOptions, as a user could.
import { expect } from 'chai';
import { totalmem } from 'node:os';
import { reinit, engine, tensor, add, tidy, empty } from '../src/index.js';
import { parseMemorySize, isSoftwareAdapter } from '../src/gpu/device.js';

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

  it('allocates a tensor that fits maxBufferSize even where its segment size would not', async () => {
    // A 59000-byte request would get a 2 MiB small segment, above the limit, and 60000 is no
    // multiple of 256 (lavapipe's 2^32 − 1 is not either): the segment is the request's own size.
    await reinit({ limits: { maxBufferSize: 60000 } });
    const a = Float32Array.from({ length: 14750 }, (_, i) => i);
    const t = tensor(a, [14750]);
    expect(Array.from(await t.data())).to.deep.equal(Array.from(a));
    t.dispose();
    expect(() => tensor(new Float32Array(15001), [15001])).to.throw('a tensor [15001] (f32) needs 60004 bytes, above the device limit maxBufferSize (60000 bytes)');
  });

  it('refuses a tensor that would take the pool past its memory limit, naming it, its bytes and the limit, and gives free segments back first', async () => {
    const MiB = 2 ** 20;
    await reinit({ memoryLimit: 64 * MiB });
    const pool = engine().pool;
    expect(pool.memoryLimit).to.equal(64 * MiB);
    const a = empty([10 * MiB]); // 40 MiB
    expect(() => empty([7 * MiB])).to.throw(
      /out of memory: a tensor \[7340032\] \(f32\) needs 29360128 bytes \(0\.03 GiB\) more than the pool can hold: it holds 41943040 bytes .* and may hold 67108864 \(0\.06 GiB, the memory limit/,
    );
    expect(pool.stats().allocatedBytes, 'nothing allocated by the refusal').to.equal(40 * MiB);
    a.dispose();
    // a's segment is wholly free: it is given back, and the larger tensor fits.
    const b = empty([12 * MiB]);
    expect(pool.stats().allocatedBytes).to.equal(48 * MiB);
    b.dispose();
  });

  it('reads the memory limit from ATROUS_MEMORY_LIMIT, and on lavapipe defaults to 3/4 of the host memory', async () => {
    expect(parseMemorySize('12G', 'x')).to.equal(12 * 2 ** 30);
    expect(parseMemorySize('1536M', 'x')).to.equal(1536 * 2 ** 20);
    expect(parseMemorySize('1000', 'x')).to.equal(1000);
    expect(() => parseMemorySize('lots', 'ATROUS_MEMORY_LIMIT')).to.throw("ATROUS_MEMORY_LIMIT must be a number of bytes, or a number with K, M or G (e.g. 12G), got 'lots'");
    process.env.ATROUS_MEMORY_LIMIT = '3G';
    try {
      await reinit();
      expect(engine().pool.memoryLimit).to.equal(3 * 2 ** 30);
    } finally {
      delete process.env.ATROUS_MEMORY_LIMIT;
    }
    await reinit();
    const expected = isSoftwareAdapter(engine().info) ? Math.floor(totalmem() * 0.75) : Infinity;
    expect(engine().pool.memoryLimit).to.equal(expected);
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
