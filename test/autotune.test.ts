// The per-adapter choice of the conv2d forward kernel variant: autotune, memory and file caches,
// forcing. No timing is asserted (lavapipe's speed varies with the machine's load).
import { expect } from 'chai';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { engine, tensor, conv2d, type Conv2dOptions } from '../src/index.js';
import { randn, expectClose } from './helpers.js';
import {
  autotuneConv2d,
  clearConv2dAutotune,
  conv2dVariants,
  conv2dAutotuned,
  setConv2dVariant,
  describeConv2dVariant,
  CONV2D_VARIANTS,
  AUTOTUNE_FILE,
  conv2dForward,
  conv2dGeometry,
  conv2dBackwardData,
  conv2dBackwardWeight,
  type Conv2dVariant,
} from '../src/ops/conv2d/index.js';

const other = (v: Conv2dVariant): Conv2dVariant => (v === 'register' ? 'tiled' : 'register');
/** The variants this device can run (subgroup needs the 'subgroups' feature). */
const available = (): Conv2dVariant[] => CONV2D_VARIANTS.filter((v) => conv2dVariants.available(v, engine()));

/** The forward shader a conv2d call dispatches. */
function forwardShader(): string {
  const x = tensor(new Float32Array(2 * 3 * 5 * 5).fill(1), [2, 3, 5, 5]);
  // 64 output channels: a full tile of every variant (the subgroup kernels fall back to the
  // register ones for channel counts that would leave most of their tile empty).
  const w = tensor(new Float32Array(64 * 3 * 3 * 3).fill(1), [64, 3, 3, 3]);
  const specs = engine().trace(() => conv2d(x, w, null, { padding: 1 }).dispose());
  x.dispose();
  w.dispose();
  const fwd = specs.map((s) => s.shader).filter((s) => s.startsWith('conv2d.fwd'));
  expect(fwd).to.have.length(1);
  return fwd[0];
}
const SHADER: Record<Conv2dVariant, string> = { register: 'conv2d.fwd', tiled: 'conv2d.fwd_tiled', subgroup: 'conv2d.fwd_sg' };

