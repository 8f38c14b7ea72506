// DeepLabv3: structure and parameter counts against torchvision (no GPU), output stride as a
// run-time choice, parity with torchvision on the committed small-model fixture (eval logits at
// output stride 8 and 16, and two SGD steps), module behaviour (train/eval, frozen BN, batch 1,
// memory). ATROUS_SLOW=1 adds the full deeplabv3_resnet50 parity check (needs /usr/bin/python3
// with torch) and a training step of every named configuration.
import { expect } from 'chai';
import { readFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  DeepLabV3, createDeepLabV3, modelConfig, CONFIG_NAMES, planStages, Dropout, BatchNorm2d, ASPPPooling,
  modelFromCheckpoint, readCheckpoint, tensor, tidy, noGrad, backward, reshape, cat, crossEntropy, SGD, engine,
  type Tensor, type DeepLabV3Config,
} from '../src/index.js';
import { parseSafetensors, toFloat32, toInt32, type SafeTensors } from '../src/io/safetensors.js';
import { expectClose, randn, relErr } from './helpers.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const fixtureDir = join(root, 'test', 'fixtures', 'model');
const SLOW = process.env.ATROUS_SLOW === '1';

const f32 = (st: SafeTensors, k: string) => toFloat32(st.tensors.get(k)!, k);
const shapeOf = (st: SafeTensors, k: string) => st.tensors.get(k)!.shape;

/** Normwise check with a floor for f32 rounding of values that barely moved. */
function expectUpdate(name: string, before: Float32Array, actual: Float32Array, expected: Float32Array, tol: number) {
  let err = 0;
  let dn = 0;
  let wn = 0;
  for (let i = 0; i < actual.length; i++) {
    err += (actual[i] - expected[i]) ** 2;
    dn += (expected[i] - before[i]) ** 2;
    wn += expected[i] ** 2;
  }
  // tol relative to the size of the update, plus a few f32 ulps of the weights themselves
  // (an update far below ulp(w) is lost to rounding in PyTorch's float32 SGD as well).
  const bound = tol * Math.sqrt(dn) + 5e-7 * Math.sqrt(wn);
  expect(Math.sqrt(err), `${name}: |w - w_torch| ${Math.sqrt(err).toExponential(2)} vs |update| ${Math.sqrt(dn).toExponential(2)}`).to.be.at.most(bound);
}

