// The browser demo: the atrous engine (src/, bundled by scripts/build-web.mjs) on navigator.gpu.
//   Segment: a checkpoint (weights/mini-shapes.safetensors, a file, or the Train panel's model)
//            applied to an image (file, drop, bundled sample), with output stride, multi-scale, flip.
//   Train:   TrainSession (src/train/session.ts): `mini` on `shapes`, live loss and held-out mIoU,
//            pause/resume, checkpoint download, stop (frees the GPU memory).
//   Bench:   benchConv2d (bench/conv2d.ts), the same microbenchmark as `npm run bench`.
// `window.atrousDemo` exposes the state that the browser test (test/browser/) checks.

import {
  init, engine, readCheckpoint, modelFromCheckpoint, segmentImage, describeInference, vocPalette, overlayLabels,
  TrainSession, SESSION_DEFAULTS, SESSION_OPTIONS, optionSpec, CHECKPOINT_FORMAT, type RecipeOptions, type DeepLabV3, type DeepLabV3Config, type SessionOptions, type StepReport, type EvalReport,
} from '../src/index.js';
import { benchConv2d, asppShapes, type Conv2dPass } from '../bench/conv2d.js';
import type { BenchRow } from '../bench/common.js';

const WEIGHTS_URL = 'weights/mini-shapes.safetensors';
/** Longer image side above which a picture is downscaled before segmentation. */
const MAX_SIDE = 513;
const MULTI_SCALES = [0.5, 0.75, 1, 1.25, 1.5, 1.75];
const PALETTE = vocPalette();

type Stats = ReturnType<ReturnType<typeof engine>['stats']>;

interface LoadedModel {
  model: DeepLabV3;
  config: DeepLabV3Config;
  source: string;
  classes: string[];
  /** The output stride the checkpoint was trained to be used at (the "as trained" choice). */
  trainedOutputStride: number;
}

interface LoadedImage {
  name: string;
  width: number;
  height: number;
  /** Interleaved RGB bytes, width × height × 3. */
  rgb: Uint8Array;
  originalWidth: number;
  originalHeight: number;
}

/** What the page did, for people reading the console and for the browser test. */
const demo = {
  /** 'starting' | 'ready' | 'no-webgpu' | 'no-adapter' | 'device-error' */
  state: 'starting',
  message: '',
  adapter: '',
  model: null as null | { source: string; config: string; numClasses: number; classes: string[] },
  /** Bumped on every finished segmentation (the test waits for a change). */
  segmentations: 0,
  lastSegmentation: null as null | { image: string; width: number; height: number; labels: Uint8Array; ms: number; outputStride: number; scales: number[]; flip: boolean },
  train: {
    state: 'idle' as 'idle' | 'running' | 'paused' | 'done' | 'stopped' | 'error',
    step: 0,
    losses: [] as { step: number; loss: number }[],
    evals: [] as { step: number; miou: number; pixelAccuracy: number }[],
    /** Sessions started and stopped (each stop frees the model and the optimizer state). */
    started: 0,
    stopped: 0,
  },
  benchRows: [] as (BenchRow & { adapter: string })[],
  errors: [] as string[],
  stats: (): Stats | null => (gpuReady ? engine().stats() : null),
};
(globalThis as unknown as { atrousDemo: typeof demo }).atrousDemo = demo;

let gpuReady = false;
let segModel: LoadedModel | null = null;
let image: LoadedImage | null = null;
let session: TrainSession | null = null;
let running: Promise<void> | null = null;
let benchRunning = false;

// ------------------------------------------------------------------------------------ helpers

function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`demo: no element #${id}`);
  return el as T;
}

function setStatus(id: string, text: string, error = false): void {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', error);
  if (error) {
    demo.errors.push(text);
    console.warn(`[atrous demo] ${text}`);
  }
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).replace(/^atrous: /, '');
const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** GPU work of the Segment panel runs one task at a time (loading a model while it segments
 * would dispose it under the forward pass). */
let segQueue: Promise<unknown> = Promise.resolve();
function enqueue<T>(task: () => Promise<T>): Promise<T> {
  const p = segQueue.then(task, task);
  segQueue = p.catch(() => undefined);
  return p;
}