describe('conv2d kernel variant autotune', () => {
  const saved = { dir: process.env.ATROUS_CACHE_DIR, env: process.env.ATROUS_CONV_VARIANT };
  let dir = '';
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'atrous-autotune-'));
    process.env.ATROUS_CACHE_DIR = dir;
    delete process.env.ATROUS_CONV_VARIANT;
    setConv2dVariant(null);
    clearConv2dAutotune();
  });
  after(async () => {
    process.env.ATROUS_CACHE_DIR = saved.dir;
    if (saved.env === undefined) delete process.env.ATROUS_CONV_VARIANT;
    else process.env.ATROUS_CONV_VARIANT = saved.env;
    setConv2dVariant(null);
    clearConv2dAutotune();
    await autotuneConv2d(engine()); // the suite's own choice again (from its cache file)
  });

  it('measures every variant the device can run, picks one, keeps it in memory and in the cache file', async () => {
    const e = engine();
    const c = await autotuneConv2d(e);
    expect(c.source).to.equal('autotune');
    expect(CONV2D_VARIANTS).to.include(c.variant);
    expect(c.adapter).to.equal(e.adapterName);
    for (const v of available()) expect(c.ms![v], v).to.be.greaterThan(0);
    if (!e.hasSubgroups) expect(c.note).to.contain('subgroup: the device has no subgroups of at least 8 invocations');
    // The fastest one (by the measurements it made) is the one picked.
    const times = Object.values(c.ms!) as number[];
    expect(c.ms![c.variant]).to.equal(Math.min(...times));
    expect(conv2dAutotuned(e.adapterName)).to.equal(c);
    expect(conv2dVariants.choose(e)).to.deep.include({ variant: c.variant, source: 'autotune' });
    expect(forwardShader()).to.equal(SHADER[c.variant]);
    expect(describeConv2dVariant()).to.match(/^(register|tiled|subgroup) \(autotuned: .*× faster than/);
    const file = JSON.parse(readFileSync(join(dir, AUTOTUNE_FILE), 'utf8'));
    expect(file.version).to.equal(1);
    expect(file.conv2dForward[e.adapterName].variant).to.equal(c.variant);
    // A second call in the process answers from memory (the same object, nothing re-measured).
    expect(await autotuneConv2d(e)).to.equal(c);
  });

  it('a later process (memory cleared) reads the file instead of timing', async () => {
    const e = engine();
    const first = await autotuneConv2d(e);
    clearConv2dAutotune();
    // Make the file say the other variant: only a read of the file can produce it.
    const path = join(dir, AUTOTUNE_FILE);
    const file = JSON.parse(readFileSync(path, 'utf8'));
    file.conv2dForward[e.adapterName].variant = other(first.variant);
    writeFileSync(path, JSON.stringify(file));
    const c = await autotuneConv2d(e);
    expect(c.source).to.equal('cache');
    expect(c.variant).to.equal(other(first.variant));
    expect(forwardShader()).to.equal(SHADER[other(first.variant)]);
    expect(describeConv2dVariant()).to.contain(`cached in ${path}`);
  });

  it('ignores a cache entry made for other kernel sources, and a damaged file', async () => {
    const e = engine();
    const path = join(dir, AUTOTUNE_FILE);
    writeFileSync(path, JSON.stringify({ version: 1, conv2dForward: { [e.adapterName]: { variant: 'tiled', kernels: 'not-these', measured: '' } } }));
    expect((await autotuneConv2d(e)).source).to.equal('autotune');
    clearConv2dAutotune();
    writeFileSync(path, '{ not json');
    expect((await autotuneConv2d(e)).source).to.equal('autotune');
    expect(JSON.parse(readFileSync(path, 'utf8')).conv2dForward[e.adapterName].kernels).to.be.a('string');
  });

  it('a forced variant wins over the autotuned / cached choice', async () => {
    const e = engine();
    const c = await autotuneConv2d(e);
    const forced = other(c.variant);
    process.env.ATROUS_CONV_VARIANT = forced;
    expect(conv2dVariants.choose(e)).to.deep.include({ variant: forced, source: 'env' });
    expect(forwardShader()).to.equal(SHADER[forced]);
    expect(describeConv2dVariant()).to.equal(`${forced} (forced by ATROUS_CONV_VARIANT)`);
    // setConv2dVariant wins over the environment too.
    setConv2dVariant(c.variant);
    expect(conv2dVariants.choose(e)).to.deep.include({ variant: c.variant, source: 'forced' });
    expect(forwardShader()).to.equal(SHADER[c.variant]);
    setConv2dVariant('auto');
    process.env.ATROUS_CONV_VARIANT = 'auto';
    expect(conv2dVariants.choose(e)).to.equal(c);
    process.env.ATROUS_CONV_VARIANT = 'fastest';
    expect(() => conv2dVariants.choose(e)).to.throw(/ATROUS_CONV_VARIANT = 'fastest' is not a conv2d kernel variant/);
    expect(() => setConv2dVariant('fast' as Conv2dVariant)).to.throw(/not a conv2d kernel variant/);
  });

  it('without a cache directory it still tunes (memory only)', async () => {
    delete process.env.ATROUS_CACHE_DIR;
    const home = process.env.HOME;
    const xdg = process.env.XDG_CACHE_HOME;
    delete process.env.HOME;
    delete process.env.XDG_CACHE_HOME;
    try {
      const c = await autotuneConv2d(engine());
      expect(c.source).to.equal('autotune');
      expect(existsSync(join(dir, AUTOTUNE_FILE))).to.equal(false);
    } finally {
      if (home !== undefined) process.env.HOME = home;
      if (xdg !== undefined) process.env.XDG_CACHE_HOME = xdg;
    }
  });
});

