import { expect } from 'chai';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelFromCheckpoint, readCheckpoint } from '../src/index.js';
import { ConfusionMatrix, formatMetrics, RunDir, train, TrainingError } from '../src/train/index.js';
import { runCli as atrous, writeBinaryMaskVoc, tinyOptions, newRun } from './helpers.js';


describe('train: metrics', () => {
  it('confusion matrix: per-class IoU, mIoU over present classes, pixel accuracy, 255 ignored', () => {
    const cm = new ConfusionMatrix(4);
    // labels 0 0 1 1 2 255 ; predictions 0 1 1 1 0 3 (class 3 only under an ignored pixel)
    cm.add([0, 1, 1, 1, 0, 3], [0, 0, 1, 1, 2, 255]);
    const m = cm.metrics();
    // class 0: TP 1, FN 1 (->1), FP 1 (2->0): 1/3; class 1: TP 2, FP 1: 2/3; class 2: TP 0: 0; class 3 absent
    expect(m.iou[0]).to.be.closeTo(1 / 3, 1e-12);
    expect(m.iou[1]).to.be.closeTo(2 / 3, 1e-12);
    expect(m.iou[2]).to.equal(0);
    expect(m.iou[3]).to.equal(null);
    expect(m.miou).to.be.closeTo(1 / 3, 1e-12);
    expect(m.pixelAccuracy).to.be.closeTo(3 / 5, 1e-12);
    expect(m.pixels).to.equal(5);
    expect(formatMetrics(m, ['bg', 'a', 'b', 'c'])).to.match(/\nmIoU: 0\.3333$/);
    expect(() => cm.add([0], [4])).to.throw(/label 4 at pixel 0 is outside \[0, 4\)/);
    expect(() => cm.add([0, 1], [0])).to.throw(/2 predictions for 1 labels/);
  });

  it('classes without ground truth: marked, n/a and left out of the mean unless predicted (then IoU 0, counted)', () => {
    const cm = new ConfusionMatrix(3);
    // labels only 0 and 1; class 2 never labelled and never predicted
    cm.add([0, 0, 1, 0], [0, 0, 1, 1]);
    const m = cm.metrics();
    expect(m.iou[2]).to.equal(null);
    expect(m.noGroundTruth).to.deep.equal([2]);
    expect(m.miouClasses).to.equal(2);
    expect(m.miou).to.be.closeTo((2 / 3 + 1 / 2) / 2, 1e-12);
    const text = formatMetrics(m, ['bg', 'a', 'obj']);
    expect(text).to.match(/\nobj +n\/a +0  no ground truth\n/);
    expect(text).to.match(/\nmIoU over 2 of 3 classes \(left out, no ground truth and never predicted: 2 'obj'\)\nmIoU: 0\.5833$/);
    // class 2 predicted once without ground truth: IoU 0, in the mean
    cm.add([2], [0]);
    const p = cm.metrics();
    expect(p.iou[2]).to.equal(0);
    expect(p.miouClasses).to.equal(3);
    expect(p.predicted).to.deep.equal([3, 1, 1]);
    const t2 = formatMetrics(p, ['bg', 'a', 'obj']);
    expect(t2).to.match(/\nobj +0\.0000 +0  no ground truth, 1 pixels predicted as it\n/);
    expect(t2).to.include("mIoU over 3 of 3 classes (IoU 0, no ground truth but predicted: 2 'obj')");
    // every class labelled: the table is unchanged, one line says so
    const all = new ConfusionMatrix(2);
    all.add([0, 1], [0, 1]);
    expect(formatMetrics(all.metrics(), ['bg', 'a'])).to.equal(
      'class      IoU      pixels\nbg      1.0000           1\na       1.0000           1\n\npixel accuracy: 1.0000 (2 labelled pixels)\nmIoU over 2 of 2 classes\nmIoU: 1.0000');
  });
});

