// Round trip with PyTorch (opt-in: ATROUS_TORCH=1, `npm run test:torch`; needs /usr/bin/python3 with
// torch and torchvision, or ATROUS_PYTHON): the twin's named configurations are atrous's; checkpoints
// written by atrous load in the twin (tools/atrous_torch.py) and give atrous's logits; and a
// checkpoint trained further in PyTorch with DistributedDataParallel on two CPU processes
// (torchrun, gloo; tools/torch_ddp_train.py) loads back in atrous with the same logits on the same
// image, its weights changed, and the script's evaluation agrees with `atrous eval`. Without
// ATROUS_TORCH=1 every test is skipped (CI has no Python); with it and no PyTorch the suite fails,
// saying what is missing.
import { expect } from 'chai';
import { readFileSync, writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  CONFIGS, createDeepLabV3, modelConfig, modelFromCheckpoint, readCheckpoint, saveCheckpoint, tensor, noGrad, normalize, rgbToChw,
  type DeepLabV3,
} from '../src/index.js';
import { parseSafetensors, serializeSafetensors, toFloat32 } from '../src/io/safetensors.js';
import { decodeImage } from '../src/io/image.js';
import { expectClose, randn, relErr } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const ENABLED = process.env.ATROUS_TORCH === '1';
const PYTHON = process.env.ATROUS_PYTHON ?? '/usr/bin/python3';
const TWIN = join(root, 'tools', 'atrous_torch.py');

