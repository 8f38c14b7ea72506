// The PyTorch twin (tools/atrous_torch.py) computes what atrous computes, for every architecture
// feature: the committed fixtures of test/fixtures/twin/ (tools/gen_twin_fixture.py) hold twin-written
// checkpoints (or weights/mini-shapes.safetensors), an input and PyTorch's eval logits at several
// output strides; atrous loads each checkpoint and must give the same logits (normwise relative
// error <= 1e-4). No Python runs here; test/torch-roundtrip.test.ts is the opt-in direction the
// other way (atrous-written checkpoints in PyTorch, and distributed training). Also: the initial
// weights tools/atrous_init.mjs writes (for a PyTorch run to start where an atrous run starts) are
// those `atrous train --seed S` starts from.
import { expect } from 'chai';
import { readFileSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { modelFromCheckpoint, readCheckpoint, tensor, noGrad } from '../src/index.js';
import { parseSafetensors, toFloat32, type SafeTensors } from '../src/io/safetensors.js';
import { expectClose, relErr } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = join(root, 'test', 'fixtures', 'twin');
const f32 = (st: SafeTensors, k: string) => toFloat32(st.tensors.get(k)!, k);

// What each case must exercise (so that a regenerated fixture cannot quietly lose a feature).
const EXPECT: Record<string, { config: string; strides: number[]; aux: boolean; check?: (c: Record<string, unknown>) => void }> = {
  mini: { config: 'mini', strides: [16, 8], aux: false },
  'paper-r50': { config: 'paper-r50-os16', strides: [16, 8], aux: false, check: (c) => expect(c.blocks).to.deep.equal([3, 4, 6, 3]) },
  'paper-cascade': {
    config: 'paper-r101-cascade', strides: [16, 128], aux: false,
    check: (c) => {
      expect(c.cascade).to.equal(3);
      expect(c.aspp).to.equal(null);
    },
  },
  'torchvision-aux': { config: 'torchvision-deeplabv3-resnet50', strides: [8, 16], aux: true, check: (c) => expect(c.headConv).to.equal(true) },
  custom: {
    config: 'twin-custom', strides: [32, 8, 64], aux: true,
    check: (c) => {
      const a = c.aspp as { rates: number[]; imagePooling: boolean };
      expect(a.rates.length).to.equal(4);
      expect(a.imagePooling).to.equal(false);
      expect(c.cascade).to.equal(1);
    },
  },
};

describe('PyTorch twin parity (test/fixtures/twin, tools/gen_twin_fixture.py)', () => {
  it('has every case', () => {
    const cases = readdirSync(dir).filter((f) => f.endsWith('_io.safetensors')).map((f) => f.replace(/_io\.safetensors$/, ''));
    expect(cases.sort()).to.deep.equal(Object.keys(EXPECT).sort());
  });

  for (const [name, want] of Object.entries(EXPECT)) {
    it(`${name}: atrous's logits equal the twin's at output stride ${want.strides.join(', ')}`, async () => {
      const io = parseSafetensors(readFileSync(join(dir, `${name}_io.safetensors`)), `${name}_io`);
      const weightsPath = io.metadata.weights;
      const { model, config, metadata } = modelFromCheckpoint(new Uint8Array(readFileSync(join(root, weightsPath))), { source: weightsPath });
      expect(config.name).to.equal(want.config);
      want.check?.(config as unknown as Record<string, unknown>);
      if (name !== 'mini') expect(metadata.format).to.equal('atrous-deeplabv3');
      model.eval();
      const xs = io.tensors.get('x')!;
      const x = tensor(f32(io, 'x'), xs.shape);
      const outs: Float32Array[] = [];
      for (const os of want.strides) {
        model.setOutputStride(os);
        const r = noGrad(() => model.forwardWithAux(x));
        expect(r.out.shape).to.deep.equal([1, config.numClasses, xs.shape[2], xs.shape[3]]);
        const got = await r.out.float32();
        expectClose(got, f32(io, `out.os${os}`), 1e-4, `${name} logits at OS ${os}`);
        outs.push(got);
        expect(r.aux !== null, 'aux head').to.equal(want.aux);
        if (r.aux) expectClose(await r.aux.float32(), f32(io, `aux.os${os}`), 1e-4, `${name} aux logits at OS ${os}`);
        r.out.dispose();
        r.aux?.dispose();
      }
      // The output strides must give different logits, or the fixture would not test them.
      for (let i = 1; i < outs.length; i++) expect(relErr(outs[i], outs[0]), `OS ${want.strides[i]} vs ${want.strides[0]}`).to.be.greaterThan(1e-3);
      x.dispose();
      model.dispose();
    });
  }

  it('keeps the metadata the twin wrote (inference settings, classes, dataset)', () => {
    const { model, metadata } = modelFromCheckpoint(new Uint8Array(readFileSync(join(dir, 'torchvision-aux.safetensors'))));
    expect(model.outputStride).to.equal(8);
    expect(model.inference!.classes).to.deep.equal(['background', 'a', 'b', 'c', 'd']);
    expect(metadata.dataset).to.equal('twin fixture');
    model.dispose();
  });
});

describe('tools/atrous_init.mjs: the weights atrous train starts from', () => {
  it('equals the weights of an `atrous train --seed 3` run after one step at lr 0', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atrous-init-'));
    try {
      const node = (args: string[]) => {
        const r = spawnSync(process.execPath, args, { encoding: 'utf8', cwd: root });
        if (r.status !== 0) throw new Error(`${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
      };
      node([join(root, 'tools', 'atrous_init.mjs'), '--config', 'mini', '--classes', '7', '--seed', '3', '--out', join(dir, 'init.safetensors')]);
      node([join(root, 'bin', 'atrous.js'), 'train', '--out', join(dir, 'run'), '--config', 'mini', '--dataset', 'shapes', '--seed', '3',
        '--steps', '1', '--batch', '2', '--crop', '33', '--lr', '0']);
      const init = readCheckpoint(new Uint8Array(readFileSync(join(dir, 'init.safetensors'))));
      const run = readCheckpoint(new Uint8Array(readFileSync(join(dir, 'run', 'checkpoints', 'step-0000001', 'model.safetensors'))));
      expect(init.config).to.deep.equal(run.config);
      expect([...init.state.keys()]).to.deep.equal([...run.state.keys()]);
      let compared = 0;
      for (const [k, v] of init.state) {
        if (k.includes('running_') || k.endsWith('num_batches_tracked')) continue; // one training-mode forward moved these
        expect(Buffer.from(run.state.get(k)!.data.buffer).equals(Buffer.from(v.data.buffer)), k).to.equal(true);
        compared++;
      }
      expect(compared).to.be.greaterThan(50); // every weight and bias (89 in mini)
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
