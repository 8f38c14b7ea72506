// A checkpoint is used the way it was trained: its output stride (the last stage's), input
// normalisation, class names and padding convention travel in its metadata and are the defaults
// of `atrous eval`, `atrous predict`, segment() and the page; an explicit option wins, and the
// printed settings say where each value came from.
import { expect } from 'chai';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  modelConfig, readCheckpoint, modelFromCheckpoint, saveCheckpoint, resolveInference, describeInference, DeepLabV3, segment, segmentImage,
  normalize, IMAGENET, rgbToChw, chwToRgb, ShapesDataset, engine,
} from '../src/index.js';
import { parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { encodePng, decodeLabelPng } from '../src/io/image.js';
import { RunDir, train, RUN_FORMAT, TRAIN_DEFAULTS, type RunInfo } from '../src/train/index.js';
import { runCli as atrous } from './helpers.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHIPPED = join(ROOT, 'weights', 'mini-shapes.safetensors');

/** The checkpoint's bytes with its __metadata__ changed (tensors unchanged). */
function withMetadata(bytes: Uint8Array, edit: (m: Record<string, string>) => void): Uint8Array {
  const st = parseSafetensors(bytes, 'ck');
  const m = { ...st.metadata };
  edit(m);
  return serializeSafetensors(st.tensors, m);
}

describe('checkpoints carry how they were trained to be used', function () {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'atrous-inference-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the shipped checkpoint states output stride 8, ImageNet normalisation, stride+1 padding and the shapes classes', () => {
    const ck = readCheckpoint(readFileSync(SHIPPED), SHIPPED);
    expect(ck.config?.outputStride, 'the architecture is configured at 16').to.equal(16);
    expect(ck.inference).to.deep.equal({
      outputStride: 8, padding: 'stride+1', normalization: { mean: IMAGENET.mean, std: IMAGENET.std },
      classes: ['background', 'circle', 'square', 'triangle', 'star', 'cross', 'ring'],
    });
  });

  it('`atrous eval --weights` with no other flag prints the mIoU of the end of `npm start` (0.8057), naming the settings\' sources', async () => {
    const r = await atrous('eval', '--weights', SHIPPED);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(/^mIoU: 0\.8057$/m);
    expect(r.out).to.include('on shapes (val; dataset from the checkpoint)');
    expect(r.out).to.include('output stride 8 (from the checkpoint); inputs padded to k×8+1 (from the checkpoint); ImageNet mean/std (from the checkpoint); 7 classes (from the checkpoint)');
  });

  it('an explicit flag still wins and is reported as given: --output-stride 16 gives 0.6162', async () => {
    const r = await atrous('eval', '--weights', SHIPPED, '--output-stride', '16', '--json');
    expect(r.code, r.err).to.equal(0);
    const j = JSON.parse(r.out);
    expect(j.miou).to.be.closeTo(0.6162, 5e-5);
    expect(j.outputStride).to.equal(16);
    expect(j.settingSources).to.deep.equal({ outputStride: 'option', normalization: 'checkpoint', classes: 'checkpoint', padding: 'checkpoint' });
  });

  it('`atrous predict` defaults to the checkpoint\'s settings: the same labels as segment() at output stride 8 with stride+1 padding', async () => {
    // A held-out shapes image cut to 100 × 120 (not k·8+1, so padding matters).
    const s = await new ShapesDataset({ split: 'val' }).get(3);
    const full = chwToRgb(s.image, s.h, s.w);
    const h = 100;
    const w = 120;
    const rgb = new Uint8Array(h * w * 3);
    for (let y = 0; y < h; y++) rgb.set(full.subarray(3 * y * s.w, 3 * (y * s.w + w)), 3 * y * w);
    const img = join(dir, 'photo.png');
    writeFileSync(img, encodePng(rgb, w, h));
    const r = await atrous('predict', '--weights', SHIPPED, '--image', img, '--out', join(dir, 'pred'));
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.include('settings: output stride 8 (from the checkpoint); inputs padded to k×8+1 (from the checkpoint)');
    expect(r.out).to.match(/classes: \d+ (background|circle|square|triangle|star|cross|ring): /);
    const labels = decodeLabelPng(new Uint8Array(readFileSync(join(dir, 'pred', 'photo.labels.png'))), 'labels').data;
    // The same computed by hand: output stride 8, padded to 105 × 121 (k·8+1), logits cropped back.
    const { model } = modelFromCheckpoint(readFileSync(SHIPPED), { settings: { outputStride: 8, padding: 'none' } });
    model.eval();
    const x = normalize(rgbToChw(rgb, h, w), h * w, IMAGENET);
    const byHand = await segment(model, x, h, w, { padMultiple: 8 });
    expect(Array.from(labels)).to.deep.equal(Array.from(byHand.labels));
    const unpadded = await segment(model, x, h, w);
    expect(Array.from(unpadded.labels), 'padding changes the labels, so the check can fail').to.not.deep.equal(Array.from(byHand.labels));
    model.dispose();
    // Flags win: --output-stride 16 --padding none.
    const r16 = await atrous('predict', '--weights', SHIPPED, '--image', img, '--out', join(dir, 'pred16'), '--output-stride', '16', '--padding', 'none');
    expect(r16.code, r16.err).to.equal(0);
    expect(r16.out).to.include('settings: output stride 16 (given); no padding (given); ImageNet mean/std (from the checkpoint)');
  });

  it('segment() and segmentImage() take the model\'s padding and normalisation by default', async () => {
    const bytes = readFileSync(SHIPPED);
    const { model, inference } = modelFromCheckpoint(bytes);
    expect(model.outputStride).to.equal(8);
    expect(inference.sources).to.deep.equal({ outputStride: 'checkpoint', normalization: 'checkpoint', classes: 'checkpoint', padding: 'checkpoint' });
    model.eval();
    const h = 40;
    const w = 50;
    const rgb = new Uint8Array(h * w * 3).map((_, i) => (i * 31 + ((i / 7) | 0)) % 256);
    const x = normalize(rgbToChw(rgb, h, w), h * w, IMAGENET);
    const a = await segment(model, x, h, w);
    const b = await segment(model, x, h, w, { padMultiple: 8 });
    const c = await segmentImage(model, rgb, h, w);
    expect(Array.from(a.logits)).to.deep.equal(Array.from(b.logits));
    expect(Array.from(c.logits)).to.deep.equal(Array.from(b.logits));
    // Another normalisation in the checkpoint is applied by segmentImage.
    const other = { mean: [0.5, 0.5, 0.5] as [number, number, number], std: [0.25, 0.25, 0.25] as [number, number, number] };
    const m2 = modelFromCheckpoint(withMetadata(bytes, (m) => {
      m.inference = JSON.stringify({ outputStride: 8, mean: other.mean, std: other.std, padding: 'stride+1' });
    })).model;
    m2.eval();
    const d = await segmentImage(m2, rgb, h, w);
    const e = await segment(m2, normalize(rgbToChw(rgb, h, w), h * w, other), h, w);
    expect(Array.from(d.logits)).to.deep.equal(Array.from(e.logits));
    expect(Array.from(d.logits)).to.not.deep.equal(Array.from(c.logits));
    model.dispose();
    m2.dispose();
  });

  it('a checkpoint that states nothing (a torchvision export) gets the configuration\'s stride, ImageNet, no padding, guessed class names', () => {
    const cfg = modelConfig('mini', { numClasses: 21 });
    const r = resolveInference({}, cfg);
    expect(r.values.outputStride).to.equal(cfg.outputStride);
    expect(r.values.padding).to.equal('none');
    expect(r.values.classes[15]).to.equal('person');
    expect(r.sources).to.deep.equal({ outputStride: 'default', normalization: 'default', classes: 'default', padding: 'default' });
    expect(describeInference(r)).to.equal(`output stride ${cfg.outputStride} (default); no padding (default); ImageNet mean/std (default); 21 classes (default: PASCAL VOC classes, assumed from the class count)`);
  });

  it('training records the last stage\'s output stride, the crops\' padding convention and the dataset\'s classes', async () => {
    const info: RunInfo = {
      format: RUN_FORMAT, created: new Date().toISOString(),
      options: {
        ...TRAIN_DEFAULTS, config: modelConfig('mini', { numClasses: 7 }), dataset: 'shapes', dataLength: 4, steps: 4, batch: 2, crop: 33,
        scaleMin: 1, scaleMax: 1, checkpointEvery: 2, logEvery: 2,
        stages: [{ steps: 2, lr: 0.05, outputStride: 16 }, { steps: 2, lr: 0.005, outputStride: 8, freezeBatchNorm: true }],
      },
    };
    const run = RunDir.create(join(dir, 'run'), info);
    await train(run);
    const at = (step: number) => readCheckpoint(readFileSync(join(run.path, 'checkpoints', `step-${String(step).padStart(7, '0')}`, 'model.safetensors'))).inference;
    expect(at(2).outputStride, 'end of stage 1').to.equal(16);
    expect(at(4).outputStride, 'end of stage 2').to.equal(8);
    expect(at(4).padding).to.equal('stride+1');
    expect(at(4).classes).to.deep.equal(['background', 'circle', 'square', 'triangle', 'star', 'cross', 'ring']);
    // eval --run uses them.
    const r = await atrous('eval', '--run', run.path, '--count', '4', '--json');
    expect(r.code, r.err).to.equal(0);
    const j = JSON.parse(r.out);
    expect(j.outputStride).to.equal(8);
    expect(j.settings.padding).to.equal('stride+1');
    expect(j.datasetSource).to.equal('run');
    // Crops that are not k·OS+1 record no padding.
    const plain = new DeepLabV3(modelConfig('mini', { numClasses: 7 }));
    plain.materialize(0);
    plain.inference = { outputStride: 16, normalization: { mean: [...IMAGENET.mean], std: [...IMAGENET.std] }, classes: ['a', 'b', 'c', 'd', 'e', 'f', 'g'], padding: 'none' };
    const back = readCheckpoint(await saveCheckpoint(plain));
    expect(back.inference.padding).to.equal('none');
    expect(back.inference.classes).to.deep.equal(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    plain.dispose();
  });

  it('metadata that lies is refused, naming the file and the field', () => {
    const bytes = new Uint8Array(readFileSync(SHIPPED));
    const bad = (edit: (m: Record<string, string>) => void, ...parts: string[]) => {
      const b = withMetadata(bytes, edit);
      let err: Error | null = null;
      try {
        readCheckpoint(b, 'doctored.safetensors');
      } catch (e) {
        err = e as Error;
      }
      expect(err, parts.join(' ')).to.be.instanceOf(Error);
      for (const p of ['doctored.safetensors', ...parts]) expect(err!.message).to.include(p);
    };
    bad((m) => { m.inference = '{"outputStride": 12}'; }, 'outputStride must be a power of two');
    bad((m) => { m.inference = '{"outputStride": 8, "mean": [0.5, 0.5]}'; }, 'mean and std go together');
    bad((m) => { m.inference = '{"mean": [0.5, 0.5, 0.5], "std": [0, 1, 1]}'; }, 'normalization.std must be three positive numbers');
    bad((m) => { m.inference = '{"padding": "same"}'; }, "padding must be one of 'stride+1', 'none'");
    bad((m) => { m.inference = '{"stride": 8}'; }, "unknown field 'stride'");
    bad((m) => { m.inference = '[8]'; }, '__metadata__.inference must be a JSON object');
    bad((m) => { m.inference = '{oops'; }, '__metadata__.inference is not valid JSON');
    bad((m) => { m.classes = '["background", "circle"]'; }, 'classes names 2 classes but the model predicts 7');
    bad((m) => { m.classes = '[1, 2, 3, 4, 5, 6, 7]'; }, 'classes must be a list of names');
  });

  it('a photo past the memory limit fails naming the tensor and the limit, and leaves no output directory behind', async () => {
    const pool = engine().pool;
    const was = pool.memoryLimit;
    pool.trim(); // nothing cached: the run must take new segments
    pool.memoryLimit = 2 ** 20;
    try {
      const out = join(dir, 'made', 'for', 'nothing');
      const r = await atrous('predict', '--weights', SHIPPED, '--image', join(ROOT, 'web', 'samples', 'shapes-val-0.png'), '--out', out);
      expect(r.code).to.equal(1);
      expect(r.err).to.match(/out of memory: a tensor \[[\d, ]+\] \(f32\) needs \d+ bytes .* may hold 1048576 \(0\.00 GiB, the memory limit/);
      expect(existsSync(join(dir, 'made')), 'the directories predict made are gone').to.equal(false);
    } finally {
      pool.memoryLimit = was;
    }
  });

  it('a bad option is refused before anything is written', async () => {
    const r = await atrous('predict', '--weights', SHIPPED, '--image', join(ROOT, 'web', 'samples', 'shapes-val-0.png'), '--out', join(dir, 'nothing'), '--padding', 'same');
    expect(r.code).to.equal(1);
    expect(r.err).to.include("--padding must be stride+1 or none, got 'same'");
    const e = await atrous('eval', '--weights', SHIPPED, '--mean', '0.5,0.5,0.5');
    expect(e.code).to.equal(1);
    expect(e.err).to.include('--mean and --std go together');
  });
});