function updateMemory(): void {
  if (!gpuReady) return;
  const s = engine().stats();
  $('mem-line').textContent =
    `GPU memory held by atrous: ${mib(s.liveBytes)} in ${s.liveBuffers} live buffers, ${mib(s.allocatedBytes)} in the pool ` +
    `(${s.allocatedBuffers} buffers), ${s.uniformBuffers} uniform buffers, ${s.pipelines} pipelines`;
}

// ------------------------------------------------------------------------------------ tabs

function showPanel(name: string): void {
  for (const b of document.querySelectorAll<HTMLButtonElement>('#tabs button')) {
    const on = b.dataset.panel === name;
    b.setAttribute('aria-selected', String(on));
    $(`panel-${b.dataset.panel}`).hidden = !on;
  }
}
for (const b of document.querySelectorAll<HTMLButtonElement>('#tabs button')) b.addEventListener('click', () => showPanel(b.dataset.panel!));

// ------------------------------------------------------------------------------------ WebGPU

const ENABLE_HELP =
  'Use Chrome or Edge 113 or newer (Windows, macOS, ChromeOS; Chrome 121+ on Android), Safari 26 or newer, or Firefox 141+ on Windows. ' +
  'On Linux, Chrome and Chromium ship WebGPU switched off: enable <code>chrome://flags/#enable-unsafe-webgpu</code> (and ' +
  '<code>chrome://flags/#enable-vulkan</code>) and restart, or start the browser with <code>--enable-unsafe-webgpu</code>; ' +
  'without a usable GPU, <code>--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader</code> runs WebGPU on the CPU (slowly). ' +
  'In Firefox elsewhere, set <code>dom.webgpu.enabled</code> to true in <code>about:config</code>.';

function noGpu(state: 'no-webgpu' | 'no-adapter' | 'device-error', html: string, plain: string): void {
  demo.state = state;
  demo.message = plain;
  const b = $('nogpu');
  b.innerHTML = html;
  b.hidden = false;
  $('gpu-line').textContent = `WebGPU: ${plain}`;
  // The panels stay visible (they say what they would do) but nothing can start.
  for (const el of document.querySelectorAll<HTMLInputElement | HTMLButtonElement | HTMLSelectElement>('main button, main input, main select')) el.disabled = true;
  setStatus('seg-status', 'Needs WebGPU (see above).');
  setStatus('train-status', 'Needs WebGPU (see above).');
  setStatus('bench-status', 'Needs WebGPU (see above).');
}

async function startGpu(): Promise<boolean> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    if (!window.isSecureContext) {
      noGpu('no-webgpu',
        `<strong>WebGPU needs a secure context.</strong> This page was opened from <code>${location.origin}</code>, which the browser does not trust, so it hides WebGPU. ` +
        'Open it as <code>http://localhost:PORT/</code> on the machine that runs <code>npm run serve</code>, or serve it over https.',
        'not available: this page is not a secure context (open it via http://localhost or https)');
    } else {
      noGpu('no-webgpu',
        `<strong>WebGPU is not available in this browser</strong> (<code>navigator.gpu</code> is undefined), so the model cannot run here. ${ENABLE_HELP}`,
        'not available in this browser (navigator.gpu is undefined): enable WebGPU, e.g. chrome://flags/#enable-unsafe-webgpu');
    }
    return false;
  }
  let adapter: GPUAdapter | null = null;
  try {
    adapter = await gpu.requestAdapter();
  } catch (e) {
    console.warn('requestAdapter failed', e);
  }
  if (!adapter) {
    noGpu('no-adapter',
      '<strong>WebGPU is enabled but the browser offers no GPU adapter</strong> (its GPU may be blocklisted, or no driver fits). ' +
      'Look at <code>chrome://gpu</code>; try enabling <code>chrome://flags/#enable-unsafe-webgpu</code> and <code>chrome://flags/#enable-vulkan</code>, ' +
      'or start the browser with <code>--enable-unsafe-webgpu --use-webgpu-adapter=swiftshader</code> for a software adapter. ' + ENABLE_HELP,
      'no adapter: the browser has WebGPU but offers no GPU adapter (see chrome://gpu; try --use-webgpu-adapter=swiftshader)');
    return false;
  }
  try {
    const e = await init();
    demo.adapter = e.adapterName;
    void e.device.lost.then((info) => {
      if (info.reason === 'destroyed') return;
      gpuReady = false;
      noGpu('device-error', `<strong>The GPU device was lost</strong> (${info.message || 'no reason given'}). Reload the page.`, `device lost: ${info.message}`);
    });
  } catch (e) {
    noGpu('device-error', `<strong>Could not open a WebGPU device:</strong> ${errText(e)}`, `device error: ${errText(e)}`);
    return false;
  }
  gpuReady = true;
  const e = engine();
  $('gpu-line').textContent = `WebGPU adapter: ${e.adapterName}${e.info.architecture && !e.adapterName.includes(e.info.architecture) ? ` (${e.info.architecture})` : ''}` +
    `, max storage binding ${mib(e.limits.maxStorageBufferBindingSize)}, ${e.hasTimestamps ? 'GPU timestamps' : 'no GPU timestamps'}`;
  setInterval(updateMemory, 1000);
  updateMemory();
  return true;
}

