// The Train panel: TrainSession (src/train/session.ts) on `shapes` or on the data brought in
// (web/data.ts) with the recipe of `atrous train` (the form's fields are the options of
// src/train/options.ts, its freezing choices FREEZE_FLAGS), from scratch, the shipped weights or a
// checkpoint file (as `atrous train --init`: the head re-initialised for another class count), live
// loss and held-out mIoU, pause/resume, checkpoint download, "use in Segment", stop (frees the GPU memory).
import {
  SESSION_DEFAULTS, SESSION_OPTIONS, FREEZE_FLAGS, optionSpec, type RecipeOptions, type SessionOptions, type StepReport, type EvalReport,
  type SessionInit,
} from '../src/index.js';
import { WorkerSession, type WorkerStats } from './train-client.js';
import { saveRun, loadRun, deleteRun, type SavedRun } from './store.js';
import { droppedDataset } from './data.js';
import { $, demo, enqueue, errText, gpuState, mib, setStatus, showPanel, updateMemory } from './page.js';
import { loadModel, resegment } from './segment.js';

let session: WorkerSession | null = null;
/** What the current session was started with, for saving it. */
let started: Omit<SavedRun, 'savedAt' | 'state'> | null = null;
let running: Promise<void> | null = null;

const trainButtons = ['train-start', 'train-pause', 'train-resume', 'train-stop', 'train-download', 'train-use'] as const;

