// `atrous predict` end to end: decode → normalise → model → label PNG, overlay, logits. The model
// path itself is checked against torchvision in nn.test.ts; here the CLI must give the logits the
// model gives for the same pixels, and bad input must fail before anything is written.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../src/cli/main.js';
import { modelFromCheckpoint } from '../src/io/checkpoint.js';
import { parseSafetensors, toFloat32 } from '../src/io/safetensors.js';
import { encodePng, decodeLabelPng, rgbToChw } from '../src/io/image.js';
import { normalize, IMAGENET } from '../src/data/augment.js';
import { tensor, noGrad, argmax } from '../src/index.js';
import { relErr, editHeader, duplicateEntry } from './helpers.js';

const weights = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'model', 'small_weights.safetensors');

async function quiet<T>(fn: () => Promise<T>): Promise<T> {
  const log = console.log;
  const err = console.error;
  console.log = () => {};
  console.error = () => {};
  try {
    return await fn();
  } finally {
    console.log = log;
    console.error = err;
  }
}

describe('atrous predict', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrous-predict-'));
  const h = 37;
  const w = 45;
  const rgb = new Uint8Array(h * w * 3).map((_, i) => (i * 7919 + ((i / 3) | 0) * 13) % 256);
  const image = join(dir, 'img.png');
  writeFileSync(image, encodePng(rgb, w, h));

  it('writes the label map, the overlay and the logits the model computes', async () => {
    const out = join(dir, 'out');
    const logitsFile = join(out, 'logits.safetensors');
    const code = await quiet(() => run(['predict', '--weights', weights, '--image', image, '--out', out, '--save-logits', logitsFile]));
    expect(code).to.equal(0);
    const st = parseSafetensors(new Uint8Array(readFileSync(logitsFile)), 'logits');
    const logits = st.tensors.get('logits')!;
    const { model } = modelFromCheckpoint(new Uint8Array(readFileSync(weights)));
    model.eval();
    expect(logits.shape).to.deep.equal([1, model.config.numClasses, h, w]);
    const x = tensor(normalize(rgbToChw(rgb, h, w), h * w, IMAGENET), [1, 3, h, w]);
    const y = noGrad(() => model.forward(x));
    const expected = await y.float32();
    expect(relErr(toFloat32(logits), expected)).to.be.at.most(1e-5);
    const am = noGrad(() => argmax(y, 1));
    const labels = decodeLabelPng(new Uint8Array(readFileSync(join(out, 'img.labels.png'))), 'labels');
    expect(Array.from(labels.data)).to.deep.equal(Array.from(await am.data()));
    expect(existsSync(join(out, 'img.overlay.png'))).to.equal(true);
    for (const t of [x, y, am]) t.dispose();
    model.dispose();
  });

  it('averages scales and flips into one label map', async () => {
    const out = join(dir, 'ms');
    const code = await quiet(() => run(['predict', '--weights', weights, '--image', image, '--out', out, '--scales', '0.75,1,1.25', '--flip', '--output-stride', '16']));
    expect(code).to.equal(0);
    const labels = decodeLabelPng(new Uint8Array(readFileSync(join(out, 'img.labels.png'))), 'labels');
    expect(labels.width).to.equal(w);
    expect(labels.height).to.equal(h);
  });

  it('rejects bad input before writing anything', async () => {
    const out = join(dir, 'bad');
    const broken = join(dir, 'broken.png');
    writeFileSync(broken, readFileSync(image).subarray(0, 40));
    const cases: [string[], RegExp][] = [
      [['--image', image], /--weights/],
      [['--weights', weights, '--image', join(dir, 'missing.png')], /cannot read image/],
      [['--weights', weights, '--image', broken], /broken\.png/],
      [['--weights', image, '--image', image], /img\.png/],
      [['--weights', weights, '--image', image, '--scales', '1,-2'], /--scales/],
      [['--weights', weights, '--image', image, '--config', 'mini'], /small_weights|mismatch|shape|missing|unexpected/i],
    ];
    // A checkpoint whose header names a tensor twice (JSON.parse would keep the last entry).
    const doctored = join(dir, 'doctored.safetensors');
    writeFileSync(doctored, editHeader(new Uint8Array(readFileSync(weights)), (hd) => duplicateEntry(hd, 'classifier.4.bias')));
    cases.push([['--weights', doctored, '--image', image], /doctored\.safetensors: the header names tensor "classifier\.4\.bias" twice/]);
    for (const [args, re] of cases) {
      let msg = '';
      const err = console.error;
      console.error = (m: unknown) => (msg += String(m));
      const log = console.log;
      console.log = () => {};
      try {
        expect(await run(['predict', ...args, '--out', out]), args.join(' ')).to.equal(1);
      } finally {
        console.error = err;
        console.log = log;
      }
      expect(msg, args.join(' ')).to.match(re);
      expect(existsSync(out) ? readdirSync(out).filter((f) => f.endsWith('.png')) : []).to.deep.equal([]);
    }
  });
});