// ------------------------------------------------------------------------------------ Segment

/** The output stride chosen on the page: a number, or the loaded checkpoint's ("as trained"). */
function outputStride(m: LoadedModel | null = segModel): number | undefined {
  const v = $<HTMLSelectElement>('seg-os').value;
  return v === 'auto' ? m?.trainedOutputStride : Number(v);
}

/** Parses and loads checkpoint bytes, replacing the current model; throws a message for people. */
async function loadModel(bytes: Uint8Array, source: string): Promise<void> {
  let ck;
  try {
    ck = readCheckpoint(bytes, source);
  } catch (e) {
    throw new Error(`cannot read ${source}: ${errText(e)}`);
  }
  if (!ck.config) {
    const what = ck.metadata.format === 'atrous-sgd'
      ? 'it is optimizer state (optimizer.safetensors), not a model: load model.safetensors from the same checkpoint folder'
      : `it has no atrous model configuration in its metadata (__metadata__.config${ck.metadata.format ? `; format '${ck.metadata.format}'` : ''}). ` +
        `Load a checkpoint written by 'atrous train' or by this page's Train panel (format '${CHECKPOINT_FORMAT}')`;
    throw new Error(`${source} is not a model checkpoint: ${what}`);
  }
  let loaded;
  try {
    const os = $<HTMLSelectElement>('seg-os').value;
    loaded = modelFromCheckpoint(bytes, { source, outputStride: os === 'auto' ? undefined : Number(os) });
  } catch (e) {
    throw new Error(`${source} does not fit its configuration '${ck.config.name}': ${errText(e).replace(`${source}: `, '').replace(/^loadStateDict: /, '')}`);
  }
  const names = loaded.inference.values.classes;
  const from = loaded.inference.sources.classes === 'checkpoint'
    ? (ck.metadata.dataset ? `${ck.metadata.dataset} classes` : 'classes from the checkpoint')
    : loaded.inference.classesNote ?? 'unnamed classes';
  loaded.model.eval();
  segModel?.model.dispose();
  const trained = ck.inference.outputStride ?? loaded.config.outputStride;
  segModel = { model: loaded.model, config: loaded.config, source, classes: names, trainedOutputStride: trained };
  demo.model = { source, config: loaded.config.name, numClasses: loaded.config.numClasses, classes: names };
  $('seg-os-auto').textContent = `as trained (${trained})`;
  const params = loaded.model.numParameters();
  const step = ck.metadata.step ? `, trained ${ck.metadata.step} steps` : '';
  setStatus('seg-model', `${source}: configuration '${loaded.config.name}', ${loaded.config.numClasses} ${from}, ${(params / 1e6).toFixed(2)} M parameters${step}. ` +
    `Settings: ${describeInference(loaded.inference)}.`);
  $<HTMLButtonElement>('seg-run').disabled = !image;
  updateMemory();
}

async function loadShippedWeights(): Promise<void> {
  let res: Response;
  try {
    res = await fetch(WEIGHTS_URL, { cache: 'no-store' });
  } catch (e) {
    setStatus('seg-model', `Could not fetch ${WEIGHTS_URL}: ${errText(e)}. Load a checkpoint file instead.`, true);
    return;
  }
  if (res.status === 404) {
    setStatus('seg-model', `No shipped weights: ${WEIGHTS_URL} is not on this server. Load a checkpoint file, or train a model on the Train panel and press “Use in Segment”.`);
    return;
  }
  if (!res.ok) {
    setStatus('seg-model', `Could not fetch ${WEIGHTS_URL}: HTTP ${res.status} ${res.statusText}.`, true);
    return;
  }
  const bytes = new Uint8Array(await res.arrayBuffer());
  try {
    await enqueue(() => loadModel(bytes, WEIGHTS_URL.split('/').pop()!));
  } catch (e) {
    setStatus('seg-model', errText(e), true);
  }
}

