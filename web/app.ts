// The browser demo: the atrous engine (src/, bundled by scripts/build-web.mjs) on navigator.gpu.
// One module per panel:
//   segment.ts  a checkpoint (weights/mini-shapes.safetensors, a file, or the Train panel's model)
//               applied to an image (file, drop, bundled sample), with output stride, multi-scale, flip;
//   data.ts     your own photos and masks (folder, zip or drop), checked as `atrous data check` does;
//   train.ts    TrainSession (src/train/session.ts): on `shapes` or that data, from scratch, the shipped
//               weights or a checkpoint, live loss and held-out mIoU,
//               pause/resume, checkpoint download, stop (frees the GPU memory);
//   bench.ts    the conv2d microbenchmark of `npm run bench`;
//   camera.ts   the Segment panel's camera (getUserMedia), segmented frame after frame;
// page.ts holds what they share, gpu.ts the WebGPU start. `window.atrousDemo` (page.ts) exposes the
// state that the browser test (test/browser/) checks.
import { demo, errText, setStatus, showPanel } from './page.js';
import { startGpu } from './gpu.js';
import { setupSegment } from './segment.js';
import { setupTrain, updateTrainButtons, offerSavedRun } from './train.js';
import { setupBench } from './bench.js';
import { setupData } from './data.js';
import { setupCamera } from './camera.js';

for (const b of document.querySelectorAll<HTMLButtonElement>('#tabs button')) b.addEventListener('click', () => showPanel(b.dataset.panel!));

async function main(): Promise<void> {
  setupData();
  setupTrain();
  setupBench();
  if (!(await startGpu())) return;
  updateTrainButtons();
  await offerSavedRun();
  await setupSegment();
  setupCamera();
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
