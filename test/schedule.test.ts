// The training schedule features of issue 4: two-stage §4.1 schedules, gradient accumulation,
// training config files, and evaluation with scales / flip / padding, overlays and the HTML report.
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  modelConfig, readCheckpoint, DeepLabV3, SGD, DataLoader, ShapesDataset, empty, keep, recordTrainStep, segment, normalize, IMAGENET, type Batch,
} from '../src/index.js';
import { RunDir, train, stageAt, formatProgress, runStages, checkTrainOptions, RUN_FORMAT, TRAIN_DEFAULTS, renderReport, type RunInfo, type TrainOptions } from '../src/train/index.js';
import { parseTrainArgs } from '../src/cli/train.js';
import { splitConfigFile } from '../src/train/options.js';
import { runCli as atrous } from './helpers.js';


function tiny(o: Partial<TrainOptions> = {}): TrainOptions {
  return {
    ...TRAIN_DEFAULTS, config: modelConfig('mini', { numClasses: 7 }), dataset: 'shapes', dataLength: 4,
    steps: 6, batch: 2, crop: 33, lr: 0.05, scaleMin: 1, scaleMax: 1, seed: 5, checkpointEvery: 100, logEvery: 2, ...o,
  };
}

const STAGED = { checkpointEvery: 3 };
const TWO_STAGES = [{ steps: 3, lr: 0.05, outputStride: 16 }, { steps: 3, lr: 0.005, outputStride: 8, freezeBatchNorm: true }];

describe('train: two-stage schedule (§4.1)', function () {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'atrous-sched-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('stageAt: each stage has its own poly learning rate from its lr to 0', () => {
    const o = tiny({ stages: TWO_STAGES });
    expect(runStages(o).map((s) => s.outputStride)).to.deep.equal([16, 8]);
    expect(stageAt(o, 0)).to.include({ index: 0, start: 0, lr: 0.05 });
    expect(stageAt(o, 2).lr).to.be.closeTo(0.05 * (1 / 3) ** 0.9, 1e-12);
    expect(stageAt(o, 3)).to.include({ index: 1, start: 3, lr: 0.005 });
    expect(stageAt(o, 5).lr).to.be.closeTo(0.005 * (1 / 3) ** 0.9, 1e-12);
    expect(stageAt(o, 5).stage.freezeBatchNorm).to.equal(true);
    // Without stages: one stage, the plain poly schedule.
    expect(stageAt(tiny(), 3).lr).to.be.closeTo(0.05 * 0.5 ** 0.9, 1e-12);
  });

  it('bad stages are named before training', () => {
    expect(() => checkTrainOptions(tiny({ stages: [] }))).to.throw(/stages must be a non-empty array/);
    expect(() => checkTrainOptions(tiny({ stages: [{ steps: 2, lr: 0.1 }] }))).to.throw(/stages add up to 2 steps but steps is 6/);
    expect(() => checkTrainOptions(tiny({ stages: [{ steps: 6, lr: -1 }] }))).to.throw(/stages\[0\]\.lr must be a number >= 0/);
    expect(() => checkTrainOptions(tiny({ stages: [{ steps: 6, lr: 0.1, outputStride: 12 }] }))).to.throw(/stages\[0\]\.outputStride must be a power of two/);
    expect(() => checkTrainOptions(tiny({ stages: [{ steps: 6, lr: 0.1, freeze: true } as never] }))).to.throw(/stages\[0\]: unknown field 'freeze'/);
    expect(() => checkTrainOptions(tiny({ accum: 0 }))).to.throw(/accum must be an integer >= 1/);
  });

  let full: number[];
  it('runs both stages: stage 2 at output stride 8 with batch norm frozen; logged lr follows the stages', async () => {
    const info: RunInfo = { format: RUN_FORMAT, created: new Date().toISOString(), options: tiny({ stages: TWO_STAGES, ...STAGED }) };
    const run = RunDir.create(join(root, 'two'), info);
    const seen: number[] = [];
    const res = await train(run, { onStage: (i) => seen.push(i) });
    full = res.losses;
    expect(res.step).to.equal(6);
    expect(seen).to.deep.equal([1]);
    for (const v of full) expect(Number.isFinite(v)).to.equal(true);
    const lrs = run.readMetrics().map((m) => m.lr);
    expect(lrs[0]).to.equal(0.05);
    expect(lrs[3]).to.equal(0.005);
    // Frozen batch norm in stage 2 keeps the running statistics of the end of stage 1, while the
    // convolutions go on learning.
    const ck = (step: number) => readCheckpoint(readFileSync(join(run.path, 'checkpoints', `step-${String(step).padStart(7, '0')}`, 'model.safetensors'))).state;
    const s3 = ck(3);
    const s6 = ck(6);
    const rm = [...s3.keys()].filter((k) => k.endsWith('running_mean'));
    expect(rm.length).to.be.greaterThan(5);
    for (const k of rm) expect([...s6.get(k)!.data], k).to.deep.equal([...s3.get(k)!.data]);
    expect([...s6.get('backbone.conv1.weight')!.data]).to.not.deep.equal([...s3.get('backbone.conv1.weight')!.data]);
  });

  it('a run stopped inside stage 2 resumes into stage 2 and replays the same losses', async () => {
    const info: RunInfo = { format: RUN_FORMAT, created: new Date().toISOString(), options: tiny({ stages: TWO_STAGES, ...STAGED }) };
    const run = RunDir.create(join(root, 'two-resumed'), info);
    let n = 0;
    const first = await train(run, { shouldStop: () => ++n === 4 });
    expect(first.step).to.equal(4);
    const second = await train(RunDir.open(run.path), {}, { resume: true });
    expect([...first.losses, ...second.losses]).to.deep.equal(full);
  });
});

