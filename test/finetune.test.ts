// Fine-tuning: `atrous train --init FILE` from the four kinds of file, the class-count change,
// freezing (backbone, batch norm), the head's learning-rate multiplier, per-stage settings, and the
// errors that must come before anything is written.
import { expect } from 'chai';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelConfig, readCheckpoint, stateDictToSafetensors, DeepLabV3, SGD, parameter, tidy, backward, tensor, crossEntropy, type HostTensor } from '../src/index.js';
import { RunDir, train, resolveTrainOptions, runStages, type RunInfo, type TrainOptions } from '../src/train/index.js';
import { applyInit, keyPatterns, planInit } from '../src/train/init-weights.js';
import { newRun, randn, runCli as atrous, tinyOptions, writeBinaryMaskVoc } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHIPPED = join(root, 'weights', 'mini-shapes.safetensors');
const SMALL_TV = join(root, 'test', 'fixtures', 'model', 'small_weights.safetensors');

const equalData = (a: HostTensor, b: HostTensor) => a.data.length === b.data.length && a.data.every((x, i) => Object.is(x, b.data[i]));

/** Tiny run options: 2 shapes images, batch 2, 33×33 crops, 2 steps. */
const tiny = (o: Partial<TrainOptions> = {}): TrainOptions => tinyOptions({ steps: 2, seed: 5, checkpointEvery: 10, logEvery: 2, ...o });

const finalState = (run: RunDir) => readCheckpoint(readFileSync(run.latestFile('model.safetensors'))).state;

/** A state dict of `config`'s tensors (names and shapes from a meta model), seeded random values. */
function randomState(config: Parameters<typeof modelConfig>[1] & object, name = 'mini', seed = 1): Map<string, HostTensor> {
  const model = new DeepLabV3(modelConfig(name, config));
  const out = new Map<string, HostTensor>();
  let s = seed;
  for (const [k, shape] of model.stateDictShapes()) {
    const n = shape.reduce((a, b) => a * b, 1);
    out.set(k, k.endsWith('num_batches_tracked') ? { shape, data: Int32Array.of(7) } : { shape, data: k.endsWith('running_var') ? randn(n, s++, 0.1, 1) : randn(n, s++, 0.1) });
  }
  return out;
}

/** torchvision's resnet50-style classification names for a backbone state dict: `backbone.` dropped, `fc.*` added. */
function classificationDict(backbone: Map<string, HostTensor>, fcIn: number): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [k, v] of backbone) if (k.startsWith('backbone.')) out.set(k.slice('backbone.'.length), v);
  out.set('fc.weight', { shape: [10, fcIn], data: randn(10 * fcIn, 99, 0.01) });
  out.set('fc.bias', { shape: [10], data: new Float32Array(10) });
  return out;
}

/** torchvision's resnet18 classification state dict (basic blocks: two 3×3 convs per unit), names
 * and shapes at width `base` (64: the real one), zero weights. */
function basicBlockDict(base: number, blocks = [2, 2, 2, 2]): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  const conv = (k: string, shape: number[]) => out.set(k, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  const bn = (k: string, c: number) => {
    for (const p of ['weight', 'bias', 'running_mean', 'running_var']) out.set(`${k}.${p}`, { shape: [c], data: new Float32Array(c).fill(p === 'weight' || p === 'running_var' ? 1 : 0) });
    out.set(`${k}.num_batches_tracked`, { shape: [], data: Int32Array.of(0) });
  };
  conv('conv1.weight', [base, 3, 7, 7]);
  bn('bn1', base);
  let cin = base;
  blocks.forEach((n, s) => {
    const c = base * 2 ** s;
    for (let i = 0; i < n; i++) {
      const p = `layer${s + 1}.${i}`;
      conv(`${p}.conv1.weight`, [c, i === 0 ? cin : c, 3, 3]);
      bn(`${p}.bn1`, c);
      conv(`${p}.conv2.weight`, [c, c, 3, 3]);
      bn(`${p}.bn2`, c);
      if (i === 0 && cin !== c) {
        conv(`${p}.downsample.0.weight`, [c, cin, 1, 1]);
        bn(`${p}.downsample.1`, c);
      }
    }
    cin = c;
  });
  out.set('fc.weight', { shape: [10, cin], data: new Float32Array(10 * cin) });
  out.set('fc.bias', { shape: [10], data: new Float32Array(10) });
  return out;
}