function run(cmd: string, args: string[], what: string, env: Record<string, string> = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: root, env: { ...process.env, OMP_NUM_THREADS: '1', ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The twin's eval logits of checkpoint `weights` on x [1, 3, h, w] (tools/atrous_torch.py logits). */
function twinLogits(dir: string, weights: string, x: Float32Array, shape: number[], outputStride?: number): Float32Array {
  const input = join(dir, 'x.safetensors');
  const output = join(dir, 'out.safetensors');
  writeFileSync(input, serializeSafetensors({ x: { dtype: 'F32', shape, data: x } }));
  run(PYTHON, [TWIN, 'logits', '--weights', weights, '--input', input, '--out', output, ...(outputStride ? ['--output-stride', String(outputStride)] : [])], 'atrous_torch.py logits');
  const st = parseSafetensors(readFileSync(output), output);
  return toFloat32(st.tensors.get('out')!, 'out');
}

async function atrousLogits(model: DeepLabV3, x: Float32Array, shape: number[]): Promise<Float32Array> {
  model.eval();
  const t = tensor(x, shape);
  const y = noGrad(() => model.forward(t));
  const v = await y.float32();
  t.dispose();
  y.dispose();
  return v;
}

describe('PyTorch round trip (opt-in: ATROUS_TORCH=1, npm run test:torch)', function () {
  let dir = '';
  before(function () {
    if (!ENABLED) {
      console.log('      (skipped: set ATROUS_TORCH=1 to run it — `npm run test:torch` — with python3-torch and python3-torchvision installed)');
      this.skip();
    }
    const probe = spawnSync(PYTHON, ['-c', 'import torch, torchvision'], { encoding: 'utf8' });
    if (!existsSync(PYTHON) || probe.status !== 0) {
      throw new Error(`ATROUS_TORCH=1 needs ${PYTHON} with torch and torchvision (apt-get install python3-torch python3-torchvision, or set ATROUS_PYTHON): ${probe.stderr ?? probe.error}`);
    }
    dir = mkdtempSync(join(tmpdir(), 'atrous-torch-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the twin knows every named configuration, field for field', () => {
    const twin = JSON.parse(run(PYTHON, [TWIN, 'configs'], 'atrous_torch.py configs')) as Record<string, unknown>;
    expect(twin).to.deep.equal(JSON.parse(JSON.stringify(CONFIGS)));
  });

  it('checkpoints written by atrous load in the twin and give atrous\'s logits (mini, cascade, torchvision-style with aux)', async () => {
    const cases = [
      { ckpt: await saveCheckpoint(modelFromCheckpoint(new Uint8Array(readFileSync(join(root, 'weights', 'mini-shapes.safetensors')))).model), os: [8, 16] },
      { ckpt: await saveCheckpoint(createDeepLabV3(modelConfig('paper-r101-cascade', { numClasses: 3, blocks: [1, 1, 1, 2], multiGrid: [1, 2], widthMultiplier: 0.05 }), { seed: 3 })), os: [16, 64] },
      { ckpt: await saveCheckpoint(createDeepLabV3(modelConfig('torchvision-deeplabv3-resnet50', { numClasses: 4, widthMultiplier: 0.0625, aux: true, aspp: { channels: 8 } }), { seed: 4 })), os: [8] },
    ];
    const shape = [1, 3, 37, 45];
    const x = randn(shape.reduce((a, b) => a * b, 1), 11);
    for (const [i, c] of cases.entries()) {
      const path = join(dir, `atrous-${i}.safetensors`);
      writeFileSync(path, c.ckpt);
      const { model, config } = modelFromCheckpoint(c.ckpt);
      for (const os of c.os) {
        model.setOutputStride(os);
        const want = await atrousLogits(model, x, shape);
        expectClose(twinLogits(dir, path, x, shape, os), want, 1e-4, `${config.name} at OS ${os}`);
      }
      model.dispose();
    }
  });

  it('torchrun, 2 CPU processes (gloo): an atrous checkpoint trains on, saves, and loads back in atrous with the twin\'s logits', async function () {
    const data = join(dir, 'shapes');
    const cli = join(root, 'bin', 'atrous.js');
    run(process.execPath, [cli, 'data', 'export', '--dataset', 'shapes', '--split', 'train', '--count', '32', '--format', 'png', '--out', data], 'atrous data export');
    run(process.execPath, [cli, 'data', 'export', '--dataset', 'shapes', '--split', 'val', '--count', '2', '--format', 'png', '--out', data], 'atrous data export');
    const init = join(root, 'weights', 'mini-shapes.safetensors');
    const out = join(dir, 'ddp.safetensors');
    // --redirects/--tee: Debian's torch 1.13 on Python 3.11 cannot parse their default "0".
    const log = run(PYTHON, ['-m', 'torch.distributed.run', '--nproc_per_node', '2', '--redirects', '2', '--tee', '1',
      join(root, 'tools', 'torch_ddp_train.py'), '--init', init, '--data', data, '--steps', '3', '--batch', '4', '--lr', '0.01', '--log-every', '1', '--out', out],
    'torchrun tools/torch_ddp_train.py');
    expect(log).to.match(/2 process\(es\), batch 4 \(2 each\)/);
    expect(log).to.match(/step 3\/3 loss \d/);

    const before = readCheckpoint(new Uint8Array(readFileSync(init)));
    const bytes = new Uint8Array(readFileSync(out));
    const { model, config, metadata } = modelFromCheckpoint(bytes, { source: out });
    expect(config).to.deep.equal(before.config);
    expect(metadata.format).to.equal('atrous-deeplabv3');
    expect(model.inference!.outputStride).to.equal(8);
    expect(model.inference!.classes).to.deep.equal(JSON.parse(readFileSync(join(data, 'atrous-dataset.json'), 'utf8')).classNames);
    // The weights moved: every trained tensor (the convolutions; the BN statistics too) changed.
    const after = readCheckpoint(bytes).state;
    let changed = 0;
    let convs = 0;
    for (const [k, v] of before.state) {
      if (!k.endsWith('.weight') || v.shape.length !== 4) continue;
      convs++;
      const e = relErr(after.get(k)!.data, v.data);
      if (e > 1e-7) changed++;
    }
    expect(changed, `conv weights changed of ${convs}`).to.equal(convs);
    expect(after.get('backbone.bn1.num_batches_tracked')!.data[0]).to.equal(before.state.get('backbone.bn1.num_batches_tracked')!.data[0] + 3);

    // One val image, as `atrous eval` reads it, through atrous and through the twin.
    const id = readFileSync(join(data, 'ImageSets', 'Segmentation', 'val.txt'), 'utf8').split(/\s+/)[0];
    const img = decodeImage(new Uint8Array(readFileSync(join(data, 'JPEGImages', `${id}.png`))), id);
    const hw = img.height * img.width;
    const x = normalize(rgbToChw(img.data, img.height, img.width), hw, model.inference!.normalization);
    const shape = [1, 3, img.height, img.width];
    const want = await atrousLogits(model, x, shape);
    const got = twinLogits(dir, out, x, shape);
    expectClose(got, want, 1e-4, 'logits of the DDP-trained checkpoint');
    console.log(`      (atrous vs PyTorch logits of the DDP-trained checkpoint, ${img.height}×${img.width} image: normwise relative error ${relErr(got, want).toExponential(2)})`);
    // And they are not the initial model's logits.
    const { model: m0 } = modelFromCheckpoint(new Uint8Array(readFileSync(init)));
    expect(relErr(await atrousLogits(m0, x, shape), want)).to.be.greaterThan(1e-3);
    m0.dispose();
    model.dispose();

    // The script's --eval counts as `atrous eval` does: the same per-class IoU on the val split.
    const py = JSON.parse(run(PYTHON, [join(root, 'tools', 'torch_ddp_train.py'), '--init', out, '--data', data, '--steps', '0', '--eval', 'val'], 'torch_ddp_train.py --eval').trim().split('\n').at(-1)!) as { miou: number; iou: (number | null)[]; pixels: number };
    const js = JSON.parse(run(process.execPath, [cli, 'eval', '--weights', out, '--dataset', `voc:${data}`, '--json'], 'atrous eval')) as { miou: number; iou: (number | null)[]; pixels: number };
    expect(py.pixels).to.equal(js.pixels);
    expect(py.iou.length).to.equal(js.iou.length);
    py.iou.forEach((v, k) => expect(v === null ? null : Number(v.toFixed(3)), `IoU of class ${k}`).to.equal(js.iou[k] === null ? null : Number(js.iou[k]!.toFixed(3))));
  });
});