describe('conv2d kernel variants agree with each other', () => {
  // Odd sizes, strides 2 and 3 (backward-data residue classes), rates past the map, channel counts
  // that are not multiples of a tile, and shapes on both sides of the subgroup kernels' fallback
  // to the register ones (channel tiles less than half full).
  const shapes: [number[], number[], boolean, Conv2dOptions][] = [
    [[2, 9, 11, 13], [70, 9, 3, 3], true, { padding: 1 }],
    [[1, 17, 13, 11], [70, 17, 3, 3], false, { padding: [36, 2], dilation: [36, 1] }],
    [[3, 5, 12, 9], [66, 5, 3, 5], true, { stride: [2, 3], padding: [2, 1], dilation: [2, 1] }],
    [[1, 20, 9, 9], [19, 20, 7, 7], true, { stride: 2, padding: 3 }],
    [[2, 37, 10, 7], [66, 37, 3, 3], false, { stride: 2, padding: 2, dilation: 2 }],
    [[1, 70, 6, 6], [40, 70, 1, 1], true, {}],
    [[2, 64, 9, 9], [32, 64, 3, 3], false, { padding: 6, dilation: 6 }],
    [[1, 33, 12, 9], [61, 33, 3, 5], true, { stride: [2, 3], padding: [1, 2] }],
    // 7×7 (the stem: up to 16 region breakpoints per axis) and 9×9 (too many: one masked region).
    [[1, 8, 23, 23], [64, 8, 7, 7], true, { stride: 2, padding: 3 }],
    [[1, 6, 20, 20], [64, 6, 9, 9], false, { padding: 4, dilation: 2 }],
  ];
  const dispatched = new Set<string>();
  shapes.forEach(([xs, ws, bias, opts], i) => {
    it(`x [${xs}], w [${ws}], ${JSON.stringify(opts)}${bias ? ', bias' : ''}: forward, backward-data, backward-weight`, async () => {
      const x = tensor(randn(xs.reduce((a, b) => a * b), 40 + i), xs);
      const w = tensor(randn(ws.reduce((a, b) => a * b), 50 + i, 0.3), ws);
      const b = bias ? tensor(randn(ws[0], 60 + i), [ws[0]]) : null;
      const g = conv2dGeometry(x, w, b, opts);
      const dy = tensor(randn(g.n * g.cout * g.oh * g.ow, 70 + i), [g.n, g.cout, g.oh, g.ow]);
      const ref = { y: conv2dForward(x, w, b, g, 'register'), dx: conv2dBackwardData(dy, w, g, 'register'), dw: conv2dBackwardWeight(x, dy, g, 'register') };
      const want = { y: await ref.y.float32(), dx: await ref.dx.float32(), dw: await ref.dw.float32() };
      for (const v of available().filter((v) => v !== 'register')) {
        const passes = () => ({ y: conv2dForward(x, w, b, g, v), dx: conv2dBackwardData(dy, w, g, v), dw: conv2dBackwardWeight(x, dy, g, v) });
        for (const spec of engine().trace(() => Object.values(passes()).forEach((t) => t.dispose()))) dispatched.add(spec.shader);
        const got = passes();
        // Same summation order in every kernel: equal up to float rounding.
        expectClose(await got.y.float32(), want.y, 1e-5, `${v} forward vs register`);
        expectClose(await got.dx.float32(), want.dx, 1e-5, `${v} backward-data vs register`);
        expectClose(await got.dw.float32(), want.dw, 1e-5, `${v} backward-weight vs register`);
        for (const u of Object.values(got)) u.dispose();
      }
      for (const u of [x, w, b, dy, ...Object.values(ref)]) u?.dispose();
    });
  });
  it('the committed subgroup kernels are what scripts/gen-conv-subgroup.mjs writes', () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'gen-conv-subgroup.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
  });
  it('the shapes above ran every kernel of every variant the device has', function () {
    const want = ['conv2d.fwd_tiled', ...(engine().hasSubgroups ? ['conv2d.fwd_sg', 'conv2d.dx_sg', 'conv2d.dw_sg', 'conv2d.fwd', 'conv2d.dx', 'conv2d.dw'] : [])];
    for (const s of want) expect([...dispatched], s).to.include(s);
  });
});
