// The Segment panel: a checkpoint (the shipped weights, a file, or the Train panel's model) applied
// to an image (file, drop, bundled sample) with the checkpoint's settings or the chosen output
// stride, multi-scale and flip.
import {
  engine, readCheckpoint, modelFromCheckpoint, segmentImage, describeInference, vocPalette, overlayLabels, CHECKPOINT_FORMAT,
  type DeepLabV3, type DeepLabV3Config,
} from '../src/index.js';
import { $, demo, drawRgb, dropZone, enqueue, errText, gpuState, setStatus, updateMemory } from './page.js';

const WEIGHTS_URL = 'weights/mini-shapes.safetensors';
/** Longer image side above which a picture is downscaled before segmentation, when the page's
 * "downscale" choice is on (the default); off, the whole image is segmented at its full size. */
const MAX_SIDE = 513;
let downscale = true;
let imageBlob: { blob: Blob; name: string } | null = null;
const MULTI_SCALES = [0.5, 0.75, 1, 1.25, 1.5, 1.75];
const PALETTE = vocPalette();

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

let segModel: LoadedModel | null = null;
let image: LoadedImage | null = null;

/** The output stride chosen on the page: a number, or the loaded checkpoint's ("as trained"). */
function outputStride(m: LoadedModel | null = segModel): number | undefined {
  const v = $<HTMLSelectElement>('seg-os').value;
  return v === 'auto' ? m?.trainedOutputStride : Number(v);
}

/** Parses and loads checkpoint bytes, replacing the current model; throws a message for people. */
export async function loadModel(bytes: Uint8Array, source: string): Promise<void> {
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
  const from = ck.metadata.dataset ? ` trained on ${ck.metadata.dataset}` : '';
  loaded.model.eval();
  segModel?.model.dispose();
  const trained = ck.inference.outputStride ?? loaded.config.outputStride;
  segModel = { model: loaded.model, config: loaded.config, source, classes: names, trainedOutputStride: trained };
  demo.model = { source, config: loaded.config.name, numClasses: loaded.config.numClasses, classes: names };
  $('seg-os-auto').textContent = `as trained (${trained})`;
  const params = loaded.model.numParameters();
  const step = ck.metadata.step ? `, trained ${ck.metadata.step} steps` : '';
  setStatus('seg-model', `${source}: configuration '${loaded.config.name}'${from}, ${(params / 1e6).toFixed(2)} M parameters${step}. ` +
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
  const scale = downscale ? Math.min(1, MAX_SIDE / Math.max(bmp.width, bmp.height)) : 1;
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
  const resized = img.width !== img.originalWidth
    ? ` (downscaled from ${img.originalWidth}×${img.originalHeight} to ${MAX_SIDE} px on the longer side; untick "Downscale" for the whole image)`
    : downscale ? '' : ' (whole image, full size)';
  setStatus('seg-status', `${img.name}: ${img.width}×${img.height}${resized}, ${m.source}.`);
  demo.lastSegmentation = { image: img.name, width: img.width, height: img.height, labels: seg.labels, ms, outputStride: os, scales, flip };
  demo.segmentations++;
  updateMemory();
}

async function useImage(blob: Blob, name: string): Promise<void> {
  if (!gpuState.ready) return;
  try {
    imageBlob = { blob, name };
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

export async function setupSegment(): Promise<void> {
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
  dropZone('seg-drop', (ev) => {
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
  // Large photos: downscaled to MAX_SIDE (faster) or segmented whole at full size.
  const ds = document.createElement('label');
  const box = document.createElement('input');
  box.type = 'checkbox';
  box.id = 'seg-downscale';
  box.checked = downscale;
  ds.append(box, ` Downscale to ${MAX_SIDE} px on the longer side (off: the whole image at full size, slower)`);
  $('seg-run').before(ds);
  box.addEventListener('change', () => {
    downscale = box.checked;
    if (imageBlob) void useImage(imageBlob.blob, imageBlob.name);
  });
  $('seg-run').addEventListener('click', () => void runSegmentation());
  await loadShippedWeights();
  const first = samplesEl.querySelector<HTMLButtonElement>('button');
  first?.click();
}

/** The loaded model and the output stride chosen for it (the camera segments with them); null before one loaded. */
export function currentModel(): { model: DeepLabV3; classes: string[]; source: string; outputStride: number } | null {
  return segModel ? { model: segModel.model, classes: segModel.classes, source: segModel.source, outputStride: outputStride(segModel)! } : null;
}

/** Segments the current image again (after the model changed), if there is one. */
export async function resegment(): Promise<void> {
  if (image) await runSegmentation();
}