describe('nn: DeepLabv3', () => {
  describe('structure (meta models, no GPU memory)', () => {
    it('has torchvision\'s exact parameter counts and state-dict names', () => {
      const r50 = new DeepLabV3('torchvision-deeplabv3-resnet50');
      expect(r50.numParameters()).to.equal(39_638_869);
      expect(new DeepLabV3(modelConfig('torchvision-deeplabv3-resnet50', { aux: true })).numParameters()).to.equal(42_004_074);
      expect(new DeepLabV3('torchvision-deeplabv3-resnet101').numParameters()).to.equal(58_630_997);
      const r101aux = new DeepLabV3(modelConfig('torchvision-deeplabv3-resnet101', { aux: true }));
      expect(r101aux.numParameters()).to.equal(60_996_202);
      expect(r101aux.stateDictShapes().size).to.equal(676);
      const keys = [...r50.stateDictShapes().keys()];
      expect(keys.length).to.equal(362);
      // torchvision's order: a module's parameters, then its buffers, then its children.
      expect(keys.slice(0, 7)).to.deep.equal([
        'backbone.conv1.weight', 'backbone.bn1.weight', 'backbone.bn1.bias', 'backbone.bn1.running_mean',
        'backbone.bn1.running_var', 'backbone.bn1.num_batches_tracked', 'backbone.layer1.0.conv1.weight',
      ]);
      expect(keys.slice(-3)).to.deep.equal(['classifier.2.num_batches_tracked', 'classifier.4.weight', 'classifier.4.bias']);
      const shapes = r50.stateDictShapes();
      expect(shapes.get('backbone.layer4.2.conv2.weight')).to.deep.equal([512, 512, 3, 3]);
      expect(shapes.get('backbone.layer3.0.downsample.0.weight')).to.deep.equal([1024, 512, 1, 1]);
      expect(shapes.get('classifier.0.convs.1.0.weight')).to.deep.equal([256, 2048, 3, 3]);
      expect(shapes.get('classifier.0.convs.4.1.weight')).to.deep.equal([256, 2048, 1, 1]);
      expect(shapes.get('classifier.0.project.0.weight')).to.deep.equal([256, 1280, 1, 1]);
      expect(shapes.get('classifier.1.weight')).to.deep.equal([256, 256, 3, 3]);
      expect(shapes.get('classifier.4.weight')).to.deep.equal([21, 256, 1, 1]);
      expect(shapes.get('backbone.layer1.0.bn1.num_batches_tracked')).to.deep.equal([]);
      expect(r50.materialized).to.equal(false);
    });

    it('reports the paper configurations\' parameter counts', () => {
      // Paper head = torchvision's without the extra 3×3 conv + BN (590,336 parameters).
      expect(new DeepLabV3('paper-r50-os16').numParameters()).to.equal(39_638_869 - (256 * 256 * 9 + 2 * 256));
      expect(new DeepLabV3('paper-r101-os16').numParameters()).to.equal(58_630_997 - (256 * 256 * 9 + 2 * 256));
      // Cascade: ResNet-101 trunk + 3 copies of layer4 without projections + a 1×1 logits conv.
      const unit = 2048 * 512 + 9 * 512 * 512 + 512 * 2048 + 2 * (512 + 512 + 2048);
      const trunk = new DeepLabV3(modelConfig('paper-r101-cascade', { cascade: 0 })).numParameters();
      expect(new DeepLabV3('paper-r101-cascade').numParameters()).to.equal(trunk + 9 * unit);
      // torchvision's resnet101 has 44,549,160 parameters, 2,049,000 of them in fc.
      expect(trunk).to.equal(44_549_160 - 2_049_000 + 2048 * 21 + 21);
      for (const name of CONFIG_NAMES) expect(new DeepLabV3(name).numParameters(), name).to.be.greaterThan(0);
    });

    it('plans strides and atrous rates like torchvision and the paper', () => {
      const r50 = [3, 4, 6, 3];
      // torchvision replace_stride_with_dilation [F, T, T]: the first unit keeps the previous rate.
      expect(planStages(r50, 8, null)).to.deep.equal([
        { stride: 1, dilations: [1, 1, 1] }, { stride: 2, dilations: [1, 1, 1, 1] },
        { stride: 1, dilations: [1, 2, 2, 2, 2, 2] }, { stride: 1, dilations: [2, 4, 4] },
      ]);
      expect(planStages(r50, 16, null).slice(2)).to.deep.equal([{ stride: 2, dilations: [1, 1, 1, 1, 1, 1] }, { stride: 1, dilations: [1, 2, 2] }]);
      expect(planStages(r50, 32, null).map((p) => p.stride)).to.deep.equal([1, 2, 2, 2]);
      expect(planStages(r50, 4, null).slice(1, 2)).to.deep.equal([{ stride: 1, dilations: [1, 2, 2, 2] }]);
      // §3.2.1: OS 16, Multi-Grid (1, 2, 4) → block4 rates 2·(1, 2, 4); doubled at OS 8.
      expect(planStages(r50, 16, [1, 2, 4])[3]).to.deep.equal({ stride: 1, dilations: [2, 4, 8] });
      expect(planStages(r50, 8, [1, 2, 4])[3]).to.deep.equal({ stride: 1, dilations: [4, 8, 16] });
      // Cascade to block7 (§3.2): rates double block after block; OS 256 uses no atrous rate.
      const cascade = [3, 4, 23, 3, 3, 3, 3];
      expect(planStages(cascade, 16, [1, 2, 1]).slice(3).map((p) => p.dilations)).to.deep.equal([[2, 4, 2], [4, 8, 4], [8, 16, 8], [16, 32, 16]]);
      expect(planStages(cascade, 256, [1, 2, 1]).map((p) => p.stride)).to.deep.equal([1, 2, 2, 2, 2, 2, 2]);
      expect(planStages(cascade, 256, null)[6].dilations).to.deep.equal([1, 1, 1]);
    });

    it('traces shapes at every output stride without weights, and counts FLOPs', () => {
      const m = new DeepLabV3('torchvision-deeplabv3-resnet50');
      for (const [os, f] of [[8, 17], [16, 9], [32, 5]]) {
        m.setOutputStride(os);
        const t = m.trace([2, 3, 129, 129]);
        expect(t.features, `OS ${os}`).to.deep.equal([2, 2048, f, f]);
        expect(t.out).to.deep.equal([2, 21, 129, 129]);
      }
      // ASPP rates follow the output stride: (12, 24, 36) at 8 → (6, 12, 18) at 16.
      expect(m.aspp!.rates).to.deep.equal([3, 6, 9]);
      m.setOutputStride(16);
      expect(m.aspp!.rates).to.deep.equal([6, 12, 18]);
      m.setOutputStride(16, [1, 2, 3]);
      expect(m.aspp!.rates).to.deep.equal([1, 2, 3]);
      expect(() => m.setOutputStride(64)).to.throw(/power of 2 in \[4, 32\]/);
      expect(() => m.setOutputStride(12)).to.throw(/output stride/);

      const paper = new DeepLabV3('paper-r50-os16');
      expect(paper.aspp!.rates).to.deep.equal([6, 12, 18]);
      paper.setOutputStride(8);
      expect(paper.aspp!.rates).to.deep.equal([12, 24, 36]);
      paper.setOutputStride(16);
      // docs/software-gpu.md: this network at batch 2, 129×129, forward ≈ 14.7 GFLOP (PyTorch's count).
      expect(paper.trace([2, 3, 129, 129]).flops / 1e9).to.be.closeTo(14.7, 0.05);

      const cascade = new DeepLabV3('paper-r101-cascade');
      expect(cascade.trace([1, 3, 513, 513]).features).to.deep.equal([1, 2048, 33, 33]);
      cascade.setOutputStride(256);
      expect(cascade.trace([1, 3, 513, 513]).features).to.deep.equal([1, 2048, 3, 3]);
      expect(cascade.trace([1, 3, 513, 513]).out).to.deep.equal([1, 21, 513, 513]);
    });

    it('validates configurations and names the bad field', () => {
      expect(() => modelConfig('deeplabv4')).to.throw(/unknown model configuration 'deeplabv4'.*mini/);
      expect(() => modelConfig('paper-r50-os16', { multiGrid: [1, 2] })).to.throw(/'multiGrid' must be one unit rate per unit of layer4 \(3\)/);
      expect(() => modelConfig('mini', { outputStride: 64 })).to.throw(/'outputStride' must be a power of 2 in \[4, 32\], got 64/);
      expect(() => modelConfig('mini', { numClasses: 0 })).to.throw(/'numClasses'/);
      expect(() => modelConfig('mini', { aspp: { rates: [0, 6] } })).to.throw(/'aspp.rates'/);
      expect(() => modelConfig('mini', { aspp: null, headConv: true })).to.throw(/'headConv' must be false without ASPP/);
      expect(modelConfig('paper-r101-cascade', { outputStride: 256 }).outputStride).to.equal(256);
      // Table 5 ablations: the rate-24 branch and image pooling are options.
      const abl = new DeepLabV3(modelConfig('paper-r50-os16', { aspp: { rates: [6, 12, 18, 24], imagePooling: false } }));
      expect(abl.aspp!.convs.items.length).to.equal(5);
      expect(abl.stateDictShapes().get('classifier.0.project.0.weight')).to.deep.equal([256, 5 * 256, 1, 1]);
      expect(abl.aspp!.convs.items.some((b) => b instanceof ASPPPooling)).to.equal(false);
    });
  });

  describe('parity with torchvision (test/fixtures/model, tools/gen_model_fixture.py)', () => {
    let io: SafeTensors;
    let weights: Uint8Array;
    before(() => {
      io = parseSafetensors(readFileSync(join(fixtureDir, 'small_io.safetensors')), 'small_io');
      weights = new Uint8Array(readFileSync(join(fixtureDir, 'small_weights.safetensors')));
    });

    it('eval logits match at output stride 8 and, with the same weights, 16', async () => {
      const { model, config } = modelFromCheckpoint(weights, { source: 'small_weights' });
      expect(config.outputStride).to.equal(8);
      model.eval();
      const x = tensor(f32(io, 'eval.x'), shapeOf(io, 'eval.x'));
      const r = noGrad(() => model.forwardWithAux(x));
      expect(r.out.shape).to.deep.equal(shapeOf(io, 'eval.out'));
      expectClose(await r.out.float32(), f32(io, 'eval.out'), 1e-4, 'logits (OS 8)');
      expectClose(await r.aux!.float32(), f32(io, 'eval.aux'), 1e-4, 'aux logits');
      model.setOutputStride(16);
      const y16 = noGrad(() => model.forward(x));
      expectClose(await y16.float32(), f32(io, 'eval.out_os16'), 1e-4, 'logits (OS 16)');
      // Guard against a fixture where the output stride does not matter.
      expect(relErr(f32(io, 'eval.out_os16'), f32(io, 'eval.out'))).to.be.greaterThan(1e-2);
      for (const t of [x, r.out, r.aux!, y16]) t.dispose();
      model.dispose();
    });

    it('two SGD steps (BN in training mode, aux loss) match PyTorch\'s losses, weights and running stats', async () => {
      const { model } = modelFromCheckpoint(weights);
      const before = readCheckpoint(weights).state;
      const hp = JSON.parse(io.metadata.train) as { lr: number; momentum: number; weightDecay: number; steps: number; auxWeight: number; ignoreIndex: number };
      model.train();
      for (const [, m] of model.namedModules()) if (m instanceof Dropout) m.p = 0;
      const opt = new SGD(model.parameters(), { lr: hp.lr, momentum: hp.momentum, weightDecay: hp.weightDecay });
      const x = tensor(f32(io, 'train.x'), shapeOf(io, 'train.x'));
      const target = tensor(toInt32(io.tensors.get('train.target')!), shapeOf(io, 'train.target'), 'i32');
      // loss = CE(out) + w·CE(aux): backward of [CE(out), CE(aux)] with dy = [1, w].
      const dy = tensor([1, hp.auxWeight], [1, 2, 1, 1]);
      const losses: number[] = [];
      for (let step = 0; step < hp.steps; step++) {
        const both = tidy(() => {
          const r = model.forwardWithAux(x);
          const ce = (t: Tensor) => reshape(crossEntropy(t, target, { ignoreIndex: hp.ignoreIndex }), [1, 1, 1, 1]);
          const l = cat([ce(r.out), ce(r.aux!)], 1);
          backward(l, dy);
          return l;
        });
        opt.step();
        opt.zeroGrad();
        const v = await both.float32();
        both.dispose();
        losses.push(v[0] + hp.auxWeight * v[1]);
      }
      expectClose(losses, f32(io, 'train.loss'), 1e-5, 'losses');
      const after = await model.readStateDict();
      for (const [k, v] of after) {
        const exp = io.tensors.get(`after.${k}`);
        expect(exp, k).to.not.equal(undefined);
        if (k.endsWith('num_batches_tracked')) {
          expect(v.data[0], k).to.equal(toInt32(exp!)[0]);
          expect(v.data[0], k).to.equal(before.get(k)!.data[0] + hp.steps);
        } else if (k.includes('running_')) {
          expectClose(v.data, toFloat32(exp!), 1e-4, k);
        } else {
          expectUpdate(k, before.get(k)!.data as Float32Array, v.data as Float32Array, toFloat32(exp!), 1e-3);
        }
      }
      for (const t of [x, target, dy]) t.dispose();
      opt.dispose();
      model.dispose();
    });
  });

  describe('behaviour', () => {
    const input = (n: number, s: number, seed = 3) => tensor(randn(n * 3 * s * s, seed), [n, 3, s, s]);

    it('mini trains at batch 1 (image-pooling BN on one value: bias, no NaN) and changes output stride at run time', async () => {
      const m = createDeepLabV3('mini', { seed: 5 });
      const pool = m.aspp!.convs.items.at(-1) as ASPPPooling;
      const poolBn = pool.layers[2] as BatchNorm2d;
      const rv0 = await poolBn.tensorOf('running_var').float32();
      const x = input(1, 33);
      const target = tensor(Int32Array.from({ length: 33 * 33 }, (_, i) => (i % 9 === 0 ? 255 : i % 21)), [1, 33, 33], 'i32');
      const opt = new SGD(m.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
      const loss = tidy(() => {
        const l = crossEntropy(m.forward(x), target, { ignoreIndex: 255 });
        backward(l);
        return l;
      });
      const v = await loss.item();
      expect(Number.isFinite(v)).to.equal(true);
      const grads = await Promise.all(m.parameters().map((p) => p.grad!.float32()));
      expect(grads.every((g) => g.every(Number.isFinite))).to.equal(true);
      opt.step();
      opt.zeroGrad();
      expect(Array.from(await poolBn.tensorOf('running_var').float32())).to.deep.equal(Array.from(rv0));
      expect(m.stateDict().get('classifier.0.convs.4.2.num_batches_tracked')).to.equal(1);

      m.eval();
      for (const os of [8, 16, 32]) {
        m.setOutputStride(os);
        const y = noGrad(() => m.forward(x));
        expect(y.shape, `OS ${os}`).to.deep.equal([1, 21, 33, 33]);
        expect((await y.float32()).every(Number.isFinite)).to.equal(true);
        y.dispose();
      }
      expect(m.stateDict().get('classifier.0.convs.4.2.num_batches_tracked')).to.equal(1);
      for (const t of [x, target, loss]) t.dispose();
      opt.dispose();
      m.dispose();
    });

    it('eval is deterministic, training dropout is not; freezeBatchNorm keeps running stats', async () => {
      const m = createDeepLabV3(modelConfig('mini', { aspp: { dropout: 0.5 } }), { seed: 2 });
      const x = input(2, 17);
      const run = async () => {
        const y = noGrad(() => m.forward(x));
        const d = await y.float32();
        y.dispose();
        return d;
      };
      m.eval();
      expect(Array.from(await run())).to.deep.equal(Array.from(await run()));
      m.train();
      const a = await run();
      const b = await run();
      expect(relErr(a, b)).to.be.greaterThan(1e-3);

      const bn = m.backbone.bn1;
      const rm0 = await bn.tensorOf('running_mean').float32();
      m.freezeBatchNorm();
      await run();
      expect(Array.from(await bn.tensorOf('running_mean').float32())).to.deep.equal(Array.from(rm0));
      expect(bn.frozen).to.equal(true);
      const all = m.parameters().length;
      m.freezeBatchNorm(true, { affine: true });
      const bnParams = [...m.namedModules()].filter(([, mm]) => mm instanceof BatchNorm2d).length * 2;
      expect(m.trainableParameters().length).to.equal(all - bnParams);
      m.freezeBatchNorm(false, { affine: false });
      expect(m.trainableParameters().length).to.equal(all);
      await run();
      expect(relErr(await bn.tensorOf('running_mean').float32(), rm0)).to.be.greaterThan(0);
      x.dispose();
      m.dispose();
    });

    it('frees intermediates under noGrad and leaks nothing over training steps', async () => {
      const base = engine().stats().liveBuffers;
      const m = createDeepLabV3('mini', { seed: 1 });
      m.eval();
      const x = input(1, 33);
      const live0 = engine().stats().liveBuffers;
      const y = noGrad(() => m.forward(x));
      expect(engine().stats().liveBuffers).to.equal(live0 + 1);
      y.dispose();
      m.train();
      const opt = new SGD(m.parameters(), { lr: 0.01, momentum: 0.9 });
      const target = tensor(new Int32Array(33 * 33).fill(1), [1, 33, 33], 'i32');
      const counts: number[] = [];
      for (let i = 0; i < 3; i++) {
        tidy(() => backward(crossEntropy(m.forward(x), target)));
        opt.step();
        opt.zeroGrad();
        counts.push(engine().stats().liveBuffers);
      }
      expect(counts[2]).to.equal(counts[1]);
      opt.dispose();
      for (const t of [x, target]) t.dispose();
      m.dispose();
      expect(engine().stats().liveBuffers).to.equal(base);
    });

    it('rejects bad inputs before any GPU work and forward before weights', () => {
      const meta = new DeepLabV3('mini');
      const x = input(1, 9);
      expect(() => meta.forward(x)).to.throw(/has no weights yet: call model.materialize\(seed\) or loadStateDict\(\)/);
      const m = createDeepLabV3('mini');
      const gray = tensor(new Float32Array(2 * 9 * 9), [2, 1, 9, 9]);
      expect(() => m.forward(gray)).to.throw(/DeepLabV3.forward: argument 'x' must be RGB images \[n, 3, h, w\], got shape \[2, 1, 9, 9\]/);
      const flat = tensor(new Float32Array(27), [3, 9]);
      expect(() => m.forward(flat)).to.throw(/argument 'x' must have rank 4/);
      for (const t of [x, gray, flat]) t.dispose();
      m.dispose();
    });

    it('the paper\'s ResNet-50 at output stride 16 runs forward and backward', async () => {
      const m = createDeepLabV3('paper-r50-os16', { seed: 4 });
      const x = input(2, 33);
      const target = tensor(Int32Array.from({ length: 2 * 33 * 33 }, (_, i) => i % 21), [2, 33, 33], 'i32');
      const loss = tidy(() => {
        const l = crossEntropy(m.forward(x), target);
        backward(l);
        return l;
      });
      expect(Number.isFinite(await loss.item())).to.equal(true);
      const g = await m.backbone.conv1.tensorOf('weight').grad!.float32();
      expect(g.every(Number.isFinite) && g.some((v) => v !== 0)).to.equal(true);
      for (const t of [x, target, loss]) t.dispose();
      m.dispose();
    });
  });

  describe('slow checks (ATROUS_SLOW=1)', function () {
    this.timeout(1_800_000);

    it('matches torchvision deeplabv3_resnet50 (random weights, 1×3×129×129) at 1e-4', async function () {
      if (!SLOW) this.skip();
      const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch, torchvision'], { encoding: 'utf8' });
      if (!existsSync('/usr/bin/python3') || probe.status !== 0) {
        console.log('      (skipped: /usr/bin/python3 with torch and torchvision is needed: apt-get install python3-torch python3-torchvision)');
        this.skip();
      }
      const dir = mkdtempSync(join(tmpdir(), 'atrous-full-'));
      try {
        const gen = spawnSync('/usr/bin/python3', [join(root, 'tools', 'gen_model_fixture.py'), '--full', dir], { encoding: 'utf8' });
        expect(gen.status, gen.stderr).to.equal(0);
        const { model, report } = modelFromCheckpoint(new Uint8Array(readFileSync(join(dir, 'full_weights.safetensors'))), { source: 'full_weights' });
        expect(report.loaded.length).to.equal(362);
        expect(model.numParameters()).to.equal(39_638_869);
        const fio = parseSafetensors(readFileSync(join(dir, 'full_io.safetensors')));
        model.eval();
        const x = tensor(f32(fio, 'eval.x'), shapeOf(fio, 'eval.x'));
        const y = noGrad(() => model.forward(x));
        expectClose(await y.float32(), f32(fio, 'eval.out'), 1e-4, 'deeplabv3_resnet50 logits');
        for (const t of [x, y]) t.dispose();
        model.dispose();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });

    for (const name of CONFIG_NAMES) {
      it(`${name}: builds, runs forward and backward`, async function () {
        if (!SLOW) this.skip();
        const m = createDeepLabV3(name, { seed: 1 });
        const cfg: DeepLabV3Config = m.config;
        const x = tensor(randn(2 * 3 * 33 * 33, 9), [2, 3, 33, 33]);
        const target = tensor(Int32Array.from({ length: 2 * 33 * 33 }, (_, i) => i % cfg.numClasses), [2, 33, 33], 'i32');
        const loss = tidy(() => {
          const l = crossEntropy(m.forward(x), target);
          backward(l);
          return l;
        });
        const v = await loss.item();
        console.log(`      ${name}: ${m.numParameters().toLocaleString('en-US')} parameters, loss ${v.toFixed(3)}`);
        expect(Number.isFinite(v)).to.equal(true);
        expect((await m.backbone.conv1.tensorOf('weight').grad!.float32()).every(Number.isFinite)).to.equal(true);
        for (const t of [x, target, loss]) t.dispose();
        m.dispose();
      });
    }
  });
});