describe('fine-tuning: init files, freezing, head lr', function () {
  this.timeout(600000);
  let dir: string;
  let shipped: Map<string, HostTensor>;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'atrous-finetune-'));
    shipped = readCheckpoint(readFileSync(SHIPPED), SHIPPED).state;
    writeBinaryMaskVoc(join(dir, 'bin'), { labelMap: { 255: 1 } });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keyPatterns: the fewest prefix patterns that cover exactly the keys', () => {
    const all = ['backbone.conv1.weight', 'backbone.bn1.weight', 'classifier.0.convs.0.0.weight', 'classifier.1.weight', 'classifier.1.bias'];
    expect(keyPatterns(all.slice(0, 3), all)).to.deep.equal(['backbone.*', 'classifier.0.*']);
    expect(keyPatterns(['classifier.1.weight', 'classifier.1.bias'], all)).to.deep.equal(['classifier.1.*']);
    expect(keyPatterns(['classifier.1.weight'], all)).to.deep.equal(['classifier.1.weight']);
    expect(keyPatterns(all, all)).to.deep.equal(['backbone.*', 'classifier.*']);
  });

  it('an atrous checkpoint with the same classes: every tensor loaded; freezeBackbone keeps the backbone bit-identical (running statistics too) while the head trains', async () => {
    const run = newRun(join(dir, 'same'), tiny({ init: SHIPPED, freezeBackbone: true }));
    await train(run);
    const info = run.readRun<RunInfo>();
    expect(info.init!.file).to.equal(SHIPPED);
    expect(info.init!.sha256).to.match(/^[0-9a-f]{64}$/);
    expect(info.init!.report.kind).to.equal('atrous-checkpoint');
    expect(info.init!.report.loaded).to.deep.equal({ count: shipped.size, patterns: ['backbone.*', 'classifier.*'] });
    expect(info.init!.report.reinitialised.count).to.equal(0);
    expect(info.init!.report.ignored.count).to.equal(0);
    const after = finalState(run);
    let backbone = 0;
    let changed = 0;
    for (const [k, v] of after) {
      if (k.startsWith('backbone.')) {
        backbone++;
        expect(equalData(v, shipped.get(k)!), `${k} changed`).to.equal(true);
      } else if (!equalData(v, shipped.get(k)!)) changed++;
    }
    expect(backbone).to.be.greaterThan(50);
    expect(changed, 'head tensors that changed').to.be.greaterThan(10);
  });

  it('another class count: the last classifier layer is re-initialised from the seed, everything else is the file\'s, bit for bit', async () => {
    const cfg = modelConfig('mini', { numClasses: 2 });
    const ck = readCheckpoint(readFileSync(SHIPPED), SHIPPED);
    const model = new DeepLabV3(cfg);
    const plan = planInit(ck, model, SHIPPED);
    expect(plan.report.reinitialised).to.deep.equal({ count: 2, patterns: ['classifier.1.*'], fromClasses: 7, toClasses: 2 });
    expect(plan.report.loaded.patterns).to.deep.equal(['backbone.*', 'classifier.0.*']);
    applyInit(model, plan, 11);
    const fresh = new DeepLabV3(cfg).materialize(11);
    try {
      const got = await model.readStateDict();
      const seeded = await fresh.readStateDict();
      for (const [k, v] of got) {
        const want = k.startsWith('classifier.1.') ? seeded.get(k)! : shipped.get(k)!;
        expect(equalData(v, want), k).to.equal(true);
      }
    } finally {
      model.dispose();
      fresh.dispose();
    }
  });

  it('atrous train --init on a dataset of another class count: prints and records the report; --head-lr-mult 0 leaves the head\'s parameters unchanged while the backbone trains', async () => {
    const out = join(dir, 'cli-2cls');
    const r = await atrous('train', '--init', SHIPPED, '--dataset', `voc:${join(dir, 'bin')}`, '--out', out, '--steps', '2', '--batch', '2', '--crop', '33',
      '--head-lr-mult', '0', '--seed', '4');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include(`init ${SHIPPED} (atrous checkpoint, sha256 `);
    expect(r.out).to.include('174 tensors loaded (backbone.*, classifier.0.*); 2 re-initialised (classifier.1.*) for 2 classes instead of 7; 0 initialised from the seed; 0 ignored');
    expect(r.out).to.include('head lr × 0');
    const info = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunInfo;
    expect(info.options.init).to.equal(SHIPPED);
    expect(info.options.config.name).to.equal('mini');
    expect(info.options.config.numClasses).to.equal(2);
    expect(info.init!.report.reinitialised.patterns).to.deep.equal(['classifier.1.*']);
    const after = finalState(RunDir.open(out));
    const seeded = new DeepLabV3(modelConfig('mini', { numClasses: 2 })).materialize(4);
    try {
      const seedState = await seeded.readStateDict();
      const params = new Set(seeded.namedParameters().map(([n]) => n));
      let backboneChanged = 0;
      for (const [k, v] of after) {
        if (!params.has(k)) continue;
        if (k.startsWith('classifier.')) expect(equalData(v, (k.startsWith('classifier.1.') ? seedState : shipped).get(k)!), k).to.equal(true);
        else if (!equalData(v, shipped.get(k)!)) backboneChanged++;
      }
      expect(backboneChanged).to.be.greaterThan(20);
    } finally {
      seeded.dispose();
    }
  });

  it('a torchvision DeepLabv3 export: the model is the file\'s configuration; classifier.4 and aux_classifier.4 re-initialised for the class count', async () => {
    const out = join(dir, 'tv');
    const r = await atrous('train', '--init', SMALL_TV, '--dataset', `voc:${join(dir, 'bin')}`, '--out', out, '--steps', '1', '--batch', '2', '--crop', '33');
    expect(r.code, r.err).to.equal(0);
    const info = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunInfo;
    expect(info.options.config.name).to.equal('fixture-small');
    expect(info.options.config.aux).to.equal(true);
    const rep = info.init!.report;
    expect(rep.kind).to.equal('torchvision-deeplabv3');
    expect(rep.reinitialised).to.deep.equal({ count: 4, patterns: ['classifier.4.*', 'aux_classifier.4.*'], fromClasses: 4, toClasses: 2 });
    const file = readCheckpoint(readFileSync(SMALL_TV)).state;
    expect(rep.loaded.count).to.equal(file.size - 4);
    expect(rep.loaded.patterns).to.include('backbone.*');
  });

  it('a ResNet classification state dict: loaded as backbone.*, fc.* ignored, the head from the seed; without --config it asks for one', async () => {
    const backbone = randomState({ numClasses: 7 });
    const dict = classificationDict(backbone, 256);
    const file = join(dir, 'resnet-mini.safetensors');
    writeFileSync(file, stateDictToSafetensors(dict, { format: 'torchvision-resnet', model: 'resnet-mini' }));
    const out = join(dir, 'cls');
    const r = await atrous('train', '--init', file, '--config', 'mini', '--out', out, '--steps', '2', '--batch', '2', '--crop', '33', '--freeze-backbone', '--seed', '2');
    expect(r.code, r.err).to.equal(0);
    const info = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as RunInfo;
    const rep = info.init!.report;
    expect(rep.kind).to.equal('resnet-classification');
    expect(rep.loaded.patterns).to.deep.equal(['backbone.*']);
    expect(rep.loaded.count).to.equal(dict.size - 2);
    expect(rep.ignored).to.deep.equal({ count: 2, patterns: ['fc.*'] });
    expect(rep.initialised.patterns).to.deep.equal(['classifier.*']);
    expect(r.out).to.include('2 ignored (fc.*)');
    // Frozen backbone: bit-identical to the file after training.
    const after = finalState(RunDir.open(out));
    for (const [k, v] of dict) if (!k.startsWith('fc.')) expect(equalData(after.get(`backbone.${k}`)!, v), k).to.equal(true);
    // No configuration in the file: --config is needed, and nothing is written without it.
    const none = await atrous('train', '--init', file, '--out', join(dir, 'cls-noconfig'), '--steps', '1');
    expect(none.code).to.equal(1);
    expect(none.err).to.include(`${file} holds a backbone and no model configuration`);
    expect(existsSync(join(dir, 'cls-noconfig'))).to.equal(false);
  });

  it('a segmentation state dict without a configuration (a torchvision FCN export): its backbone loads, its heads are ignored', () => {
    const state = randomState({ numClasses: 7, aux: true });
    // FCNHead as the classifier: names that are no atrous head.
    const fcn = new Map([...state].filter(([k]) => k.startsWith('backbone.') || k.startsWith('aux_classifier.')));
    fcn.set('classifier.0.weight', { shape: [64, 256, 3, 3], data: new Float32Array(64 * 256 * 9) });
    fcn.set('classifier.4.weight', { shape: [21, 64, 1, 1], data: new Float32Array(21 * 64) });
    const ck = readCheckpoint(stateDictToSafetensors(fcn, { format: 'torchvision-fcn', model: 'fcn-mini' }), 'fcn.safetensors');
    const plan = planInit(ck, new DeepLabV3(modelConfig('mini', { numClasses: 3 })), 'fcn.safetensors');
    expect(plan.report.kind).to.equal('torchvision-fcn');
    expect(plan.report.loaded.patterns).to.deep.equal(['backbone.*']);
    expect(plan.report.initialised.patterns).to.deep.equal(['classifier.*']);
    expect(plan.report.ignored.patterns).to.deep.equal(['aux_classifier.*', 'classifier.*']);
    expect([...plan.tensors.keys()].every((k) => k.startsWith('backbone.'))).to.equal(true);
    // Another key is an error naming it.
    fcn.set('decoder.weight', { shape: [1], data: new Float32Array(1) });
    const bad = readCheckpoint(stateDictToSafetensors(fcn, {}), 'fcn2.safetensors');
    expect(() => planInit(bad, new DeepLabV3(modelConfig('mini', { numClasses: 3 })), 'fcn2.safetensors'))
      .to.throw("fcn2.safetensors: does not fit configuration 'mini' (read as a torchvision FCN export): the file has 'decoder.weight' [1], which is none of backbone.*, classifier.* and aux_classifier.*");
  });

  it('freezeBatchNorm: every batch norm\'s running statistics, weight and bias stay the file\'s; convolutions train', async () => {
    const run = newRun(join(dir, 'bn'), tiny({ init: SHIPPED, freezeBatchNorm: true }));
    await train(run);
    const after = finalState(run);
    let bn = 0;
    let convChanged = 0;
    for (const [k, v] of after) {
      const isBn = /\.(running_mean|running_var|num_batches_tracked)$/.test(k) || (/\.(weight|bias)$/.test(k) && v.shape.length === 1 && after.has(k.replace(/\.(weight|bias)$/, '.running_mean')));
      if (isBn) {
        bn++;
        expect(equalData(v, shipped.get(k)!), k).to.equal(true);
      } else if (v.shape.length === 4 && !equalData(v, shipped.get(k)!)) convChanged++;
    }
    expect(bn).to.be.greaterThan(100);
    expect(convChanged).to.be.greaterThan(10);
  });

  it('frozen parameters get no gradient; per-stage settings override the run\'s', async () => {
    const m = new DeepLabV3(modelConfig('mini', { numClasses: 3 })).materialize(1);
    try {
      m.setFrozen({ backbone: true });
      m.train();
      tidy(() => {
        const x = tensor(randn(2 * 3 * 33 * 33, 3), [2, 3, 33, 33]);
        const y = tensor(new Int32Array(2 * 33 * 33).fill(1), [2, 33, 33], 'i32');
        backward(crossEntropy(m.forward(x), y));
      });
      for (const [n, p] of m.namedParameters()) {
        expect(p.grad === null, n).to.equal(n.startsWith('backbone.'));
        p.grad?.dispose();
        p.grad = null;
      }
      expect(m.trainableParameters().length).to.equal(m.namedParameters().filter(([n]) => !n.startsWith('backbone.')).length);
      m.setFrozen({});
      expect(m.trainableParameters().length).to.equal(m.parameters().length);
    } finally {
      m.dispose();
    }
    const o = tiny({ freezeBackbone: true, headLrMult: 10, stages: [{ steps: 1, lr: 0.1 }, { steps: 1, lr: 0.01, freezeBackbone: false, freezeBatchNorm: true, headLrMult: 1 }], steps: 2 });
    const st = runStages(o);
    expect(st.map((s) => [s.freezeBackbone, s.freezeBatchNorm, s.headLrMult])).to.deep.equal([[true, false, 10], [false, true, 1]]);
    // The config file's keys, checked and named.
    const numClasses = () => 7;
    const f = (json: object) => resolveTrainOptions({ config: { name: 'ft.json', json } }, numClasses);
    expect(f({ freezeBackbone: true, headLrMult: 10, stages: [{ steps: 2, lr: 0.1, freezeBackbone: false }] })).to.deep.include({ freezeBackbone: true, headLrMult: 10 });
    expect(() => f({ freezeBackbone: 'yes' })).to.throw("ft.json: 'freezeBackbone' must be true or false");
    expect(() => f({ stages: [{ steps: 2, lr: 0.1, headLrMult: -1 }] })).to.throw('stages[0].headLrMult must be a number >= 0');
    expect(() => f({ headLrMult: -2 })).to.throw("'headLrMult' must be a number >= 0");
  });

  it('SGD param groups: lrMult 1 updates bit for bit as without groups; lrMult m as lr × m', async () => {
    const init = randn(37, 8);
    const grad = randn(37, 9);
    const run = async (make: (ps: ReturnType<typeof parameter>[]) => SGD[]) => {
      const ps = [parameter(init, [37]), parameter(init, [37])];
      const opts = make(ps);
      for (let s = 0; s < 3; s++) {
        for (const p of ps) p.grad = tensor(grad, [37]);
        for (const o of opts) o.step();
        for (const o of opts) o.zeroGrad();
      }
      const out = [await ps[0].float32(), await ps[1].float32()];
      for (const o of opts) o.dispose();
      for (const p of ps) p.dispose();
      return out;
    };
    const cfg = { lr: 0.1, momentum: 0.9, weightDecay: 1e-2 };
    const grouped = await run((ps) => [new SGD([{ params: [ps[0]] }, { params: [ps[1]], lrMult: 0.5 }], cfg)]);
    const plain = await run((ps) => [new SGD([ps[0]], cfg), new SGD([ps[1]], { ...cfg, lr: 0.05 })]);
    expect([...grouped[0]]).to.deep.equal([...plain[0]]);
    expect([...grouped[1]]).to.deep.equal([...plain[1]]);
    const zero = await run((ps) => [new SGD([{ params: ps, lrMult: 0 }], cfg)]);
    expect([...zero[0]]).to.deep.equal([...init]);
  });

  it('stages: a stage with the backbone frozen and the head at lr × 0 changes no parameter; the next stage, with neither, trains the backbone', async () => {
    const run = newRun(join(dir, 'stages'), tiny({
      init: SHIPPED, checkpointEvery: 1,
      stages: [{ steps: 1, lr: 0.05, freezeBackbone: true, headLrMult: 0 }, { steps: 1, lr: 0.05 }],
    }));
    await train(run);
    const params = new Set(new DeepLabV3(modelConfig('mini', { numClasses: 7 })).namedParameterShapes().map(([n]) => n));
    const at = (step: number) => readCheckpoint(readFileSync(join(run.path, 'checkpoints', `step-000000${step}`, 'model.safetensors'))).state;
    const s1 = at(1);
    for (const k of params) expect(equalData(s1.get(k)!, shipped.get(k)!), `step 1: ${k}`).to.equal(true);
    const s2 = at(2);
    expect([...params].filter((k) => k.startsWith('backbone.') && !equalData(s2.get(k)!, shipped.get(k)!)).length).to.be.greaterThan(20);
    expect([...params].filter((k) => k.startsWith('classifier.') && !equalData(s2.get(k)!, shipped.get(k)!)).length).to.be.greaterThan(5);
  });

  it('resuming a run started from a file does not read the file again', async () => {
    const copy = join(dir, 'copy.safetensors');
    copyFileSync(SHIPPED, copy);
    const run = newRun(join(dir, 'resume'), tiny({ init: copy, steps: 3 }));
    let n = 0;
    const first = await train(run, { shouldStop: () => ++n === 1 });
    expect(first.step).to.equal(1);
    unlinkSync(copy);
    const second = await train(RunDir.open(run.path), {}, { resume: true });
    expect(second.step).to.equal(3);
  });

  it('bad init files and --init with --resume: errors naming the file and the first tensor that does not fit, no run directory', async () => {
    const cases: [string, string[], RegExp][] = [];
    // Not a safetensors file.
    cases.push(['notckpt', ['--init', join(root, 'package.json')], /package\.json: header length .* not a safetensors file/]);
    // A safetensors file that holds no model.
    const relu = join(root, 'test', 'fixtures', 'relu__basic.safetensors');
    cases.push(['nomodel', ['--init', relu], /relu__basic\.safetensors: not a weights file to start from: .*its first tensor is '/]);
    // ResNet-18 (basic blocks) for a configuration of Bottleneck units.
    const r18 = join(dir, 'resnet18.safetensors');
    writeFileSync(r18, stateDictToSafetensors(basicBlockDict(64), { format: 'torchvision-resnet' }));
    cases.push(['r18', ['--init', r18, '--config', 'paper-r50-os16'],
      /resnet18\.safetensors: does not fit configuration 'paper-r50-os16' \(read as a ResNet classification state dict\): 'layer1\.0\.conv1\.weight' is \[64, 64, 3, 3\] in the file, 'backbone\.layer1\.0\.conv1\.weight' is \[64, 64, 1, 1\] in the model/]);
    // An atrous checkpoint of another backbone depth (layer3 with 2 units) and of another width.
    const deeper = join(dir, 'deeper.safetensors');
    writeFileSync(deeper, stateDictToSafetensors(randomState({ numClasses: 7, blocks: [1, 1, 2, 3] }), { format: 'atrous-deeplabv3', config: JSON.stringify(modelConfig('mini', { numClasses: 7, blocks: [1, 1, 2, 3] })) }));
    cases.push(['deeper', ['--init', deeper, '--config', 'mini'], /deeper\.safetensors: does not fit configuration 'mini' \(read as an atrous checkpoint\): the file has 'backbone\.layer3\.1\.conv1\.weight' \[32, 128, 1, 1\], which the model has not/]);
    const wider = join(dir, 'wider.safetensors');
    writeFileSync(wider, stateDictToSafetensors(randomState({ numClasses: 7, widthMultiplier: 0.25 }), { format: 'atrous-deeplabv3', config: JSON.stringify(modelConfig('mini', { numClasses: 7, widthMultiplier: 0.25 })) }));
    cases.push(['wider', ['--init', wider, '--config', 'mini'], /wider\.safetensors: does not fit configuration 'mini' \(read as an atrous checkpoint\): 'backbone\.conv1\.weight' is \[16, 3, 7, 7\] in the file, \[8, 3, 7, 7\] in the model/]);
    cases.push(['missing', ['--init', join(dir, 'nowhere.safetensors')], /nowhere\.safetensors: no such file/]);
    for (const [name, args, want] of cases) {
      const out = join(dir, `bad-${name}`);
      const r = await atrous('train', ...args, '--out', out, '--steps', '1');
      expect(r.code, `${name}: ${r.out}`).to.equal(1);
      expect(r.err, `${name}: ${r.err}`).to.match(want);
      expect(existsSync(out), `${name}: run directory written`).to.equal(false);
    }
    const both = await atrous('train', '--init', SHIPPED, '--resume', join(dir, 'same'));
    expect(both.code).to.equal(1);
    expect(both.err).to.include('--init starts a new run from the weights of a file, --resume continues a run');
  });
});