/** Decodes any image the browser can (PNG, JPEG, WebP, GIF, BMP, AVIF) to RGB bytes, upright (the
 * EXIF orientation applied, as `atrous predict` does), with the stored values (no colour-space
 * conversion), downscaled when its longer side exceeds MAX_SIDE. */
async function decodeImage(blob: Blob, name: string): Promise<LoadedImage> {
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(blob, { imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new Error(`'${name}' is not an image this browser can decode${blob.type ? ` (type ${blob.type})` : ''}: use a PNG, JPEG, WebP, GIF or BMP file`);
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(bmp.width, bmp.height));
  const width = Math.max(1, Math.round(bmp.width * scale));
  const height = Math.max(1, Math.round(bmp.height * scale));
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(bmp, 0, 0, width, height);
  const rgba = ctx.getImageData(0, 0, width, height).data;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  const out = { name, width, height, rgb, originalWidth: bmp.width, originalHeight: bmp.height };
  bmp.close();
  return out;
}

function drawRgb(canvasId: string, rgb: Uint8Array, width: number, height: number): void {
  const c = $<HTMLCanvasElement>(canvasId);
  c.width = width;
  c.height = height;
  const img = new ImageData(width, height);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    img.data[i] = rgb[j];
    img.data[i + 1] = rgb[j + 1];
    img.data[i + 2] = rgb[j + 2];
    img.data[i + 3] = 255;
  }
  c.getContext('2d')!.putImageData(img, 0, 0);
}

