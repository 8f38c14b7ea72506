// The browser demo in a real browser: Debian's Chromium (never a downloaded one), headless, WebGPU
// on its bundled SwiftShader (flags in docs/software-gpu.md, "In the browser"), driven by playwright-core.
//
// It builds dist/web, serves it (scripts/serve.mjs) and checks that the page
// - segments a bundled sample with the served checkpoint, and a checkpoint loaded from a file
//   (output stride 8 + flip), with label maps equal to `atrous predict`'s on ≥ 99.5% of pixels;
// - reads photos upright: one photo in its 8 EXIF orientations (PNG and JPEG) gives one label map,
//   equal to `atrous predict`'s;
// - names bad input (a non-image file, a checkpoint that does not fit its configuration);
// - trains: the loss falls, pause, a reload, restoring the run from IndexedDB and resume continue
//   the run, the downloaded checkpoint loads in the Node CLI;
// - takes a person's own data through the folder picker: a pairs folder with a broken mask gets
//   `atrous data check`'s message, a VOC folder its report (label map, per-class pixels), and
//   fine-tuning it from the shipped weights lowers the loss and raises the held-out mIoU; the
//   download holds the 3 classes and the folder's label map and loads in `atrous predict`;
// - trains in a Web Worker: the page's longest main-thread task while training stays under 100 ms,
//   and the worker holds the same GPU memory after each of 5 train/stop cycles;
// - segments Chromium's fake camera frame after frame (frames per second, adapter), and stops;
// - runs one benchmark row;
// - without WebGPU, or without an adapter, says what to enable and throws nothing.
// Screenshots go to test/browser/screenshots/ (git-ignored).
//
// `npm test` runs it when /usr/bin/chromium exists (and skips it, saying so, otherwise);
// `npm run test:browser` runs only this file and fails when Chromium is missing. SwiftShader runs
// at ~1 GFLOP/s, so the work here is a few GFLOP: 129×129 images, batch 2 at 65×65.

import { expect } from 'chai';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Server } from 'node:http';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { init, createDeepLabV3, modelConfig, saveCheckpoint, readCheckpoint, stateDictToSafetensors } from '../../src/index.js';
import { applyOrientation, decodeLabelPng } from '../../src/io/image.js';
import { orientationVariants } from '../helpers.js';
import { writeVocFolder, writePairsFolder, folderEntries, MERGED_META } from '../dropped-fixtures.js';
import { zipSync } from 'fflate';
import { openVoc } from '../../src/data/voc.js';
import { labelMapEntries } from '../../src/data/labels.js';
import { run as cli } from '../../src/cli/main.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CHROMIUM = process.env.ATROUS_CHROMIUM ?? '/usr/bin/chromium';
const REQUIRED = process.env.ATROUS_BROWSER_TEST === 'required';
const SHOTS = join(ROOT, 'test', 'browser', 'screenshots');
const SHIPPED = join(ROOT, 'weights', 'mini-shapes.safetensors');
const SAMPLES = join(ROOT, 'web', 'samples');
// Playwright adds --headless (the new headless mode in this Chromium).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader',
  '--disable-background-networking', '--disable-component-update', '--no-first-run',
  // Chromium's fake camera (a test pattern), granted without asking.
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
];
const MIN_AGREEMENT = 0.995;

interface DemoState {
  state: string;
  message: string;
  adapter: string;
  model: null | { source: string; config: string; numClasses: number; classes: string[] };
  segmentations: number;
  lastSegmentation: null | { image: string; width: number; height: number; labels: Uint8Array; ms: number; outputStride: number; flip: boolean };
  train: { state: string; step: number; losses: { step: number; loss: number }[]; evals: { step: number; miou: number }[]; started: number; stopped: number; dataset: string; init: string;
    adapter: string; saved: null | { step: number; steps: number; dataset: string; savedAt: string }; persistedStep: number; workerStats: null | { liveBuffers: number; liveBytes: number; allocatedBuffers: number; allocatedBytes: number; uniformBuffers: number; pipelines: number } };
  data: null | { state: string; source: string; message: string; layout: string; train: number; val: number; numClasses: number; classNames: string[]; labelMap: Record<string, number> | null; lines: string[]; warnings: string[] };
  camera: { state: string; frames: number; fps: number; width: number; height: number; adapter: string; message: string };
  benchRows: { pass: string; dilation: number; ms: number; gflops: number; adapter: string; cin: number; h: number }[];
  errors: string[];
  longTasks: { start: number; duration: number }[];
  longestTask(since?: number): number;
  stats(): { liveBuffers: number; liveBytes: number; allocatedBuffers: number; allocatedBytes: number; uniformBuffers: number; pipelines: number } | null;
}
declare const atrousDemo: DemoState;

/** Runs `atrous ...` in-process (the CLI's own code), capturing its output. */
async function atrous(...argv: string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  try {
    return { code: await cli(argv), out: out.join('\n') };
  } finally {
    console.log = log;
  }
}

/** The Node CLI's label map for an image (`atrous predict`, palette PNG decoded). */
async function cliLabels(weights: string, imagePath: string, outDir: string, extra: string[] = []): Promise<{ labels: Uint8Array; out: string }> {
  const r = await atrous('predict', '--weights', weights, '--image', imagePath, '--out', outDir, ...extra);
  expect(r.code, r.out).to.equal(0);
  const file = join(outDir, `${basename(imagePath).replace(/\.[a-z]+$/i, '')}.labels.png`);
  const img = decodeLabelPng(new Uint8Array(readFileSync(file)), file);
  return { labels: img.data, out: r.out };
}