describe('train: progress display', () => {
  it('a bar with step, loss, lr, images/s and ETA on a terminal; the same fields as a plain line otherwise', () => {
    const p = { step: 450, steps: 900, loss: 0.12345, lr: 0.05, imagesPerSecond: 21.5, secondsPerStep: 0.744, etaSeconds: 334.8 };
    const tty = formatProgress(p, true);
    const plain = formatProgress(p, false);
    expect(tty).to.match(/^\[#{12}\.{12}\] step 450\/900/);
    expect(plain).to.equal('step 450/900  loss 0.1235  lr 5.00e-2  21.5 img/s  0.74 s/step  ETA 5m35s');
    expect(tty.endsWith(plain)).to.equal(true);
    expect(formatProgress({ ...p, step: 900, etaSeconds: 0 }, true)).to.match(/^\[#{24}\] .*ETA 0s$/);
    // With stages: which stage, and the ETA to its end until the last one.
    expect(formatProgress({ ...p, stage: { index: 1, count: 2 } }, false)).to.equal('step 450/900  stage 1/2  loss 0.1235  lr 5.00e-2  21.5 img/s  0.74 s/step  stage ETA 5m35s');
    expect(formatProgress({ ...p, stage: { index: 2, count: 2 } }, false)).to.match(/stage 2\/2 .* ETA 5m35s$/);
  });
});

describe('train: gradient accumulation', () => {
  it('two batches of 2 accumulated give the update of one batch of 4 (frozen batch norm, no ignored pixels)', async () => {
    const cfg = modelConfig('mini', { numClasses: 7 });
    const ds = new ShapesDataset({ split: 'train', length: 4 });
    const loader = new DataLoader(ds, { batchSize: 4, shuffle: false, augment: false });
    let big: Batch | null = null;
    for await (const b of loader) big = b;
    const hw = big!.h * big!.w;
    const half = (k: number): Batch => ({
      images: big!.images.slice(k * 6 * hw, (k + 1) * 6 * hw), labels: big!.labels.slice(k * 2 * hw, (k + 1) * 2 * hw),
      n: 2, h: big!.h, w: big!.w, ids: big!.ids.slice(2 * k, 2 * k + 2), step: 0,
    });
    const weights = async (batches: Batch | Batch[]) => {
      const m = new DeepLabV3(cfg).materialize(9);
      m.train();
      m.freezeBatchNorm(true);
      const opt = new SGD(m.trainableParameters(), { lr: 0.1, momentum: 0.9, weightDecay: 1e-4 });
      const lossBuf = keep(empty([2]));
      recordTrainStep(m, opt, batches, lossBuf, 0);
      const state = await m.readStateDict();
      lossBuf.dispose();
      opt.dispose();
      m.dispose();
      return state;
    };
    const one = await weights(big!);
    const two = await weights([half(0), half(1)]);
    let worst = 0;
    for (const [k, a] of one) {
      const b = two.get(k)!;
      let num = 0;
      let den = 0;
      for (let i = 0; i < a.data.length; i++) {
        num += (Number(a.data[i]) - Number(b.data[i])) ** 2;
        den += Number(a.data[i]) ** 2;
      }
      worst = Math.max(worst, Math.sqrt(num / Math.max(den, 1e-30)));
    }
    expect(worst).to.be.below(1e-5);
  });

  it('a run with --accum 2 reports the mean loss per step and counts batch × accum images', async () => {
    const root = mkdtempSync(join(tmpdir(), 'atrous-accum-'));
    try {
      const r = await atrous('train', '--out', join(root, 'r'), '--steps', '2', '--batch', '1', '--crop', '33', '--accum', '2', '--log-every', '1');
      expect(r.code, r.err).to.equal(0);
      expect(r.out).to.contain('done at step 2');
      const m = RunDir.open(join(root, 'r')).readMetrics();
      expect(m).to.have.length(2);
      expect(JSON.parse(readFileSync(join(root, 'r', 'run.json'), 'utf8')).options.accum).to.equal(2);
      const bad = await atrous('train', '--out', join(root, 'x'), '--accum', '0');
      expect(bad.err).to.contain('--accum must be an integer >= 1');
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('train: config files', () => {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'atrous-cfg-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));
  const write = (name: string, o: unknown) => {
    const f = join(root, name);
    writeFileSync(f, typeof o === 'string' ? o : JSON.stringify(o));
    return f;
  };

  it('configs/main.json (the main job) is a two-stage training config', () => {
    const p = parseTrainArgs(['--config', 'configs/main.json', '--out', join(root, 'm')]);
    const o = p.options!;
    expect(o.config.name).to.equal('mini');
    expect(o.stages).to.have.length(2);
    expect(o.steps).to.equal(o.stages!.reduce((a, s) => a + s.steps, 0));
    expect(o.stages![1]).to.deep.include({ outputStride: 8, freezeBatchNorm: true });
    expect(o.lr).to.equal(o.stages![0].lr);
  });

  it('flags override the file; a model config object and overrides work; bad files are named', () => {
    const f = write('t.json', { model: { name: 'mini', outputStride: 8 }, batch: 3, crop: 41, lr: 0.2, accum: 2 });
    const o = parseTrainArgs(['--config', f, '--out', join(root, 'a'), '--batch', '5']).options!;
    expect(o.batch).to.equal(5);
    expect(o.crop).to.equal(41);
    expect(o.lr).to.equal(0.2);
    expect(o.accum).to.equal(2);
    expect(o.config.outputStride).to.equal(8);
    expect(() => parseTrainArgs(['--config', write('u.json', { model: 'mini', bogus: 1 }), '--out', join(root, 'b')])).to.throw(/unknown key 'bogus'/);
    expect(() => parseTrainArgs(['--config', write('v.json', '{ not json'), '--out', join(root, 'c')])).to.throw(/v\.json: not a JSON config/);
    // A file's bad value is named as the file's key, with its JSON type: "lr": [0.1] and "steps": "2" are refused.
    expect(() => parseTrainArgs(['--config', write('w.json', { model: 'mini', batch: 'many' }), '--out', join(root, 'd')])).to.throw(/w\.json: 'batch' must be an integer >= 1, got "many"/);
    expect(() => parseTrainArgs(['--config', write('w2.json', { model: 'mini', lr: [0.1] }), '--out', join(root, 'd')])).to.throw(/w2\.json: 'lr' must be a number >= 0, got \[0\.1\]/);
    expect(() => parseTrainArgs(['--config', write('w3.json', { model: 'mini', steps: '2' }), '--out', join(root, 'd')])).to.throw(/w3\.json: 'steps' must be an integer >= 1, got "2"/);
    expect(() => parseTrainArgs(['--config', write('w4.json', { model: 'mini', stages: [{ steps: 2, lr: 0.1 }, { steps: 0, lr: 0.1 }] }), '--out', join(root, 'd')])).to.throw(/w4\.json: stages\[1\]\.steps must be an integer >= 1/);
    expect(() => parseTrainArgs(['--out', join(root, 'd'), '--lr=-1'])).to.throw(/atrous train: --lr must be a number >= 0, got '-1'/);
    const st = write('s.json', { model: 'mini', stages: [{ steps: 2, lr: 0.1 }] });
    expect(() => parseTrainArgs(['--config', st, '--out', join(root, 'e'), '--steps', '9'])).to.throw(/has stages, whose steps set the run's length; drop --steps/);
    expect(() => parseTrainArgs(['--config', write('x.json', { model: 'nope' }), '--out', join(root, 'f')])).to.throw(/unknown model configuration 'nope'/);
    expect(splitConfigFile({ name: 'y.json', json: { ...modelConfig('mini') } }).train).to.equal(null);
    for (const d of ['a', 'b', 'c', 'd', 'e', 'f']) expect(existsSync(join(root, d))).to.equal(false);
  });
});

describe('eval: scales, flip, padding, overlays and the report', function () {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'atrous-evalrep-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('padding to k × output stride + 1 leaves aligned inputs unchanged and crops the rest back', async () => {
    const m = new DeepLabV3(modelConfig('mini', { numClasses: 7 })).materialize(2);
    m.eval();
    try {
      const s = new ShapesDataset({ split: 'val', length: 1, h: 33, w: 49 }).sample(0);
      const x = normalize(s.image, 33 * 49, IMAGENET);
      const a = await segment(m, x, 33, 49, {});
      const b = await segment(m, x, 33, 49, { padMultiple: 16 });
      expect(b.logits).to.deep.equal(a.logits);
      const t = new ShapesDataset({ split: 'val', length: 1, h: 37, w: 41 }).sample(0);
      const c = await segment(m, normalize(t.image, 37 * 41, IMAGENET), 37, 41, { padMultiple: 16, scales: [0.75, 1], flip: true });
      expect(c.labels).to.have.length(37 * 41);
      expect(c.logits).to.have.length(7 * 37 * 41);
      for (const v of c.logits) expect(Number.isFinite(v)).to.equal(true);
    } finally {
      m.dispose();
    }
  });

  it('atrous eval --scales --flip --report writes eval.json, overlays and report.html', async () => {
    const run = join(root, 'r');
    const t = await atrous('train', '--out', run, '--steps', '2', '--batch', '2', '--crop', '33', '--log-every', '1');
    expect(t.code, t.err).to.equal(0);
    const out = join(root, 'rep');
    const r = await atrous('eval', '--run', run, '--count', '2', '--scales', '0.75,1', '--flip', '--report', '--overlays', '2', '--out', out);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain('scales 0.75,1 + flip');
    expect(r.out).to.match(/\nreport: .*report\.html \(2 overlays/);
    const json = JSON.parse(readFileSync(join(out, 'eval.json'), 'utf8'));
    expect(json).to.deep.include({ images: 2, flip: true, scales: [0.75, 1] });
    expect(json.kept).to.equal(undefined);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).to.contain(`mIoU <b>${json.miou.toFixed(4)}</b>`);
    expect(html).to.contain('<polyline'); // the loss curve from the run's metrics.jsonl
    expect(html).to.contain('overlays/val_000001.png');
    const png = readFileSync(join(out, 'overlays', 'val_000000.png'));
    expect(png.subarray(1, 4).toString()).to.equal('PNG');
    expect(png.readUInt32BE(16)).to.equal(3 * 129); // image | ground truth | prediction
    const bad = await atrous('eval', '--run', run, '--scales', '1,-2');
    expect(bad.err).to.contain("--scales must be positive numbers separated by commas, got '1,-2'");
    const noOut = await atrous('eval', '--weights', join(run, 'x.safetensors'), '--report');
    expect(noOut.err).to.contain('--report needs --out DIR');
  });

  it('renderReport escapes names and shows every class', () => {
    const html = renderReport({
      title: 'a <b>', settings: { x: '<y>' }, metrics: { iou: [0.5, null], miou: 0.5, pixelAccuracy: 0.9, pixels: 10, support: [5, 0], predicted: [5, 0], noGroundTruth: [1], miouClasses: 1, images: 1 },
      classNames: ['bg', 'c&d'], losses: [], overlays: [],
    });
    expect(html).to.contain('a &lt;b&gt;');
    expect(html).to.contain('c&amp;d');
    expect(html).to.contain('No training losses recorded.');
    expect(html).to.contain('n/a (no ground truth)');
    expect(html).to.contain('mIoU over 1 of 2 classes (left out, no ground truth and never predicted: 1 &#39;c&amp;d&#39;)');
  });
});