describe('train: runs, checkpoints, resume, eval', function () {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'atrous-train-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  let full: number[];

  it('trains: finite losses that decrease on a 2-image overfit; checkpoints, latest.json, metrics.jsonl', async () => {
    const run = newRun(join(root, 'full'), tinyOptions());
    const res = await train(run);
    full = res.losses;
    expect(res.step).to.equal(8);
    expect(res.stopped).to.equal(false);
    expect(full).to.have.length(8);
    for (const v of full) expect(Number.isFinite(v)).to.equal(true);
    const head = (full[0] + full[1]) / 2;
    const tail = (full[6] + full[7]) / 2;
    expect(tail, `losses ${full.map((v) => v.toFixed(3)).join(' ')}`).to.be.below(head * 0.8);
    expect(run.latest()).to.deep.equal({ step: 8, dir: 'checkpoints/step-0000008' });
    for (const s of ['0000004', '0000008']) {
      for (const f of ['model.safetensors', 'optimizer.safetensors', 'state.json']) expect(existsSync(join(run.path, 'checkpoints', `step-${s}`, f)), f).to.equal(true);
    }
    const metrics = run.readMetrics();
    expect(metrics.map((r) => r.step)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(metrics.map((r) => r.loss)).to.deep.equal(full);
    expect(metrics[0].lr).to.equal(0.05);
    // The weights load into a fresh model; the optimizer file holds a momentum buffer per parameter.
    const file = run.latestFile('model.safetensors');
    const { model, config } = modelFromCheckpoint(readFileSync(file), { source: file });
    expect(config.numClasses).to.equal(7);
    const names = model.namedParameters().map(([n]) => n);
    model.dispose();
    const opt = readCheckpoint(readFileSync(run.latestFile('optimizer.safetensors')));
    expect([...opt.state.keys()].sort()).to.deep.equal([...names].sort());
    const state = JSON.parse(readFileSync(run.latestFile('state.json'), 'utf8'));
    expect(state.step).to.equal(8);
    expect(state.seed).to.equal(3);
  });

  it('stops (as on Ctrl-C) with a checkpoint, and a resumed run replays the same losses', async () => {
    const run = newRun(join(root, 'resumed'), tinyOptions());
    let n = 0;
    const first = await train(run, { shouldStop: () => ++n === 3 });
    expect(first.stopped).to.equal(true);
    expect(first.step).to.equal(3);
    expect(run.latest()?.step).to.equal(3);
    expect(first.losses).to.deep.equal(full.slice(0, 3));
    const second = await train(RunDir.open(run.path), {}, { resume: true });
    expect(second.step).to.equal(8);
    expect(second.losses).to.deep.equal(full.slice(3));
    expect(run.readMetrics().map((r) => r.step)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('a NaN/Inf loss stops training naming the step and keeps the last good checkpoint', async () => {
    const run = newRun(join(root, 'diverged'), tinyOptions({ lr: 1e30, checkpointEvery: 1, steps: 6 }));
    let err: Error | null = null;
    try {
      await train(run);
    } catch (e) {
      err = e as Error;
    }
    expect(err).to.be.instanceOf(TrainingError);
    const m = /the loss became (NaN|Infinity|-Infinity) at step (\d+)/.exec(err!.message);
    expect(m, err!.message).to.not.equal(null);
    const bad = Number(m![2]);
    expect(bad).to.be.greaterThan(1);
    expect(err!.message).to.contain(`last good checkpoint (step ${bad - 1})`);
    expect(run.latest()?.step).to.equal(bad - 1);
    expect(existsSync(join(run.path, 'checkpoints', `step-${String(bad).padStart(7, '0')}`))).to.equal(false);
  });

  it('atrous eval --run prints the table and the closing mIoU line; --json is machine-readable', async () => {
    const dir = join(root, 'full');
    const r = await atrous('eval', '--run', dir, '--count', '3');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/background\s+\d\.\d{4}/);
    expect(r.out).to.match(/\nmIoU: [01]\.\d{4}$/);
    const j = await atrous('eval', '--run', dir, '--count', '3', '--json', '--output-stride', '8');
    expect(j.code, j.err).to.equal(0);
    const o = JSON.parse(j.out);
    expect(o.images).to.equal(3);
    expect(o.outputStride).to.equal(8);
    expect(o.iou).to.have.length(7);
    expect(o.miou).to.be.within(0, 1);
  });

  it('atrous train runs from the command line and --resume extends it', async () => {
    const dir = join(root, 'cli');
    const r = await atrous('train', '--out', dir, '--steps', '2', '--batch', '1', '--crop', '33', '--checkpoint-every', '5');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/step 2\/2 {2}loss \d+\.\d{4} {2}lr /);
    expect(r.out).to.contain('done at step 2');
    const again = await atrous('train', '--resume', dir, '--steps', '3');
    expect(again.code, again.err).to.equal(0);
    expect(again.out).to.contain('resuming');
    expect(again.out).to.contain('done at step 3');
  });

  it('binary masks saved as 0/255: train warns about class 1 and eval leaves it out; with labelMap {"255": 1} both classes train and evaluate', async function () {
    this.timeout(600000);
    const args = ['--steps', '40', '--batch', '4', '--crop', '33', '--output-stride', '8', '--scale-min', '1', '--scale-max', '1',
      '--lr', '0.05', '--log-every', '10', '--checkpoint-every', '100'];
    // Without the map: 255 is ignore, so class 1 has no pixel; the loss has only background to learn.
    const plainData = join(root, 'bin');
    writeBinaryMaskVoc(plainData);
    const t = await atrous('train', '--dataset', `voc:${plainData}`, '--out', join(root, 'bin-run'), ...args);
    expect(t.code, t.err).to.equal(0);
    expect(t.out).to.include("warning: class 1 'object' has no labelled pixel in the train split (4 images)");
    expect(t.out).to.include('255 (ignore) covers 15.4% of the pixels');
    const e = await atrous('eval', '--run', join(root, 'bin-run'), '--json');
    expect(e.code, e.err).to.equal(0);
    const o = JSON.parse(e.out);
    expect(o.support).to.deep.equal([3684, 0]);
    expect(o.noGroundTruth).to.deep.equal([1]);
    expect(o.iou[1]).to.equal(null);
    expect(o.miouClasses).to.equal(1);
    const et = await atrous('eval', '--run', join(root, 'bin-run'));
    expect(et.out).to.match(/\nobject +n\/a +0  no ground truth\n/);
    expect(et.out).to.include("mIoU over 1 of 2 classes (left out, no ground truth and never predicted: 1 'object')");

    // With the map: both classes have pixels, no warning, eval is over both and the object is found.
    const mappedData = join(root, 'binmap');
    writeBinaryMaskVoc(mappedData, { labelMap: { 255: 1 } });
    const tm = await atrous('train', '--dataset', `voc:${mappedData}`, '--out', join(root, 'binmap-run'), ...args);
    expect(tm.code, tm.err).to.equal(0);
    expect(tm.out).to.include('label map');
    expect(tm.out).to.match(/\n1 object +672 +15\.4% +4\n/);
    expect(tm.out).to.not.include('warning');
    const em = await atrous('eval', '--run', join(root, 'binmap-run'), '--json');
    expect(em.code, em.err).to.equal(0);
    const om = JSON.parse(em.out);
    expect(om.support).to.deep.equal([3684, 672]);
    expect(om.noGroundTruth).to.deep.equal([]);
    expect(om.miouClasses).to.equal(2);
    expect(om.iou[1], `object IoU ${om.iou[1]}`).to.be.above(0.5);
    const emt = await atrous('eval', '--run', join(root, 'binmap-run'));
    expect(emt.out).to.include('mIoU over 2 of 2 classes\nmIoU: ');
    // The run records the map and the train split's counts; eval --run refuses a dataset whose map changed since.
    const rec = JSON.parse(readFileSync(join(root, 'binmap-run', 'labels.json'), 'utf8'));
    expect(rec.labelMap).to.deep.equal({ 255: 1 });
    expect(rec.train.pixels).to.deep.equal([3684, 672]);
    expect(JSON.parse(readFileSync(join(root, 'bin-run', 'labels.json'), 'utf8')).labelMap).to.equal(null);
    writeFileSync(join(mappedData, 'atrous-dataset.json'), JSON.stringify({ numClasses: 2, classNames: ['background', 'object'] }));
    const changed = await atrous('eval', '--run', join(root, 'binmap-run'));
    expect(changed.code).to.equal(1);
    expect(changed.err).to.include('was trained with the label map {"255":1}');
    expect(changed.err).to.include('now has none');
  });

  it('bad inputs give clear errors before anything is written', async () => {
    const unknown = await atrous('train', '--config', 'nope', '--out', join(root, 'x1'));
    expect(unknown.code).to.equal(1);
    expect(unknown.err).to.contain("unknown model configuration 'nope'");
    expect(existsSync(join(root, 'x1'))).to.equal(false);
    const notRun = join(root, 'not-a-run');
    mkdirSync(notRun);
    const e1 = await atrous('eval', '--run', notRun);
    expect(e1.code).to.equal(1);
    expect(e1.err).to.contain(`${notRun} is not an atrous run directory`);
    const e2 = await atrous('train', '--resume', notRun);
    expect(e2.err).to.contain('is not an atrous run directory');
    const e3 = await atrous('eval', '--run', join(root, 'missing'));
    expect(e3.err).to.contain('does not exist');
    const taken = await atrous('train', '--out', join(root, 'full'), '--steps', '1');
    expect(taken.err).to.contain('already holds a run');
    const mixed = await atrous('train', '--resume', join(root, 'full'), '--lr', '0.1');
    expect(mixed.err).to.contain('drop --lr');
    const both = await atrous('eval', '--run', join(root, 'full'), '--weights', 'x.safetensors');
    expect(both.err).to.contain('exactly one of --run DIR or --weights FILE');
    const wrong = await atrous('eval', '--run', join(root, 'full'), '--dataset', 'fashion-scenes');
    expect(wrong.code).to.equal(1);
    const badSteps = await atrous('train', '--out', join(root, 'x2'), '--steps', '0');
    expect(badSteps.err).to.contain('--steps must be an integer >= 1');
    const badData = await atrous('train', '--out', join(root, 'x3'), '--dataset', 'voc:' + join(root, 'nowhere'));
    expect(badData.code).to.equal(1);
    expect(existsSync(join(root, 'x3'))).to.equal(false);
  });
});
