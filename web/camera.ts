// The Segment panel's camera: getUserMedia frames, scaled to the chosen size, segmented one after
// the other with the loaded model (the Segment panel's queue, so a model change waits for the
// frame in progress), drawn as an overlay with the frames per second and the adapter.
import { engine, segmentImage, overlayLabels, rgbaToRgb, vocPalette } from '../src/index.js';
import { $, demo, drawRgb, enqueue, errText, setStatus } from './page.js';
import { currentModel } from './segment.js';

const PALETTE = vocPalette();
let stream: MediaStream | null = null;
let loop: Promise<void> | null = null;

function frameRgb(video: HTMLVideoElement, side: number): { rgb: Uint8Array; width: number; height: number } {
  const scale = Math.min(1, side / Math.max(video.videoWidth, video.videoHeight));
  const width = Math.max(1, Math.round(video.videoWidth * scale));
  const height = Math.max(1, Math.round(video.videoHeight * scale));
  const c = new OffscreenCanvas(width, height);
  const ctx = c.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(video, 0, 0, width, height);
  return { rgb: rgbaToRgb(ctx.getImageData(0, 0, width, height).data), width, height };
}

async function run(video: HTMLVideoElement): Promise<void> {
  const times: number[] = [];
  while (stream) {
    const m = currentModel();
    if (!m) {
      setStatus('cam-status', 'No model loaded: load a checkpoint above, or train one on the Train panel.');
      await new Promise((r) => setTimeout(r, 500));
      continue;
    }
    const side = Number($<HTMLSelectElement>('cam-size').value);
    const f = frameRgb(video, side);
    const t0 = performance.now();
    // The model is looked up again inside the queued task: a model load queued before this frame
    // may have replaced (and freed) the one seen above.
    const seg = await enqueue(async () => {
      const cur = currentModel();
      if (!cur) return null;
      cur.model.setOutputStride(cur.outputStride);
      return segmentImage(cur.model, f.rgb, f.height, f.width, {});
    });
    if (!stream) break;
    if (!seg) continue;
    drawRgb('cam-overlay', overlayLabels(f.rgb, seg.labels, PALETTE), f.width, f.height);
    const now = performance.now();
    times.push(now);
    while (times.length > 1 && now - times[0] > 1000) times.shift();
    const fps = times.length > 1 ? (1000 * (times.length - 1)) / (now - times[0]) : 1000 / (now - t0);
    demo.camera = { ...demo.camera, state: 'running', frames: demo.camera.frames + 1, fps, width: f.width, height: f.height, adapter: engine().adapterName };
    setStatus('cam-status', `${f.width}×${f.height} frames from the camera: ${fps.toFixed(1)} frames per second (${(now - t0).toFixed(0)} ms this frame), `
      + `${m.source}, output stride ${m.outputStride}, on ${engine().adapterName}.`);
    // Let the page draw between frames.
    await new Promise((r) => requestAnimationFrame(r));
  }
}

async function start(): Promise<void> {
  $<HTMLButtonElement>('cam-start').disabled = true;
  demo.camera = { state: 'starting', frames: 0, fps: 0, width: 0, height: 0, adapter: '', message: '' };
  try {
    if (!navigator.mediaDevices?.getUserMedia) throw new Error('this browser offers no camera access here (navigator.mediaDevices is missing: a secure context is needed)');
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
  } catch (e) {
    demo.camera = { ...demo.camera, state: 'error', message: errText(e) };
    setStatus('cam-status', `The camera did not start: ${errText(e)}`, true);
    $<HTMLButtonElement>('cam-start').disabled = false;
    return;
  }
  const video = $<HTMLVideoElement>('cam-video');
  video.srcObject = stream;
  $<HTMLButtonElement>('cam-stop').disabled = false;
  try {
    await video.play();
  } catch (e) {
    // The stream is open: release it, or the camera stays on with no way to stop it.
    await stop();
    setStatus('cam-status', `The camera's video could not play: ${errText(e)}`, true);
    return;
  }
  loop = run(video).catch((e) => {
    demo.camera = { ...demo.camera, state: 'error', message: errText(e) };
    setStatus('cam-status', `Camera segmentation failed: ${errText(e)}`, true);
    void stop();
  });
}

async function stop(): Promise<void> {
  const s = stream;
  stream = null;
  for (const t of s?.getTracks() ?? []) t.stop();
  if (loop) await loop;
  loop = null;
  $<HTMLVideoElement>('cam-video').srcObject = null;
  if (demo.camera.state !== 'error') demo.camera = { ...demo.camera, state: 'off' };
  $<HTMLButtonElement>('cam-start').disabled = false;
  $<HTMLButtonElement>('cam-stop').disabled = true;
  setStatus('cam-status', `Camera stopped after ${demo.camera.frames} frames (${demo.camera.fps.toFixed(1)} frames per second at the end).`);
}

export function setupCamera(): void {
  $('cam-start').addEventListener('click', () => void start());
  $('cam-stop').addEventListener('click', () => void stop());
}
