// Kernel parameters by name: the layouts scripts/embed-shaders.mjs reads from each shader's
// `struct Params`, the engine's packing by field name, and the layering that keeps the engine
// ignorant of the ops.
import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { engine, tensor, empty, kernelVariants, type KernelCall } from '../src/index.js';
import { PARAM_LAYOUTS, SHADERS } from '../src/gpu/shaders.generated.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('kernel params by name', () => {
  it('lays out each struct Params by the WGSL uniform rules (the subgroup conv tables start at byte 112)', () => {
    const fwd = PARAM_LAYOUTS['conv2d.fwd']!;
    expect(fwd.fields.map((f) => f.name).slice(0, 4)).to.deep.equal(['n', 'cin', 'h', 'w']);
    expect(fwd.fields.find((f) => f.name === 'dilationH')).to.deep.include({ type: 'i32', offset: 13 * 4 });
    expect(fwd.size).to.equal(23 * 4); // ... owBlocks, inOff, outOff
    const sg = PARAM_LAYOUTS['conv2d.fwd_sg']!;
    const at = (name: string) => sg.fields.find((f) => f.name === name)!;
    expect(at('nc').offset).to.equal(96);
    expect(at('rb')).to.deep.include({ offset: 112, count: 16, comps: 4, stride: 16 });
    expect(at('cb').offset).to.equal(176);
    expect(at('pre')).to.deep.include({ offset: 240, count: 228 });
    expect(sg.size).to.equal(1152);
    expect(PARAM_LAYOUTS['add']!.fields.map((f) => [f.name, f.type])).to.deep.equal([['n', 'u32'], ['alpha', 'f32']]);
  });

  it('resolves shared helpers: the conv shaders get floorDiv from shaders/common/div.wgsl, once', () => {
    for (const s of ['conv2d.fwd', 'conv2d.dx', 'conv2d.dw', 'conv2d.fwd_sg', 'conv2d.dx_sg', 'conv2d.dw_sg'] as const) {
      expect(SHADERS[s].match(/fn floorDiv\(/g), s).to.have.length(1);
      expect(SHADERS[s], s).not.to.contain('#include');
    }
  });

  it('packs fields by name and type: a launch gives the same result whatever the key order', async () => {
    const e = engine();
    const a = tensor([1, 2, 3], [3]);
    const b = tensor([10, 20, 30], [3]);
    const out = empty([3]);
    e.run({ shader: 'add', params: { alpha: -0.5, n: 3 }, bindings: [a, b, out], workgroups: e.grid1d(3) });
    expect(Array.from(await out.data())).to.deep.equal([-4, -8, -12]);
    for (const t of [a, b, out]) t.dispose();
  });

  it('rejects a missing, unknown or ill-typed field before recording, naming the shader and the field', () => {
    const e = engine();
    const t = tensor([1, 2, 3, 4], [4]);
    const before = e.stats().dispatches;
    const run = (params: unknown) => () => e.run({ shader: 'fill', params, bindings: [t], workgroups: [1] } as KernelCall<'fill'>);
    expect(run({ n: 4 })).to.throw(/fill: Params: missing field 'value'/);
    expect(run({ n: 4, value: 1, vlaue: 2 })).to.throw(/fill: Params: unknown field 'vlaue'/);
    expect(run({ n: -1, value: 1 })).to.throw(/fill: Params\.n = -1 does not fit in u32/);
    expect(run({ n: 1.5, value: 1 })).to.throw(/fill: Params\.n = 1\.5 is not an integer/);
    expect(() => e.run({ shader: 'conv2d.fwd_sg', params: { rb: [1, 2] }, bindings: [t], workgroups: [1] } as unknown as KernelCall)).to.throw(/conv2d\.fwd_sg: Params: missing field 'n'/);
    expect(e.stats().dispatches).to.equal(before);
    t.dispose();
  });

  it('src/gpu imports nothing from src/ops (the engine does not know the ops)', () => {
    const dir = join(root, 'src', 'gpu');
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const text = readFileSync(join(dir, f), 'utf8');
      expect(text, `src/gpu/${f}`).not.to.match(/from '\.\.\/(ops|nn|train)\//);
      expect(text, `src/gpu/${f}`).not.to.match(/import\('\.\.\/ops\//);
    }
  });

  it('bench/ is a leaf: no file in src/ or web/ imports from it', () => {
    const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.ts') ? [join(d, e.name)] : []));
    const files = [...walk(join(root, 'src')), ...walk(join(root, 'web'))];
    expect(files.length).to.be.greaterThan(50);
    for (const f of files) {
      const text = readFileSync(f, 'utf8');
      // From src/x.ts '../bench/' is src/bench; from deeper files or web/ it would be the top-level bench/.
      const depth = f.slice(root.length + 1).split('/').length - 1;
      const up = '\\.\\./'.repeat(depth);
      expect(text, f).not.to.match(new RegExp(`(from |import\\()'${up}bench/`));
    }
  });

  it('every op with several kernels declares them in the one variant registry', () => {
    expect(kernelVariants().map((k) => k.name)).to.include.members(['conv2d', 'batchNorm.reduction', 'batchNorm.elementwise']);
  });
});