async function segmentCurrent(): Promise<void> {
  if (!segModel || !image) return;
  const m = segModel;
  const img = image;
  const os = outputStride(m)!;
  const scales = $<HTMLInputElement>('seg-ms').checked ? MULTI_SCALES : [1];
  const flip = $<HTMLInputElement>('seg-flip').checked;
  m.model.setOutputStride(os);
  const hw = img.width * img.height;
  setStatus('seg-status', `Segmenting ${img.name} (${img.width}×${img.height})…`);
  const t0 = performance.now();
  // Normalisation and padding: the checkpoint's (model.inference), as `atrous predict`.
  const seg = await segmentImage(m.model, img.rgb, img.height, img.width, { scales, flip });
  const ms = performance.now() - t0;
  // Overlay: half image, half class colour (as `atrous predict`).
  const counts = new Array<number>(seg.numClasses).fill(0);
  for (let i = 0; i < hw; i++) counts[seg.labels[i]]++;
  drawRgb('seg-overlay', overlayLabels(img.rgb, seg.labels, PALETTE), img.width, img.height);
  const legend = $('seg-legend');
  legend.replaceChildren();
  const order = counts.map((n, k) => [k, n]).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1]);
  for (const [k, n] of order) {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${PALETTE[3 * k]}, ${PALETTE[3 * k + 1]}, ${PALETTE[3 * k + 2]})`;
    li.append(sw, `${m.classes[k] ?? `class ${k}`}: ${((100 * n) / hw).toFixed(1)}%`);
    li.dataset.class = String(k);
    legend.append(li);
  }
  const runs = scales.length * (flip ? 2 : 1);
  $('seg-time').textContent = `Inference: ${ms.toFixed(0)} ms (${runs} forward pass${runs > 1 ? 'es' : ''}, output stride ${os}${flip ? ', flip' : ''}) on ${engine().adapterName}. ` +
    'The first run also compiles the kernels.';
  const resized = img.width !== img.originalWidth ? ` (downscaled from ${img.originalWidth}×${img.originalHeight})` : '';
  setStatus('seg-status', `${img.name}: ${img.width}×${img.height}${resized}, ${m.source}.`);
  demo.lastSegmentation = { image: img.name, width: img.width, height: img.height, labels: seg.labels, ms, outputStride: os, scales, flip };
  demo.segmentations++;
  updateMemory();
}

async function useImage(blob: Blob, name: string): Promise<void> {
  if (!gpuReady) return;
  try {
    image = await decodeImage(blob, name);
  } catch (e) {
    setStatus('seg-status', errText(e), true);
    return;
  }
  drawRgb('seg-input', image.rgb, image.width, image.height);
  $('seg-legend').replaceChildren();
  $('seg-time').textContent = '';
  $<HTMLCanvasElement>('seg-overlay').getContext('2d')!.clearRect(0, 0, image.width, image.height);
  $<HTMLButtonElement>('seg-run').disabled = !segModel;
  if (!segModel) {
    setStatus('seg-status', `${name}: ${image.width}×${image.height}. No model loaded: load a checkpoint, or train one on the Train panel.`);
    return;
  }
  await runSegmentation();
}

async function runSegmentation(): Promise<void> {
  try {
    await enqueue(segmentCurrent);
  } catch (e) {
    setStatus('seg-status', `Segmentation failed: ${errText(e)}`, true);
  }
}

async function setupSegment(): Promise<void> {
  const samplesEl = $('seg-samples');
  try {
    const names = (await (await fetch('samples/index.json')).json()) as string[];
    for (const n of names) {
      const b = document.createElement('button');
      b.textContent = n.replace(/\.[a-z]+$/i, '');
      b.dataset.sample = n;
      b.addEventListener('click', async () => {
        const res = await fetch(`samples/${n}`);
        await useImage(await res.blob(), n);
      });
      samplesEl.append(b);
    }
  } catch (e) {
    samplesEl.textContent = `(could not list the samples: ${errText(e)})`;
  }
  $<HTMLInputElement>('seg-file').addEventListener('change', (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (f) void useImage(f, f.name);
  });
  const drop = $('seg-drop');
  drop.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    const f = ev.dataTransfer?.files?.[0];
    if (f) void useImage(f, f.name);
    else setStatus('seg-status', 'Nothing to segment in what was dropped: drop an image file.', true);
  });
  // A file dropped anywhere else must not navigate away from the page.
  window.addEventListener('dragover', (ev) => ev.preventDefault());
  window.addEventListener('drop', (ev) => ev.preventDefault());
  $<HTMLInputElement>('seg-weights-file').addEventListener('change', async (ev) => {
    const f = (ev.target as HTMLInputElement).files?.[0];
    if (!f) return;
    setStatus('seg-model', `Loading ${f.name}…`);
    try {
      const bytes = new Uint8Array(await f.arrayBuffer());
      await enqueue(() => loadModel(bytes, f.name));
    } catch (e) {
      setStatus('seg-model', errText(e), true);
      return;
    }
    if (image) await runSegmentation();
  });
  for (const id of ['seg-os', 'seg-ms', 'seg-flip']) $(id).addEventListener('change', () => void runSegmentation());
  $('seg-run').addEventListener('click', () => void runSegmentation());
  await loadShippedWeights();
  const first = samplesEl.querySelector<HTMLButtonElement>('button');
  first?.click();
}

// ------------------------------------------------------------------------------------ Train

const trainButtons = ['train-start', 'train-pause', 'train-resume', 'train-stop', 'train-download', 'train-use'] as const;

function updateTrainButtons(): void {
  const s = demo.train.state;
  const has = session !== null;
  const enabled: Record<(typeof trainButtons)[number], boolean> = {
    'train-start': gpuReady && s !== 'running',
    'train-pause': s === 'running',
    'train-resume': has && s === 'paused',
    'train-stop': has && (s === 'running' || s === 'paused' || s === 'done' || s === 'error'),
    'train-download': has && (s === 'paused' || s === 'done'),
    'train-use': has && (s === 'paused' || s === 'done'),
  };
  for (const id of trainButtons) $<HTMLButtonElement>(id).disabled = !enabled[id];
}

/** The Train form's fields: each input's data-option names a recipe option (src/train/options.ts)
 * or a session option, whose type, range and label it is read with. */
function readTrainOptions(): Partial<SessionOptions> {
  const out: Record<string, number> = {};
  for (const el of document.querySelectorAll<HTMLInputElement>('#train-form input[data-option]')) {
    const key = el.dataset.option!;
    const spec = SESSION_OPTIONS.find((o) => o.key === key) ?? optionSpec(key as keyof RecipeOptions);
    const raw = el.value.trim();
    const v = Number(raw);
    if (raw === '' || !Number.isFinite(v) || v < spec.min || (spec.integer && !Number.isInteger(v))) {
      throw new Error(`${spec.label} must be ${spec.integer ? 'an integer' : 'a number'} ≥ ${spec.min}, got '${raw}'`);
    }
    out[key] = v;
  }
  return out as Partial<SessionOptions>;
}

/** The form starts at the session's defaults. */
function fillTrainForm(): void {
  for (const el of document.querySelectorAll<HTMLInputElement>('#train-form input[data-option]')) {
    el.value = String(SESSION_DEFAULTS[el.dataset.option as keyof SessionOptions]);
  }
}

function drawCurve(): void {
  const c = $<HTMLCanvasElement>('train-curve');
  const ctx = c.getContext('2d')!;
  const W = c.width;
  const H = c.height;
  const css = getComputedStyle(document.documentElement);
  const fg = css.getPropertyValue('--fg').trim() || '#222';
  const muted = css.getPropertyValue('--muted').trim() || '#888';
  const accent = css.getPropertyValue('--accent').trim() || '#2f6fb3';
  ctx.clearRect(0, 0, W, H);
  const L = 48;
  const R = 48;
  const T = 14;
  const B = 28;
  const losses = demo.train.losses;
  const evals = demo.train.evals;
  const steps = session?.options.steps ?? Math.max(1, losses.length);
  const maxLoss = Math.max(0.5, ...losses.map((l) => l.loss));
  const x = (s: number) => L + ((W - L - R) * s) / Math.max(1, steps);
  const yl = (v: number) => T + (H - T - B) * (1 - v / maxLoss);
  const ym = (v: number) => T + (H - T - B) * (1 - v);
  ctx.strokeStyle = muted;
  ctx.fillStyle = muted;
  ctx.lineWidth = 1;
  ctx.font = '11px system-ui, sans-serif';
  ctx.strokeRect(L, T, W - L - R, H - T - B);
  ctx.textAlign = 'right';
  for (let i = 0; i <= 4; i++) {
    const v = (maxLoss * i) / 4;
    ctx.fillText(v.toFixed(2), L - 4, yl(v) + 4);
  }
  ctx.textAlign = 'left';
  for (let i = 0; i <= 4; i++) ctx.fillText((i / 4).toFixed(2), W - R + 4, ym(i / 4) + 4);
  ctx.textAlign = 'center';
  const ticks = new Set(Array.from({ length: 6 }, (_, i) => Math.round((steps * i) / 5)));
  for (const s of ticks) ctx.fillText(String(s), x(s), H - B + 14);
  ctx.fillText('step', (W - R + L) / 2, H - 2);
  ctx.save();
  ctx.translate(12, H / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText('training loss', 0, 0);
  ctx.restore();
  ctx.save();
  ctx.translate(W - 8, H / 2);
  ctx.rotate(Math.PI / 2);
  ctx.fillText('held-out mIoU', 0, 0);
  ctx.restore();
  if (losses.length) {
    // Raw loss, faint; its exponential moving average on top.
    ctx.globalAlpha = 0.35;
    ctx.strokeStyle = fg;
    ctx.beginPath();
    losses.forEach((l, i) => (i ? ctx.lineTo(x(l.step), yl(l.loss)) : ctx.moveTo(x(l.step), yl(l.loss))));
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.lineWidth = 2;
    ctx.beginPath();
    // Smoothing over ~1/20 of the run: none for a handful of steps, ~15 steps for 300.
    const alpha = Math.min(1, 20 / steps);
    let ema = losses[0].loss;
    losses.forEach((l, i) => {
      ema = i ? (1 - alpha) * ema + alpha * l.loss : l.loss;
      if (i) ctx.lineTo(x(l.step), yl(ema));
      else ctx.moveTo(x(l.step), yl(ema));
    });
    ctx.stroke();
  }
  ctx.fillStyle = accent;
  ctx.strokeStyle = accent;
  ctx.lineWidth = 1.5;
  if (evals.length > 1) {
    ctx.beginPath();
    evals.forEach((e, i) => (i ? ctx.lineTo(x(e.step), ym(e.miou)) : ctx.moveTo(x(e.step), ym(e.miou))));
    ctx.stroke();
  }
  for (const e of evals) {
    ctx.beginPath();
    ctx.arc(x(e.step), ym(e.miou), 3.5, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function trainLine(r: StepReport): string {
  const last = demo.train.evals[demo.train.evals.length - 1];
  const miou = last ? ` · held-out mIoU ${last.miou.toFixed(3)} (step ${last.step})` : '';
  return `step ${r.step}/${r.steps} · loss ${r.loss.toFixed(4)} · lr ${r.lr.toExponential(2)} · ${r.ms.toFixed(0)} ms/step${miou}`;
}

function onEval(r: EvalReport): void {
  const e = { step: r.step, miou: r.miou, pixelAccuracy: r.pixelAccuracy };
  const list = demo.train.evals;
  if (list.length && list[list.length - 1].step === r.step) list[list.length - 1] = e;
  else list.push(e);
  const row = document.createElement('tr');
  for (const v of [String(r.step), r.miou.toFixed(4), r.pixelAccuracy.toFixed(4), String(r.images), r.seconds.toFixed(1)]) {
    const td = document.createElement('td');
    td.textContent = v;
    row.append(td);
  }
  $('train-evals').querySelector('tbody')!.append(row);
  drawCurve();
}

let lastReport: StepReport | null = null;

function runSession(): void {
  const s = session!;
  demo.train.state = 'running';
  updateTrainButtons();
  setStatus('train-status', `Training${s.step ? ` from step ${s.step}` : ''}… (the first step also compiles the kernels)`);
  running = s
    .run({
      onStep: (r) => {
        lastReport = r;
        demo.train.step = r.step;
        demo.train.losses.push({ step: r.step, loss: r.loss });
        setStatus('train-status', trainLine(r));
        drawCurve();
      },
      onEval,
    })
    .then(() => {
      if (session !== s) return;
      demo.train.state = s.done ? 'done' : 'paused';
      const where = lastReport ? trainLine(lastReport) : `step ${s.step}`;
      setStatus('train-status', s.done ? `Done: ${where}.` : `Paused: ${where}. Resume, download the checkpoint, or stop.`);
    })
    .catch((e) => {
      demo.train.state = 'error';
      setStatus('train-status', `Training failed: ${errText(e)}`, true);
    })
    .finally(() => {
      running = null;
      updateTrainButtons();
      updateMemory();
    });
}

async function stopSession(): Promise<void> {
  const s = session;
  if (!s) return;
  s.pause();
  if (running) await running;
  await s.dispose();
  session = null;
  demo.train.stopped++;
  updateMemory();
}

async function downloadCheckpoint(): Promise<void> {
  const s = session;
  if (!s) return;
  const bytes = await s.checkpoint();
  const name = `atrous-${s.model.config.name}-shapes-step${s.step}.safetensors`;
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  setStatus('train-status', `${$('train-status').textContent} Saved ${name} (${(bytes.length / 2 ** 20).toFixed(1)} MiB; npx atrous predict --weights ${name} --image IMG).`);
}

function setupTrain(): void {
  fillTrainForm();
  $('train-start').addEventListener('click', async () => {
    let opts: Partial<SessionOptions>;
    try {
      opts = readTrainOptions();
    } catch (e) {
      setStatus('train-status', errText(e), true);
      return;
    }
    $<HTMLButtonElement>('train-start').disabled = true;
    await stopSession();
    demo.train.losses = [];
    demo.train.evals = [];
    demo.train.step = 0;
    lastReport = null;
    $('train-evals').querySelector('tbody')!.replaceChildren();
    try {
      session = new TrainSession({ ...SESSION_DEFAULTS, ...opts });
    } catch (e) {
      demo.train.state = 'error';
      setStatus('train-status', `Cannot start: ${errText(e)}`, true);
      updateTrainButtons();
      return;
    }
    demo.train.started++;
    drawCurve();
    runSession();
  });
  $('train-pause').addEventListener('click', () => {
    session?.pause();
    $<HTMLButtonElement>('train-pause').disabled = true;
    setStatus('train-status', `${$('train-status').textContent} Pausing after this step…`);
  });
  $('train-resume').addEventListener('click', () => {
    if (session && !running) runSession();
  });
  $('train-stop').addEventListener('click', async () => {
    for (const id of trainButtons) $<HTMLButtonElement>(id).disabled = true;
    await stopSession();
    demo.train.state = 'stopped';
    const s = engine().stats();
    setStatus('train-status', `Stopped at step ${demo.train.step}; the model and optimizer state are freed (atrous now holds ${mib(s.allocatedBytes)} of GPU memory).`);
    updateTrainButtons();
  });
  $('train-download').addEventListener('click', () => {
    downloadCheckpoint().catch((e) => setStatus('train-status', `Could not save the checkpoint: ${errText(e)}`, true));
  });
  $('train-use').addEventListener('click', async () => {
    const s = session;
    if (!s) return;
    try {
      const bytes = await s.checkpoint();
      await enqueue(() => loadModel(bytes, `the model trained here (step ${s.step})`));
    } catch (e) {
      setStatus('seg-model', errText(e), true);
    }
    showPanel('segment');
    if (image) await runSegmentation();
  });
  drawCurve();
  updateTrainButtons();
}

// ------------------------------------------------------------------------------------ Bench

function setupBench(): void {
  $('bench-run').addEventListener('click', async () => {
    if (benchRunning) return;
    if (demo.train.state === 'running') {
      setStatus('bench-status', 'Pause the training first: the benchmark needs the GPU to itself.', true);
      return;
    }
    const [c, hw] = $<HTMLSelectElement>('bench-shape').value.split('x').map(Number);
    const rates = [...document.querySelectorAll<HTMLInputElement>('input[name="bench-rate"]:checked')].map((i) => Number(i.value));
    const passes = [...document.querySelectorAll<HTMLInputElement>('input[name="bench-pass"]:checked')].map((i) => i.value as Conv2dPass);
    const repeats = Number($<HTMLInputElement>('bench-repeats').value);
    if (!rates.length || !passes.length) {
      setStatus('bench-status', 'Pick at least one rate and one pass.', true);
      return;
    }
    if (!Number.isInteger(repeats) || repeats < 1) {
      setStatus('bench-status', `Repeats must be an integer ≥ 1, got '${$<HTMLInputElement>('bench-repeats').value}'.`, true);
      return;
    }
    benchRunning = true;
    const btn = $<HTMLButtonElement>('bench-run');
    btn.disabled = true;
    const tbody = $('bench-table').querySelector('tbody')!;
    const adapter = engine().adapterName;
    const total = rates.length * passes.length;
    const t0 = performance.now();
    let done = 0;
    try {
      for (const rate of rates) {
        for (const pass of passes) {
          setStatus('bench-status', `Running conv2d ${pass}, rate ${rate} (${done + 1} of ${total})…`);
          const [row] = await benchConv2d(asppShapes({ n: 1, c, sizes: [hw], rates: [rate] }), { passes: [pass], repeats, adapter });
          demo.benchRows.push({ ...row, adapter });
          const tr = document.createElement('tr');
          for (const v of ['conv2d', pass, String(rate), `1×${c}×${hw}×${hw} → ${c}, 3×3`, (row.ms ?? NaN).toFixed(2), (row.gflops ?? NaN).toFixed(2), adapter]) {
            const td = document.createElement('td');
            td.textContent = v;
            tr.append(td);
          }
          tbody.append(tr);
          done++;
        }
      }
      setStatus('bench-status', `Done: ${done} row${done > 1 ? 's' : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s (median of ${repeats} after a warm-up).`);
    } catch (e) {
      setStatus('bench-status', `Benchmark failed: ${errText(e)}`, true);
    } finally {
      const e = engine();
      await e.sync().catch(() => undefined);
      e.pool.trim();
      benchRunning = false;
      btn.disabled = false;
      updateMemory();
    }
  });
}

// ------------------------------------------------------------------------------------ start

async function main(): Promise<void> {
  setupTrain();
  setupBench();
  if (!(await startGpu())) return;
  updateTrainButtons();
  await setupSegment();
  demo.state = 'ready';
}

window.addEventListener('unhandledrejection', (ev) => {
  demo.errors.push(`unhandled: ${errText(ev.reason)}`);
});
main().catch((e) => {
  demo.state = 'device-error';
  demo.message = errText(e);
  setStatus('seg-status', `The demo could not start: ${errText(e)}`, true);
});