export function updateTrainButtons(): void {
  const s = demo.train.state;
  const has = session !== null;
  const enabled: Record<(typeof trainButtons)[number], boolean> = {
    'train-start': gpuState.ready && s !== 'running',
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
  // The freezing choices of `atrous train` (--freeze-backbone, --freeze-batch-norm).
  $('train-freeze').replaceChildren(...FREEZE_FLAGS.map((f) => {
    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.dataset.freeze = f.key;
    box.checked = SESSION_DEFAULTS[f.key];
    label.append(box, ` ${f.label}`);
    return label;
  }));
}

function readFreezing(): Pick<SessionOptions, 'freezeBackbone' | 'freezeBatchNorm'> {
  const out = { freezeBackbone: false, freezeBatchNorm: false };
  for (const box of document.querySelectorAll<HTMLInputElement>('#train-freeze input[data-freeze]')) out[box.dataset.freeze as keyof typeof out] = box.checked;
  return out;
}

const SHIPPED_WEIGHTS = 'weights/mini-shapes.safetensors';

/** The weights to start from, as `atrous train --init`; undefined: from the seed. */
async function readInit(): Promise<SessionInit | undefined> {
  const choice = $<HTMLSelectElement>('train-init').value;
  if (choice === 'scratch') return undefined;
  if (choice === 'shipped') {
    const res = await fetch(SHIPPED_WEIGHTS);
    if (!res.ok) throw new Error(`${SHIPPED_WEIGHTS}: HTTP ${res.status} (the server has no shipped weights)`);
    return { bytes: new Uint8Array(await res.arrayBuffer()), source: SHIPPED_WEIGHTS.split('/').pop()! };
  }
  const f = $<HTMLInputElement>('train-init-file').files?.[0];
  if (!f) throw new Error('Start from a checkpoint file: choose a .safetensors file first');
  return { bytes: new Uint8Array(await f.arrayBuffer()), source: f.name };
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

/** `baseline`: evaluate the weights started from before the first step (fine-tuning: what the
 * file gives on the held-out images, so that the curve shows what training added). */
function runSession(baseline = false): void {
  const s = session!;
  demo.train.state = 'running';
  updateTrainButtons();
  setStatus('train-status', `Training ${s.info.configName} on ${demo.train.dataset} (${s.info.trainLength} images, ${s.info.valLength} held out) in a worker`
    + `${s.step ? ` from step ${s.step}` : `, weights from ${s.info.initReport}`}… (the first step also compiles the kernels)`);
  running = (baseline && s.options.evalEvery > 0 ? s.evaluate().then(onEval) : Promise.resolve())
    .then(() => s.run({
      onStep: (r) => {
        lastReport = r;
        demo.train.step = r.step;
        demo.train.losses.push({ step: r.step, loss: r.loss });
        setStatus('train-status', trainLine(r));
        drawCurve();
      },
      onEval,
      onStats: showWorkerStats,
    }))
    .then(async (r) => {
      if (r.stats) showWorkerStats(r.stats);
      if (session !== s) return;
      const where = lastReport ? trainLine(lastReport) : `step ${s.step}`;
      const saved = await persist(s);
      demo.train.state = s.done ? 'done' : 'paused';
      setStatus('train-status', (s.done ? `Done: ${where}.` : `Paused: ${where}. Resume, download the checkpoint, or stop.`) + saved);
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
  const st = await s.dispose();
  session = null;
  demo.train.stopped++;
  if (st) showWorkerStats(st);
  updateMemory();
}

/** The worker's GPU memory (its own device): in demo.train.workerStats and the memory line. */
function showWorkerStats(st: WorkerStats): void {
  demo.train.workerStats = st;
  $('train-mem').textContent = `Training worker: ${mib(st.liveBytes)} in ${st.liveBuffers} live buffers, ${mib(st.allocatedBytes)} in its pool (${st.allocatedBuffers} buffers), ${st.pipelines} pipelines`;
}

async function downloadCheckpoint(): Promise<void> {
  const s = session;
  if (!s) return;
  const bytes = await s.checkpoint();
  const name = `atrous-${s.info.configName}-${demo.train.dataset.replace(/[^A-Za-z0-9_.-]+/g, '_')}-step${s.step}.safetensors`;
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

/** Saves the session in IndexedDB (store.ts); returns a sentence for the status line. */
async function persist(s: WorkerSession): Promise<string> {
  if (!started) return '';
  try {
    const state = await s.saveState();
    await saveRun({ ...started, savedAt: new Date().toISOString(), state });
    demo.train.persistedStep = state.step;
    return ' Saved in this browser: a reload offers to restore it.';
  } catch (e) {
    return ` (Could not save it in this browser: ${errText(e)}.)`;
  }
}

/** After a reload: offers the run saved in this browser, if any. */
export async function offerSavedRun(): Promise<void> {
  let run: SavedRun | null = null;
  try {
    run = await loadRun();
  } catch (e) {
    setStatus('train-status', `Could not read the saved run: ${errText(e)}`, true);
  }
  demo.train.saved = run ? { step: run.state.step, steps: run.options.steps, dataset: run.dataset, savedAt: run.savedAt } : null;
  $('train-saved').hidden = run === null;
  if (run) {
    $('train-saved-line').textContent = `Saved in this browser on ${new Date(run.savedAt).toLocaleString()}: ${run.options.config} on ${run.dataset}, `
      + `step ${run.state.step}/${run.options.steps} (weights from ${run.init}).`;
  }
}

async function restoreSavedRun(): Promise<void> {
  const run = await loadRun();
  if (!run) return offerSavedRun();
  for (const id of trainButtons) $<HTMLButtonElement>(id).disabled = true;
  await stopSession();
  setStatus('train-status', 'Restoring the saved run in the training worker…');
  session = await WorkerSession.create(run.options, run.data, undefined, run.state);
  started = { options: run.options, dataset: run.dataset, init: run.init, data: run.data };
  demo.train.started++;
  demo.train.dataset = run.dataset;
  demo.train.init = run.init;
  demo.train.adapter = session.info.adapter;
  demo.train.losses = run.state.losses.map((l) => ({ ...l }));
  demo.train.evals = [];
  demo.train.step = run.state.step;
  demo.train.persistedStep = run.state.step;
  $('train-evals').querySelector('tbody')!.replaceChildren();
  for (const e of run.state.evals) onEval(e);
  for (const el of document.querySelectorAll<HTMLInputElement>('#train-form input[data-option]')) {
    el.value = String(run.options[el.dataset.option as keyof SessionOptions]);
  }
  demo.train.state = session.done ? 'done' : 'paused';
  setStatus('train-status', `Restored: ${run.options.config} on ${run.dataset} at step ${run.state.step}/${run.options.steps}. `
    + (session.done ? 'Download the checkpoint or use it in Segment.' : 'Resume continues it exactly where it was saved.'));
  $('train-saved').hidden = true;
  drawCurve();
  updateTrainButtons();
}

/** Start and Restore each create a session in the worker: one at a time, or a double click (or
 * Restore during Start) would make two, and the first would never be freed. */
let creating = false;
async function oneCreateAtATime(create: () => Promise<void>): Promise<void> {
  if (creating) return;
  creating = true;
  $<HTMLButtonElement>('train-restore').disabled = true;
  try {
    await create();
  } finally {
    creating = false;
    $<HTMLButtonElement>('train-restore').disabled = false;
  }
}

export function setupTrain(): void {
  $('train-restore').addEventListener('click', () => {
    void oneCreateAtATime(() => restoreSavedRun().catch((e) => {
      demo.train.state = 'error';
      setStatus('train-status', `Could not restore the saved run: ${errText(e)}`, true);
      updateTrainButtons();
    }));
  });
  $('train-discard').addEventListener('click', async () => {
    await deleteRun();
    await offerSavedRun();
  });
  fillTrainForm();
  $('train-start').addEventListener('click', () => void oneCreateAtATime(startRun));
  async function startRun(): Promise<void> {
    let opts: Partial<SessionOptions>;
    try {
      opts = readTrainOptions();
    } catch (e) {
      setStatus('train-status', errText(e), true);
      return;
    }
    const dropped = $<HTMLInputElement>('train-on-data').checked ? droppedDataset() : null;
    let init: SessionInit | undefined;
    $<HTMLButtonElement>('train-start').disabled = true;
    try {
      init = await readInit();
    } catch (e) {
      setStatus('train-status', errText(e), true);
      updateTrainButtons();
      return;
    }
    await stopSession();
    demo.train.losses = [];
    demo.train.evals = [];
    demo.train.step = 0;
    lastReport = null;
    $('train-evals').querySelector('tbody')!.replaceChildren();
    try {
      setStatus('train-status', 'Starting the training worker…');
      const options = { ...SESSION_DEFAULTS, ...opts, ...readFreezing(), dataset: dropped ? 'given' as const : 'shapes' as const };
      const data = dropped ? { entries: dropped.entries, heldOutEvery: dropped.heldOutEvery } : null;
      session = await WorkerSession.create(options, data, init);
      started = { options: session.options, dataset: dropped ? (dropped.root || 'your data') : 'shapes', init: session.info.initReport, data };
      demo.train.persistedStep = 0;
      $('train-saved').hidden = true;
      demo.train.dataset = dropped ? (dropped.root || 'your data') : 'shapes';
      demo.train.init = session.info.initReport;
      demo.train.adapter = session.info.adapter;
    } catch (e) {
      demo.train.state = 'error';
      setStatus('train-status', `Cannot start: ${errText(e)}`, true);
      updateTrainButtons();
      return;
    }
    demo.train.started++;
    drawCurve();
    runSession(init !== undefined);
  }
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
    const st = demo.train.workerStats;
    setStatus('train-status', `Stopped at step ${demo.train.step}; the model and optimizer state are freed${st ? ` (the training worker now holds ${mib(st.allocatedBytes)} of GPU memory)` : ''}.`);
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
    await resegment();
  });
  $('train-init').addEventListener('change', () => {
    if ($<HTMLSelectElement>('train-init').value === 'file') $('train-init-file').click();
  });
  drawCurve();
  updateTrainButtons();
}