function agreement(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/** Classes covering at least 1% of the pixels. */
function mainClasses(labels: ArrayLike<number>): number[] {
  const counts = new Map<number, number>();
  for (let i = 0; i < labels.length; i++) counts.set(labels[i], (counts.get(labels[i]) ?? 0) + 1);
  return [...counts].filter(([, n]) => n >= 0.01 * labels.length).map(([k]) => k).sort((x, y) => x - y);
}

const log = (msg: string) => console.log(`      ${msg}`);

describe('browser demo in Chromium (WebGPU on SwiftShader)', function () {
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let server: Server | null = null;
  let url = '';
  let tmp = '';
  let served = '';
  let randomInit = '';
  const pageErrors: string[] = [];

  before(async function () {
    if (!existsSync(CHROMIUM)) {
      const msg = `Chromium not found at ${CHROMIUM}: install Debian's (apt-get install chromium) or set ATROUS_CHROMIUM`;
      if (REQUIRED) throw new Error(msg);
      console.log(`      browser tests skipped: ${msg}`);
      this.skip();
    }
    const t0 = performance.now();
    tmp = mkdtempSync(join(tmpdir(), 'atrous-browser-'));
    // Emptied first, so that the screenshots checked at the end are this run's.
    rmSync(SHOTS, { recursive: true, force: true });
    mkdirSync(SHOTS, { recursive: true });
    const { buildWeb } = await import(pathToFileURL(join(ROOT, 'scripts', 'build-web.mjs')).href);
    await buildWeb({ log: () => undefined });

    // The checkpoint the page loads by default: the shipped one, else one trained here.
    if (existsSync(SHIPPED)) served = SHIPPED;
    else {
      const run = join(tmp, 'run');
      const r = await atrous('train', '--config', 'mini', '--dataset', 'shapes', '--steps', '20', '--batch', '4', '--crop', '65', '--out', run);
      expect(r.code, r.out).to.equal(0);
      const latest = JSON.parse(readFileSync(join(run, 'latest.json'), 'utf8')) as { dir: string };
      served = join(run, latest.dir, 'model.safetensors');
    }
    // A randomly initialised model: near-ties between classes everywhere, so its label maps have
    // many class boundaries (a stricter comparison than a model that says background everywhere).
    await init();
    const m = createDeepLabV3(modelConfig('mini', { numClasses: 7 }), { seed: 2 });
    try {
      randomInit = join(tmp, 'random-init.safetensors');
      writeFileSync(randomInit, await saveCheckpoint(m, { dataset: 'shapes' }));
    } finally {
      m.dispose();
    }

    const { startServer } = await import(pathToFileURL(join(ROOT, 'scripts', 'serve.mjs')).href);
    ({ server, url } = await startServer({ port: 0, weights: served, log: () => undefined }));
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
    context = await browser.newContext({ viewport: { width: 1200, height: 1000 }, acceptDownloads: true });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    log(`set-up ${((performance.now() - t0) / 1000).toFixed(1)} s (Chromium ${browser.version()}, weights ${served === SHIPPED ? 'weights/mini-shapes.safetensors' : 'trained here, 20 steps'})`);
  });

  after(async () => {
    await browser?.close();
    server?.close();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  afterEach(function () {
    expect(pageErrors, 'uncaught errors in the page').to.deep.equal([]);
  });

  it('opens on WebGPU, loads the served checkpoint and segments a bundled sample like `atrous predict`', async () => {
    await page.goto(url);
    await page.waitForFunction(() => atrousDemo.state !== 'starting' && (atrousDemo.segmentations > 0 || atrousDemo.errors.length > 0), null, { timeout: 300_000 });
    const s = await page.evaluate(() => ({ state: atrousDemo.state, message: atrousDemo.message, adapter: atrousDemo.adapter, model: atrousDemo.model, errors: atrousDemo.errors, seg: atrousDemo.lastSegmentation && { ...atrousDemo.lastSegmentation, labels: Array.from(atrousDemo.lastSegmentation.labels) } }));
    expect(s.errors).to.deep.equal([]);
    expect(s.state, s.message).to.equal('ready');
    expect(s.adapter).to.match(/swiftshader/i);
    expect(await page.textContent('#gpu-line')).to.contain(s.adapter);
    expect(s.model).to.deep.include({ source: 'mini-shapes.safetensors', config: 'mini', numClasses: 7 });
    expect(s.seg!.image).to.equal('shapes-val-0.png');
    // The page uses the checkpoint's settings by default, as `atrous predict` does (no flags below).
    if (served === SHIPPED) {
      expect(s.seg!.outputStride, "the shipped checkpoint's output stride (its last training stage)").to.equal(8);
      expect(await page.textContent('#seg-model')).to.contain('output stride 8 (from the checkpoint); inputs padded to k×8+1 (from the checkpoint)');
      expect(await page.textContent('#seg-os-auto')).to.equal('as trained (8)');
    }
    const node = await cliLabels(served, join(SAMPLES, 'shapes-val-0.png'), join(tmp, 'pred-served'));
    const agree = agreement(s.seg!.labels, node.labels);
    log(`served checkpoint, shapes-val-0: ${(100 * agree).toFixed(2)}% of ${node.labels.length} pixels equal to the Node CLI's; classes ${JSON.stringify(mainClasses(node.labels))}; ${s.seg!.ms.toFixed(0)} ms in the page`);
    expect(agree).to.be.at.least(MIN_AGREEMENT);
    const legend = await page.textContent('#seg-legend');
    expect(legend).to.match(/background|circle|square|triangle|star|cross|ring/);
    expect(await page.textContent('#seg-time')).to.match(/Inference: \d+ ms/);

    // The library bundle as an ES module in the same page (its own engine and device).
    const lib = await page.evaluate(async () => {
      const a = (await import(new URL('atrous.js', location.href).href)) as Record<string, any>;
      await a.init();
      const x = a.tensor(new Float32Array([-1, 2, -3, 4]), [4]);
      const y = a.relu(x);
      const out = Array.from(await y.data());
      x.dispose();
      y.dispose();
      return { out, names: ['init', 'segment', 'modelFromCheckpoint', 'TrainSession', 'conv2d', 'backward'].filter((k) => typeof a[k] === 'function') };
    });
    expect(lib.out).to.deep.equal([0, 2, 0, 4]);
    expect(lib.names).to.have.length(6);
  });

  it('segments with a checkpoint loaded from a file, at output stride 8 with flip, like `atrous predict --output-stride 8 --flip`', async () => {
    let before = await page.evaluate(() => atrousDemo.segmentations);
    await page.setInputFiles('#seg-weights-file', randomInit);
    await page.waitForFunction((n) => atrousDemo.segmentations > n || atrousDemo.errors.length > 0, before, { timeout: 300_000 });
    expect(await page.evaluate(() => atrousDemo.model?.source)).to.equal('random-init.safetensors');
    expect(await page.textContent('#seg-model')).to.contain('shapes classes');
    // Stride 16, sample 1.
    before = await page.evaluate(() => atrousDemo.segmentations);
    await page.click('button[data-sample="shapes-val-1.png"]');
    await page.waitForFunction((n) => atrousDemo.segmentations > n || atrousDemo.errors.length > 0, before, { timeout: 300_000 });
    let seg = await page.evaluate(() => ({ ...atrousDemo.lastSegmentation!, labels: Array.from(atrousDemo.lastSegmentation!.labels) }));
    expect(seg.image).to.equal('shapes-val-1.png');
    let node = await cliLabels(randomInit, join(SAMPLES, 'shapes-val-1.png'), join(tmp, 'pred-rnd16'));
    expect(mainClasses(node.labels).length, 'the comparison needs a label map with several classes').to.be.at.least(2);
    let agree = agreement(seg.labels, node.labels);
    log(`random-init checkpoint, shapes-val-1, stride 16: ${(100 * agree).toFixed(2)}% equal (classes ${JSON.stringify(mainClasses(node.labels))}), ${seg.ms.toFixed(0)} ms`);
    expect(agree).to.be.at.least(MIN_AGREEMENT);
    // Stride 8 + flip (each option change segments again).
    before = await page.evaluate(() => atrousDemo.segmentations);
    await page.check('#seg-flip');
    await page.selectOption('#seg-os', '8');
    await page.waitForFunction((n) => (atrousDemo.segmentations >= n + 2 && atrousDemo.lastSegmentation?.outputStride === 8) || atrousDemo.errors.length > 0, before, { timeout: 300_000 });
    seg = await page.evaluate(() => ({ ...atrousDemo.lastSegmentation!, labels: Array.from(atrousDemo.lastSegmentation!.labels) }));
    expect(seg).to.deep.include({ outputStride: 8, flip: true });
    node = await cliLabels(randomInit, join(SAMPLES, 'shapes-val-1.png'), join(tmp, 'pred-rnd8'), ['--output-stride', '8', '--flip']);
    agree = agreement(seg.labels, node.labels);
    log(`random-init checkpoint, shapes-val-1, stride 8 + flip: ${(100 * agree).toFixed(2)}% equal (classes ${JSON.stringify(mainClasses(node.labels))}), ${seg.ms.toFixed(0)} ms`);
    expect(agree).to.be.at.least(MIN_AGREEMENT);
    expect(await page.textContent('#seg-time')).to.contain('2 forward passes, output stride 8, flip');
    await page.screenshot({ path: join(SHOTS, 'segment.png'), fullPage: true });
    before = await page.evaluate(() => atrousDemo.segmentations);
    await page.uncheck('#seg-flip');
    await page.selectOption('#seg-os', '16');
    await page.waitForFunction((n) => (atrousDemo.segmentations >= n + 2 && atrousDemo.lastSegmentation?.outputStride === 16) || atrousDemo.errors.length > 0, before, { timeout: 300_000 });
  });

  it('takes a dropped image, and names bad input: a file that is not an image, a checkpoint that does not fit its configuration', async () => {
    // Drag and drop: a sample dropped on the drop zone is segmented.
    const before = await page.evaluate(() => atrousDemo.segmentations);
    await page.evaluate(async () => {
      const blob = await (await fetch('samples/shapes-val-3.png')).blob();
      const dt = new DataTransfer();
      dt.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
      document.querySelector('#seg-drop')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await page.waitForFunction((n) => (atrousDemo.segmentations > n && atrousDemo.lastSegmentation?.image === 'dropped.png') || atrousDemo.errors.length > 0, before, { timeout: 300_000 });
    expect(await page.evaluate(() => atrousDemo.errors)).to.deep.equal([]);
    expect(await page.evaluate(() => atrousDemo.lastSegmentation?.image)).to.equal('dropped.png');

    const notImage = join(tmp, 'notes.txt');
    writeFileSync(notImage, 'not an image\n');
    await page.setInputFiles('#seg-file', notImage);
    await page.waitForFunction(() => document.querySelector('#seg-status')!.classList.contains('error'), null, { timeout: 60_000 });
    expect(await page.textContent('#seg-status')).to.contain("'notes.txt' is not an image this browser can decode");

    // The random-init checkpoint with its metadata claiming 21 classes: the classifier's shape is wrong.
    const ck = readCheckpoint(new Uint8Array(readFileSync(randomInit)));
    const cfg = JSON.parse(ck.metadata.config) as { numClasses: number };
    const wrong = join(tmp, 'wrong-config.safetensors');
    writeFileSync(wrong, stateDictToSafetensors(ck.state, { ...ck.metadata, config: JSON.stringify({ ...cfg, numClasses: 21 }) }));
    await page.setInputFiles('#seg-weights-file', wrong);
    await page.waitForFunction(() => document.querySelector('#seg-model')!.classList.contains('error'), null, { timeout: 60_000 });
    const msg = (await page.textContent('#seg-model'))!;
    log(`wrong configuration: "${msg}"`);
    expect(msg).to.contain("wrong-config.safetensors does not fit its configuration 'mini'");
    expect(msg).to.match(/classifier/);
    expect(await page.evaluate(() => atrousDemo.model?.source), 'the previous model stays loaded').to.equal('random-init.safetensors');

    const garbage = join(tmp, 'garbage.safetensors');
    writeFileSync(garbage, 'definitely not safetensors');
    await page.setInputFiles('#seg-weights-file', garbage);
    await page.waitForFunction(() => document.querySelector('#seg-model')!.textContent!.includes('cannot read garbage.safetensors'), null, { timeout: 60_000 });
    expect(await page.textContent('#seg-model')).to.contain('cannot read garbage.safetensors');
    // Those errors were expected: later waits watch the list for new ones.
    await page.evaluate(() => atrousDemo.errors.splice(0));
  });

  it('reads photos upright: the 8 EXIF orientations of a PNG and of a JPEG give one label map, equal to `atrous predict`\'s', async () => {
    // The random-init checkpoint is still loaded (stride 16, no flip): its label maps have many boundaries.
    const v = orientationVariants(tmp, ROOT);
    for (const [kind, files] of [['PNG', v.png], ['JPEG', v.jpg]] as const) {
      const maps: number[][] = [];
      const agree: number[] = [];
      for (const [i, file] of files.entries()) {
        const before = await page.evaluate(() => atrousDemo.segmentations);
        await page.setInputFiles('#seg-file', file);
        await page.waitForFunction(([n, name]) => (atrousDemo.segmentations > n && atrousDemo.lastSegmentation?.image === name) || atrousDemo.errors.length > 0,
          [before, basename(file)] as const, { timeout: 300_000 });
        const seg = await page.evaluate(() => ({ ...atrousDemo.lastSegmentation!, labels: Array.from(atrousDemo.lastSegmentation!.labels) }));
        expect(seg.image).to.equal(basename(file));
        expect([seg.width, seg.height], `${basename(file)} in the page`).to.deep.equal([48, 72]);
        maps.push(seg.labels);
        const node = await cliLabels(randomInit, file, join(tmp, `pred-orient-${kind}`));
        if (i === 0) {
          // The map tells the orientations apart: it is not the same mirrored or turned 180°.
          expect(mainClasses(node.labels).length, 'a label map with several classes').to.be.at.least(2);
          for (const o of [2, 3, 4] as const) {
            expect(Array.from(applyOrientation({ width: 48, height: 72, data: node.labels }, 1, o).data)).to.not.deep.equal(Array.from(node.labels));
          }
        }
        agree.push(agreement(seg.labels, node.labels));
      }
      log(`${kind} in 8 EXIF orientations: page vs \`atrous predict\` ${agree.map((a) => `${(100 * a).toFixed(1)}%`).join(' ')}`);
      for (const [i, m] of maps.entries()) expect(m, `${kind} orientation ${i + 1} vs 1 in the page`).to.deep.equal(maps[0]);
      // PNG pixels are the same in both; JPEG decoders (jpeg-js, Chromium's libjpeg-turbo) differ by
      // one level on some pixels, which moves a few of the random model's near-ties.
      for (const a of agree) expect(a).to.be.at.least(kind === 'PNG' ? MIN_AGREEMENT : 0.99);
    }
  });

  it('trains mini on shapes: the loss falls, pause, reload, restore from IndexedDB and resume continue the run, the checkpoint downloads and loads in the Node CLI', async () => {
    await page.click('#tab-train');
    await page.fill('#train-steps', '8');
    await page.fill('#train-batch', '2');
    await page.fill('#train-eval-every', '4');
    await page.fill('#train-eval-count', '2');
    const t0 = performance.now();
    await page.click('#train-start');
    await page.waitForFunction(() => atrousDemo.train.step >= 3 || atrousDemo.train.state === 'error', null, { timeout: 300_000 });
    await page.click('#train-pause');
    await page.waitForFunction(() => atrousDemo.train.state !== 'running', null, { timeout: 300_000 });
    const pausedAt = await page.evaluate(() => atrousDemo.train.step);
    expect(await page.evaluate(() => atrousDemo.train.state)).to.equal('paused');
    expect(pausedAt).to.be.within(3, 7);
    expect(await page.textContent('#train-status')).to.match(/^Paused: step \d+\/8.* Saved in this browser/);
    expect(await page.evaluate(() => atrousDemo.train.persistedStep), 'saved in IndexedDB at the pause').to.equal(pausedAt);
    // A reload keeps the run (IndexedDB): the panel offers it, and restoring it continues exactly there.
    await page.reload();
    await page.waitForFunction(() => atrousDemo.state !== 'starting' && atrousDemo.segmentations > 0, null, { timeout: 300_000 });
    expect(await page.evaluate(() => atrousDemo.train.saved), 'the saved run offered after the reload').to.deep.include({ step: pausedAt, steps: 8, dataset: 'shapes' });
    await page.click('#tab-train');
    expect(await page.isVisible('#train-restore')).to.equal(true);
    await page.screenshot({ path: join(SHOTS, 'train-saved.png'), fullPage: true });
    await page.click('#train-restore');
    await page.waitForFunction(() => ['paused', 'error'].includes(atrousDemo.train.state), null, { timeout: 120_000 });
    expect(await page.textContent('#train-status')).to.match(new RegExp(`^Restored: mini on shapes at step ${pausedAt}/8`));
    expect(await page.evaluate(() => atrousDemo.train.losses.map((l) => l.step))).to.deep.equal(Array.from({ length: pausedAt }, (_, i) => i + 1));
    await page.waitForTimeout(300);
    expect(await page.evaluate(() => atrousDemo.train.step), 'no step while paused').to.equal(pausedAt);
    await page.click('#train-resume');
    await page.waitForFunction(() => ['done', 'error'].includes(atrousDemo.train.state), null, { timeout: 300_000 });
    const secs = (performance.now() - t0) / 1000;
    const t = await page.evaluate(() => atrousDemo.train);
    expect(t.state, await page.textContent('#train-status') ?? '').to.equal('done');
    expect(t.losses.map((l) => l.step)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    const loss = t.losses.map((l) => l.loss);
    const first = (loss[0] + loss[1]) / 2;
    const last = (loss[6] + loss[7]) / 2;
    log(`training, 8 steps of batch 2 at 65×65 (paused at step ${pausedAt}, page reloaded, run restored from IndexedDB, resumed): loss ${loss.map((v) => v.toFixed(3)).join(' ')}; held-out mIoU ${t.evals.map((e) => `${e.miou.toFixed(3)}@${e.step}`).join(' ')}; ${secs.toFixed(1)} s`);
    expect(loss.every(Number.isFinite)).to.equal(true);
    expect(last, 'mean loss of the last two steps vs the first two').to.be.below(first * 0.85);
    expect(t.evals.map((e) => e.step)).to.deep.equal([4, 8]);
    for (const e of t.evals) expect(e.miou).to.be.within(0, 1);
    expect(await page.locator('#train-evals tbody tr').count()).to.equal(2);
    await page.screenshot({ path: join(SHOTS, 'train.png'), fullPage: true });

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
    expect(download.suggestedFilename()).to.equal('atrous-mini-shapes-step8.safetensors');
    const file = join(tmp, download.suggestedFilename());
    await download.saveAs(file);
    const ck = readCheckpoint(new Uint8Array(readFileSync(file)));
    expect(ck.metadata).to.include({ step: '8', dataset: 'shapes', format: 'atrous-deeplabv3' });
    const r = await atrous('predict', '--weights', file, '--image', join(SAMPLES, 'shapes-val-0.png'), '--out', join(tmp, 'pred-dl'));
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain('config mini');
  });

  it('brings its own data: a pairs folder with a broken mask gets data check\'s message; a VOC folder is checked as data check does and fine-tunes from the shipped weights', async () => {
    await page.click('#tab-train');
    const voc = join(tmp, 'myvoc');
    await writeVocFolder(voc, 16, 6);
    const pairs = join(tmp, 'pairs');
    const broken = writePairsFolder(voc, pairs, 1)!;
    const data = () => page.evaluate(() => atrousDemo.data);

    // Pairs by name with one mask cut short: the reader's message, as `atrous data check` prints it.
    let cliMessage = '';
    try {
      openVoc(pairs, { split: 'all', imageDir: 'images', labelDir: 'masks' });
    } catch (e) {
      cliMessage = (e as Error).message;
    }
    expect(cliMessage).to.contain(`masks/${broken}: truncated PNG`);
    await page.setInputFiles('#data-folder', pairs);
    await page.waitForFunction(() => atrousDemo.data !== null && atrousDemo.data.state !== 'checking', null, { timeout: 120_000 });
    const bad = await data();
    expect(bad!.state).to.equal('error');
    expect(bad!.message).to.equal(cliMessage.replaceAll(`${tmp}/`, ''));
    expect(await page.textContent('#data-status')).to.equal(bad!.message);
    expect(await page.isDisabled('#train-on-data'), 'no data to train on').to.equal(true);
    await page.screenshot({ path: join(SHOTS, 'data-error.png'), fullPage: true });

    // A VOC folder: the report of `atrous data check --dataset voc:DIR` (label map, per-class pixels).
    await page.setInputFiles('#data-folder', voc);
    await page.waitForFunction(() => atrousDemo.data !== null && atrousDemo.data.state !== 'checking', null, { timeout: 120_000 });
    const d = (await data())!;
    expect(d.state, d.message).to.equal('ready');
    expect([d.layout, d.train, d.val, d.numClasses]).to.deep.equal(['voc', 16, 6, 3]);
    expect(d.classNames).to.deep.equal(MERGED_META.classNames);
    const check = await atrous('data', 'check', '--dataset', `voc:${voc}`);
    expect(check.code, check.out).to.equal(0);
    expect(d.lines.join('\n')).to.equal(check.out.split('\n').slice(1).join('\n').replaceAll(`${tmp}/`, ''));
    expect(d.lines.join('\n')).to.match(/^label map \(myvoc\/atrous-dataset\.json\): 3→2, 4→2, 5→2, 6→1\n/);
    expect(await page.isChecked('#train-on-data')).to.equal(true);
    // The same folder as a zip, through the zip input: the same report (training below uses it).
    const zipFile = join(tmp, 'myvoc.zip');
    writeFileSync(zipFile, zipSync(Object.fromEntries(folderEntries(voc))));
    await page.setInputFiles('#data-zip', zipFile);
    await page.waitForFunction(() => atrousDemo.data !== null && atrousDemo.data.state !== 'checking', null, { timeout: 120_000 });
    const z = (await data())!;
    expect(z.state, z.message).to.equal('ready');
    expect([z.source, z.train, z.val, z.lines]).to.deep.equal(['myvoc.zip', 16, 6, d.lines]);
    // And dropped on the drop zone.
    await page.evaluate((b64) => {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([bytes], 'dropped-voc.zip', { type: 'application/zip' }));
      document.querySelector('#data-drop')!.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, readFileSync(zipFile).toString('base64'));
    await page.waitForFunction(() => atrousDemo.data?.source === 'dropped-voc.zip' && atrousDemo.data.state !== 'checking', null, { timeout: 120_000 });
    const dz = (await data())!;
    expect([dz.state, dz.train, dz.val, dz.lines]).to.deep.equal(['ready', 16, 6, d.lines]);

    // Fine-tune from the shipped weights: the head is re-initialised for 3 classes.
    await page.selectOption('#train-init', 'shipped');
    await page.check('#train-freeze input[data-freeze="freezeBatchNorm"]');
    await page.fill('#train-steps', '12');
    await page.fill('#train-batch', '2');
    await page.fill('#train-eval-every', '4');
    await page.fill('#train-eval-count', '6');
    // The long-task record works: a 120 ms busy loop in a page task shows up in it.
    const probe = await page.evaluate(() => new Promise<number>((done) => setTimeout(() => {
      const t = performance.now();
      while (performance.now() - t < 120);
      done(t);
    }, 0)));
    await page.waitForFunction((t) => atrousDemo.longestTask(t - 1) >= 100, probe, { timeout: 10_000 });
    const started = await page.evaluate(() => atrousDemo.train.started);
    const since = await page.evaluate(() => performance.now());
    const t0 = performance.now();
    await page.click('#train-start');
    await page.waitForFunction((n) => atrousDemo.train.started > n && ['done', 'error'].includes(atrousDemo.train.state), started, { timeout: 600_000 });
    const secs = (performance.now() - t0) / 1000;
    const t = await page.evaluate(() => ({ ...atrousDemo.train }));
    expect(t.state, await page.textContent('#train-status') ?? '').to.equal('done');
    expect(t.dataset).to.equal('myvoc');
    // Training runs in the worker: the page's main thread only draws.
    const longest = await page.evaluate((t) => atrousDemo.longestTask(t), since);
    const longTasks = await page.evaluate((t) => atrousDemo.longTasks.filter((x) => x.start >= t).length, since);
    log(`main thread while training in the worker: longest task ${longest.toFixed(0)} ms (${longTasks} tasks over 50 ms); worker adapter ${t.adapter}`);
    expect(longest, 'the longest main-thread task while training (ms)').to.be.below(100);
    expect(t.adapter).to.match(/swiftshader/i);
    expect(t.init).to.match(/^mini-shapes\.safetensors: .*re-initialised .* for 3 classes instead of 7/);
    const loss = t.losses.map((l) => l.loss);
    const first = (loss[0] + loss[1]) / 2;
    const last = (loss[10] + loss[11]) / 2;
    log(`fine-tuning on a dropped VOC folder (16 + 6 held out, 3 classes), 12 steps of batch 2 from the shipped weights, batch norm frozen: loss ${loss.map((v) => v.toFixed(3)).join(' ')}; held-out mIoU ${t.evals.map((e) => `${e.miou.toFixed(3)}@${e.step}`).join(' ')}; ${secs.toFixed(1)} s`);
    expect(last, 'mean loss of the last two steps vs the first two').to.be.below(first);
    expect(t.evals.map((e) => e.step), 'the shipped weights with the new head, then every 4 steps').to.deep.equal([0, 4, 8, 12]);
    expect(t.evals[3].miou, 'held-out mIoU rises').to.be.above(t.evals[0].miou);
    await page.screenshot({ path: join(SHOTS, 'train-data.png'), fullPage: true });

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#train-download')]);
    expect(download.suggestedFilename()).to.equal('atrous-mini-myvoc-step12.safetensors');
    const file = join(tmp, download.suggestedFilename());
    await download.saveAs(file);
    const ck = readCheckpoint(new Uint8Array(readFileSync(file)));
    expect(ck.config?.numClasses).to.equal(3);
    expect(ck.inference.classes).to.deep.equal(MERGED_META.classNames);
    expect(JSON.parse(ck.metadata.labelMap), 'the label map the CLI reads from the folder').to.deep.equal(labelMapEntries(openVoc(voc).labelMap));
    const img = join(voc, 'JPEGImages', readdirSync(join(voc, 'JPEGImages')).sort()[0]);
    const r = await atrous('predict', '--weights', file, '--image', img, '--out', join(tmp, 'pred-ft'));
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.contain('round');

    // Start from a checkpoint file: the one just downloaded (3 classes: nothing re-initialised). Its
    // held-out mIoU before the first step is the one the run ended with.
    await page.selectOption('#train-init', 'file');
    await page.setInputFiles('#train-init-file', file);
    await page.fill('#train-steps', '1');
    const started2 = await page.evaluate(() => atrousDemo.train.started);
    await page.click('#train-start');
    await page.waitForFunction((n) => atrousDemo.train.started > n && ['done', 'error'].includes(atrousDemo.train.state), started2, { timeout: 300_000 });
    const t2 = await page.evaluate(() => ({ ...atrousDemo.train }));
    expect(t2.state, await page.textContent('#train-status') ?? '').to.equal('done');
    expect(t2.init).to.match(/^atrous-mini-myvoc-step12\.safetensors: 176 tensors loaded .*; 0 re-initialised; 0 initialised from the seed/);
    expect(t2.evals[0].step).to.equal(0);
    expect(t2.evals[0].miou, 'the checkpoint file, evaluated in the worker before training').to.equal(t.evals[3].miou);

    // Back to the generated shapes from scratch for the tests below.
    await page.uncheck('#train-freeze input[data-freeze="freezeBatchNorm"]');
    await page.check('#train-on-shapes');
    await page.selectOption('#train-init', 'scratch');
  });

  it('gives the GPU memory back: the same pool bytes in the training worker after each of 5 train/stop cycles', async () => {
    await page.fill('#train-steps', '1');
    await page.fill('#train-batch', '1');
    await page.fill('#train-eval-count', '1');
    await page.click('#train-stop');
    await page.waitForFunction(() => atrousDemo.train.state === 'stopped', null, { timeout: 60_000 });
    // The worker's engine (its own device) holds what training allocates; the page's holds the Segment model.
    const mainBase = (await page.evaluate(() => atrousDemo.stats()))!;
    const base = (await page.evaluate(() => atrousDemo.train.workerStats))!;
    const seen: NonNullable<ReturnType<DemoState['stats']>>[] = [];
    const peaks: number[] = [];
    for (let cycle = 1; cycle <= 5; cycle++) {
      await page.click('#train-start');
      await page.waitForFunction(() => ['done', 'error'].includes(atrousDemo.train.state), null, { timeout: 300_000 });
      expect(await page.evaluate(() => atrousDemo.train.state)).to.equal('done');
      peaks.push((await page.evaluate(() => atrousDemo.train.workerStats))!.allocatedBytes);
      await page.click('#train-stop');
      await page.waitForFunction(() => atrousDemo.train.state === 'stopped', null, { timeout: 60_000 });
      seen.push((await page.evaluate(() => atrousDemo.train.workerStats))!);
    }
    expect((await page.evaluate(() => atrousDemo.stats()))!.allocatedBytes, "the page's own engine: training allocates nothing there").to.equal(mainBase.allocatedBytes);
    const mb = (b: number) => (b / 2 ** 20).toFixed(2);
    log(`GPU memory of the training worker: before ${mb(base.liveBytes)} MiB live / ${mb(base.allocatedBytes)} MiB pool; while trained ${peaks.map(mb).join(', ')} MiB; ` +
      `after each stop ${seen.map((s) => `${mb(s.liveBytes)}/${mb(s.allocatedBytes)}`).join(', ')} MiB (live/pool), uniform buffers ${seen.map((s) => s.uniformBuffers).join(', ')}`);
    expect(await page.evaluate(() => atrousDemo.train.started - atrousDemo.train.stopped)).to.equal(0);
    for (const [i, s] of seen.entries()) {
      expect(s.liveBytes, `live bytes in the worker after cycle ${i + 1}`).to.equal(base.liveBytes);
      expect(s.liveBuffers, `live buffers after cycle ${i + 1}`).to.equal(base.liveBuffers);
      expect(s.allocatedBytes, `pool bytes after cycle ${i + 1}`).to.equal(base.allocatedBytes);
      expect(s.uniformBuffers, `uniform buffers after cycle ${i + 1}`).to.equal(seen[0].uniformBuffers);
      expect(peaks[i], `a session holds memory while it lives (cycle ${i + 1})`).to.be.above(base.allocatedBytes);
    }
    expect(await page.textContent('#mem-line')).to.match(/GPU memory held by atrous: [\d.]+ MiB/);
  });

  it("segments Chromium's fake camera frame after frame with the loaded model, showing frames per second and the adapter", async () => {
    await page.click('#tab-segment');
    await page.click('#cam-start');
    await page.waitForFunction(() => atrousDemo.camera.frames >= 4 || atrousDemo.camera.state === 'error', null, { timeout: 300_000 });
    const c = await page.evaluate(() => ({ ...atrousDemo.camera }));
    expect(c.state, c.message).to.equal('running');
    log(`camera: ${c.frames} frames of ${c.width}×${c.height}, ${c.fps.toFixed(1)} frames per second on ${c.adapter}`);
    expect(c.width).to.equal(129);
    expect(c.height).to.be.within(60, 129);
    expect(c.fps).to.be.above(0);
    expect(c.adapter).to.match(/swiftshader/i);
    expect(await page.textContent('#cam-status')).to.match(/frames per second .* on .*swiftshader/i);
    const overlay = await page.evaluate(() => {
      const cv = document.querySelector<HTMLCanvasElement>('#cam-overlay')!;
      const d = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
      let nonzero = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 0) nonzero++;
      return { w: cv.width, h: cv.height, nonzero };
    });
    expect([overlay.w, overlay.h]).to.deep.equal([c.width, c.height]);
    expect(overlay.nonzero, 'the overlay is drawn').to.be.above(0);
    await page.screenshot({ path: join(SHOTS, 'camera.png'), fullPage: true });
    await page.click('#cam-stop');
    await page.waitForFunction(() => atrousDemo.camera.state === 'off', null, { timeout: 60_000 });
    const frames = await page.evaluate(() => atrousDemo.camera.frames);
    await page.waitForTimeout(500);
    expect(await page.evaluate(() => atrousDemo.camera.frames), 'no frame after the stop').to.equal(frames);
    expect(await page.evaluate(() => (document.querySelector('#cam-video') as HTMLVideoElement).srcObject)).to.equal(null);
  });

  it('runs one benchmark row and shows it with the adapter', async () => {
    await page.click('#tab-bench');
    for (const r of ['1', '12', '18']) await page.uncheck(`input[name="bench-rate"][value="${r}"]`);
    for (const p of ['backward-data', 'backward-weight']) await page.uncheck(`input[name="bench-pass"][value="${p}"]`);
    await page.selectOption('#bench-shape', '64x33');
    await page.click('#bench-run');
    await page.waitForFunction(() => atrousDemo.benchRows.length > 0 || atrousDemo.errors.length > 0, null, { timeout: 300_000 });
    await page.waitForFunction(() => !(document.querySelector('#bench-run') as HTMLButtonElement).disabled, null, { timeout: 60_000 });
    const rows = await page.evaluate(() => atrousDemo.benchRows);
    expect(rows).to.have.length(1);
    const row = rows[0];
    log(`bench: conv2d ${row.pass} rate ${row.dilation}, 1×${row.cin}×${row.h}×${row.h}: ${row.ms.toFixed(2)} ms, ${row.gflops.toFixed(2)} GFLOP/s on ${row.adapter}`);
    expect(row).to.include({ pass: 'forward', dilation: 6, cin: 64, h: 33 });
    expect(row.ms).to.be.above(0);
    expect(row.gflops).to.be.above(0).and.below(1e5);
    const cells = await page.locator('#bench-table tbody tr td').allTextContents();
    expect(cells.slice(0, 3)).to.deep.equal(['conv2d', 'forward', '6']);
    expect(cells[6]).to.equal(row.adapter);
    expect(await page.textContent('#bench-status')).to.match(/^Done: 1 row/);
    await page.screenshot({ path: join(SHOTS, 'bench.png'), fullPage: true });
  });

  it('without WebGPU, or without an adapter, says what to enable and does not break', async () => {
    const cases = [
      { name: 'no-webgpu', script: () => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined, configurable: true }), text: /navigator\.gpu[\s\S]*enable-unsafe-webgpu/ },
      { name: 'no-adapter', script: () => Object.defineProperty(GPU.prototype, 'requestAdapter', { value: async () => null, configurable: true }), text: /no GPU adapter[\s\S]*chrome:\/\/gpu[\s\S]*swiftshader/ },
    ];
    for (const c of cases) {
      const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
      try {
        await ctx.addInitScript(c.script);
        const p = await ctx.newPage();
        const errors: string[] = [];
        p.on('pageerror', (e) => errors.push(e.message));
        await p.goto(url);
        await p.waitForFunction(() => atrousDemo.state !== 'starting', null, { timeout: 60_000 });
        expect(await p.evaluate(() => atrousDemo.state)).to.equal(c.name);
        expect(await p.isVisible('#nogpu')).to.equal(true);
        expect(await p.textContent('#nogpu')).to.match(c.text);
        expect(await p.isDisabled('#train-start')).to.equal(true);
        expect(await p.isDisabled('#bench-run')).to.equal(true);
        await p.click('#tab-train');
        expect(await p.textContent('#train-status')).to.contain('Needs WebGPU');
        expect(errors, `page errors (${c.name})`).to.deep.equal([]);
        await p.screenshot({ path: join(SHOTS, `${c.name}.png`), fullPage: true });
      } finally {
        await ctx.close();
      }
    }
  });

  it('wrote the screenshots', () => {
    const shots = readdirSync(SHOTS).filter((f) => f.endsWith('.png')).sort();
    expect(shots).to.include.members(['bench.png', 'camera.png', 'data-error.png', 'no-adapter.png', 'no-webgpu.png', 'segment.png', 'train-data.png', 'train-saved.png', 'train.png']);
  });
});
