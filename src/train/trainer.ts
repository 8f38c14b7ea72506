// The training loop of DeepLabv3 §4.1: SGD with momentum and weight decay, poly learning rate
// (power 0.9), cross entropy ignoring 255 on logits upsampled to the crop (the model's forward
// already returns logits at the input size, so labels are never downsampled).
//
// The GPU is kept busy: each step is only recorded (inside tidy) and submitted, the loss is copied
// into slot j of a small GPU buffer, and that buffer is read back once every `logEvery` steps (a
// read waits for the GPU). Every step's loss is therefore still known exactly, so a NaN or Inf is
// reported with its step, and it is checked before any checkpoint is written: the last complete
// checkpoint on disk is always one taken before training diverged.
//
// A new run starts from the seed or, with options.init, from a weights file (init-weights.ts:
// what loads, what is re-initialised); run.json records the file, its sha256 and what was loaded.
//
// Resume: the data loader is a pure function of (seed, step) and dropout masks of (seed, call
// count), so a checkpoint holds the weights and BN statistics, the momentum buffers, the step and
// the dropout call counts; a resumed run then replays exactly the loss values of an uninterrupted
// one on the same adapter.

import { engine } from '../gpu/engine.js';
import { empty } from '../tensor.js';
import { keep } from '../scope.js';
import { SGD } from '../optim/sgd.js';
import { DataLoader } from '../data/loader.js';
import { openDataset } from '../data/index.js';
import type { Batch, Dataset } from '../data/types.js';
import { DeepLabV3 } from '../nn/deeplabv3.js';
import { Dropout } from '../nn/layers.js';
import type { HostTensor } from '../nn/module.js';
import { readCheckpoint, saveCheckpoint, stateDictToSafetensors } from '../io/checkpoint.js';
import { trainedInference, checkTrainOptions, stageAt, runStages, type TrainOptions, type StageOptions } from './options.js';
import { existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { RunDir, writeFileAtomic, RUN_FILE } from './rundir.js';
import { applyInit, planInit, type InitPlan, type InitReport } from './init-weights.js';
import type { DeepLabV3Config } from '../nn/configs.js';
import type { Checkpoint } from '../io/checkpoint.js';
import { recordTrainStep } from './step.js';
import { precompileTrainStep } from './precompile.js';

export const RUN_FORMAT = 'atrous-run';

export interface RunInfo {
  format: typeof RUN_FORMAT;
  created: string;
  options: TrainOptions;
  /** The weights the run started from (options.init), when it did not start from the seed. */
  init?: InitRecord;
}

/** What run.json records of an init file: its name, its sha256 (hex) and what was loaded. */
export interface InitRecord {
  file: string;
  sha256: string;
  report: InitReport;
}

/** An init file read and checked against a configuration: its record and what to load. */
export interface InitFile {
  record: InitRecord;
  plan: InitPlan;
}

/** Reads an init file (`--init`): its checkpoint and sha256. Throws an Error naming the file when
 * it is missing or no safetensors file. */
export function readInitFile(path: string): { checkpoint: Checkpoint; sha256: string } {
  if (!existsSync(path)) throw new Error(`${path}: no such file (the weights to start from, --init)`);
  const bytes = readFileSync(path);
  return { checkpoint: readCheckpoint(bytes, path), sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** Checks an init file against the run's model configuration (nothing is written; no GPU).
 * Throws an Error naming the file and the first tensor that does not fit. */
export function checkInitFile(path: string, config: DeepLabV3Config, read = readInitFile(path)): InitFile {
  const model = new DeepLabV3(config);
  const plan = planInit(read.checkpoint, model, path);
  return { record: { file: path, sha256: read.sha256, report: plan.report }, plan };
}

/** One report per read-back: the latest step and the rates since the previous report. */
export interface ProgressInfo {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  imagesPerSecond: number;
  secondsPerStep: number;
  /** Seconds left at the current rate; with stages, to the end of the current stage. */
  etaSeconds: number;
  /** The current stage (1-based) and the number of stages, when the run has more than one. */
  stage?: { index: number; count: number };
}

export interface TrainHooks {
  onProgress?: (p: ProgressInfo) => void;
  onCheckpoint?: (step: number, dir: string) => void;
  /** A later stage begins (its index and settings). */
  onStage?: (index: number, stage: Required<StageOptions>) => void;
  /** Polled after every step: true stops the run after saving a checkpoint (Ctrl-C). */
  shouldStop?: () => boolean;
  /** Everything is loaded and checked; the first step comes next (a resume's changed options are saved here). */
  onReady?: () => void;
}

export interface TrainResult {
  run: RunDir;
  /** Steps completed (equal to options.steps unless stopped). */
  step: number;
  stopped: boolean;
  /** Loss of every step run in this call, in order. */
  losses: number[];
  seconds: number;
  imagesPerSecond: number;
}

interface TrainState {
  step: number;
  seed: number;
  steps: number;
  /** Training seconds of the run so far (all sessions). */
  elapsed: number;
  /** Calls of each Dropout layer (its mask stream position), by module name. */
  dropoutCalls: Record<string, number>;
}

export class TrainingError extends Error {}

function dropoutCalls(model: DeepLabV3): Record<string, number> {
  const out: Record<string, number> = {};
  // Dropout's mask counter is part of the RNG state a resume must restore.
  for (const [name, m] of model.namedModules()) if (m instanceof Dropout) out[name] = m.calls;
  return out;
}

function openTrainDataset(o: TrainOptions): Dataset {
  const ds = openDataset(o.dataset, { split: 'train', seed: o.dataSeed, length: o.dataLength });
  if (ds.numClasses !== o.config.numClasses) {
    throw new Error(`train: model config '${o.config.name}' predicts ${o.config.numClasses} classes but ${ds.name} has ${ds.numClasses}`);
  }
  return ds;
}

/**
 * Trains into `run` (created with RunDir.create and a RunInfo) from step 0, or from its latest
 * checkpoint with resume: true. Returns when options.steps are done or shouldStop() said so.
 */
export async function train(run: RunDir, hooks: TrainHooks = {}, opts: { resume?: boolean; options?: TrainOptions } = {}): Promise<TrainResult> {
  const info = run.readRun<RunInfo>();
  if (info.format !== RUN_FORMAT) throw new Error(`${run.file('run.json')}: not an atrous run (format ${JSON.stringify(info.format)})`);
  const o = opts.options ?? info.options;
  checkTrainOptions(o);
  const ds = openTrainDataset(o);

  const model = new DeepLabV3(o.config);
  const opt = { current: null as SGD | null };
  let state: TrainState = { step: 0, seed: o.seed, steps: o.steps, elapsed: 0, dropoutCalls: {} };
  const latest = opts.resume ? run.latest() : null;
  try {
    if (latest) {
      const sfile = run.latestFile('state.json');
      try {
        state = JSON.parse(readFileSync(sfile, 'utf8')) as TrainState;
      } catch (e) {
        throw new Error(`${sfile}: cannot read the training state: ${(e as Error).message}`);
      }
      run.checkState(state, latest, o.seed, sfile);
      const mfile = run.latestFile('model.safetensors');
      const ck = readCheckpoint(readFileSync(mfile), mfile);
      if (ck.metadata.step !== undefined && ck.metadata.step !== String(latest.step)) throw new Error(`${mfile}: __metadata__.step is ${JSON.stringify(ck.metadata.step)} but ${run.file('latest.json')} says ${latest.step}`);
      try {
        model.loadStateDict(ck.state);
      } catch (e) {
        throw new Error(`${mfile}: ${(e as Error).message.replace(/^atrous: /, '')}`);
      }
    } else if (o.init !== undefined) {
      // A new run from a weights file: the file must be the one checked when the run was created.
      const init = checkInitFile(o.init, o.config);
      if (info.init && info.init.sha256 !== init.record.sha256) {
        throw new Error(`${o.init}: changed since the run was created in ${run.path} (sha256 ${init.record.sha256.slice(0, 12)}…, run.json has ${info.init.sha256.slice(0, 12)}…)`);
      }
      if (!info.init) writeFileAtomic(run.file(RUN_FILE), `${JSON.stringify({ ...info, init: init.record }, null, 2)}\n`);
      applyInit(model, init.plan, o.seed);
    } else model.materialize(o.seed);
    model.setDropoutSeed(o.seed);
    for (const [name, m] of model.namedModules()) if (m instanceof Dropout) m.calls = state.dropoutCalls[name] ?? 0;
    model.train();
    // Two parameter groups: the head (classifier.*, aux_classifier.*) trains at lr × headLrMult.
    // Every parameter is in them; a frozen one has no gradient, so SGD skips it (no weight decay).
    const named = model.namedParameters();
    const isHead = (n: string) => n.startsWith('classifier.') || n.startsWith('aux_classifier.');
    const sgd = new SGD([
      { params: named.filter(([n]) => !isHead(n)).map(([, p]) => p) },
      { params: named.filter(([n]) => isHead(n)).map(([, p]) => p), lrMult: runStages(o)[0].headLrMult },
    ], { lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay });
    opt.current = sgd;
    if (latest && o.momentum > 0) {
      const ofile = run.latestFile('optimizer.safetensors');
      const ock = readCheckpoint(readFileSync(ofile), ofile);
      if (ock.metadata.step !== undefined && ock.metadata.step !== String(latest.step)) throw new Error(`${ofile}: __metadata__.step is ${JSON.stringify(ock.metadata.step)} but ${run.file('latest.json')} says ${latest.step}`);
      const named = new Set([...model.namedParameters()].map(([n]) => n));
      for (const k of ock.state.keys()) if (!named.has(k)) throw new Error(`${ofile}: momentum buffer '${k}' names no parameter of the model`);
      for (const [name, p] of model.namedParameters()) {
        const h = ock.state.get(name);
        if (!h || !p.requiresGrad) continue;
        if (h.data.length !== p.size) throw new Error(`${ofile}: momentum buffer '${name}' has ${h.data.length} values, the parameter ${p.size}`);
        if (!(h.data instanceof Float32Array) || !h.data.every(Number.isFinite)) throw new Error(`${ofile}: momentum buffer '${name}' holds ${h.data instanceof Float32Array ? 'NaN or Inf values' : 'integers'}; a momentum buffer is finite floats`);
        sgd.setMomentumBuffer(p, h.data as Float32Array);
      }
    }
    if (opts.resume) run.truncateMetrics(state.step);
    hooks.onReady?.();
    return await loop(run, o, ds, model, sgd, state, hooks);
  } finally {
    opt.current?.dispose();
    model.dispose();
  }
}

async function loop(run: RunDir, o: TrainOptions, ds: Dataset, model: DeepLabV3, opt: SGD, state: TrainState, hooks: TrainHooks): Promise<TrainResult> {
  const e = engine();
  const start = state.step;
  const accum = o.accum ?? 1;
  // The loader counts batches: step s uses batches s·accum .. s·accum + accum − 1.
  const loader = new DataLoader(ds, {
    batchSize: o.batch, seed: o.seed, augment: { crop: o.crop, scaleMin: o.scaleMin, scaleMax: o.scaleMax },
    startStep: start * accum, steps: o.steps * accum, prefetch: 2 * accum,
  });
  const window = Math.max(1, o.logEvery);
  const lossBuf = keep(empty([window * accum]));
  const losses: number[] = [];
  const pending: { step: number; lr: number }[] = [];
  let lastGood = run.latest()?.step ?? null;
  let step = start;
  let stopped = false;
  const t0 = performance.now();
  let tWindow = t0;
  let stepsWindow = 0;

  // Reads the losses of the pending steps, checks them, appends metrics, reports progress.
  const drain = async () => {
    if (pending.length === 0) return;
    const micro = (await lossBuf.data(pending.length * accum)) as Float32Array;
    // A step's loss is the mean of its batches' (exactly the value itself without accumulation).
    const values = accum === 1 ? micro : Float32Array.from({ length: pending.length }, (_, j) => {
      let sum = 0;
      for (let k = 0; k < accum; k++) sum += micro[j * accum + k];
      return sum / accum;
    });
    const now = performance.now();
    const records: object[] = [];
    let bad: { step: number; loss: number } | null = null;
    for (let j = 0; j < pending.length; j++) {
      const v = values[j];
      if (!Number.isFinite(v)) {
        bad = { step: pending[j].step, loss: v };
        break;
      }
      losses.push(v);
      records.push({ step: pending[j].step, loss: v, lr: pending[j].lr, time: +(state.elapsed + (now - t0) / 1000).toFixed(3) });
    }
    run.appendMetrics(records);
    if (bad) {
      const keepMsg = lastGood === null ? 'no checkpoint was written before it' : `the last good checkpoint (step ${lastGood}) is kept in ${run.path}`;
      throw new TrainingError(`train: the loss became ${bad.loss} at step ${bad.step} (training diverged: lower --lr?); ${keepMsg}`);
    }
    const last = pending[pending.length - 1];
    const dt = (now - tWindow) / 1000;
    const sps = dt / Math.max(1, stepsWindow);
    // With stages, the ETA runs to the end of the current stage: a later stage's step time (another
    // output stride) is not known yet.
    const at = stageAt(o, last.step - 1); // last.step counts steps done: its last one is index step - 1
    const nStages = o.stages?.length ?? 1;
    const stageEnd = nStages > 1 ? at.start + at.stage.steps : o.steps;
    hooks.onProgress?.({
      step: last.step, steps: o.steps, loss: values[pending.length - 1], lr: last.lr,
      imagesPerSecond: (stepsWindow * o.batch * accum) / Math.max(dt, 1e-9), secondsPerStep: sps, etaSeconds: sps * Math.max(0, stageEnd - last.step),
      ...(nStages > 1 ? { stage: { index: at.index + 1, count: nStages } } : {}),
    });
    tWindow = now;
    stepsWindow = 0;
    pending.length = 0;
  };

  const checkpoint = async () => {
    await drain();
    const st: TrainState = { step, seed: o.seed, steps: o.steps, elapsed: state.elapsed + (performance.now() - t0) / 1000, dropoutCalls: dropoutCalls(model) };
    const optState = new Map<string, HostTensor>();
    for (const [name, p] of model.namedParameters()) {
      const b = opt.momentumBuffer(p);
      if (b) optState.set(name, { shape: [...p.shape], data: await b.float32() });
    }
    // How these weights are to be used: the current stage's output stride, the loader's normalisation.
    model.inference = trainedInference(model, ds, o.crop);
    const dir = run.writeCheckpoint(step, {
      'model.safetensors': await saveCheckpoint(model, { step: String(step), seed: String(o.seed), dataset: ds.name }),
      'optimizer.safetensors': stateDictToSafetensors(optState, { format: 'atrous-sgd', momentum: String(o.momentum), step: String(step) }),
      'state.json': `${JSON.stringify(st, null, 2)}\n`,
    });
    lastGood = step;
    hooks.onCheckpoint?.(step, dir);
  };

  try {
    let stageIndex = -1;
    let micro: Batch[] = [];
    for await (const b of loader) {
      micro.push(b);
      if (micro.length < accum) continue;
      const at = stageAt(o, step);
      if (at.index !== stageIndex) {
        // A new stage (or the first step of this session): its output stride, what is frozen
        // (backbone, batch norm) and the head's lr multiplier, then every pipeline of the step compiled before it runs, asynchronously (the loader
        // keeps preparing batches meanwhile).
        const st = at.stage;
        if (stageIndex >= 0 || at.index > 0 || st.outputStride !== model.outputStride || st.freezeBatchNorm || st.freezeBackbone || st.headLrMult !== 1) {
          await drain();
          model.setOutputStride(st.outputStride);
          model.setFrozen({ backbone: st.freezeBackbone, batchNorm: st.freezeBatchNorm });
          opt.paramGroups[1].lrMult = st.headLrMult;
          if (stageIndex >= 0) hooks.onStage?.(at.index, at.stage);
        }
        stageIndex = at.index;
        await precompileTrainStep(model, opt, o.batch, o.crop, o.crop);
      }
      const lr = at.lr;
      opt.lr = lr;
      const slot = pending.length;
      recordTrainStep(model, opt, micro, lossBuf, slot);
      micro = [];
      // Submit now so the GPU works while the loader prepares the next batch.
      e.flush();
      step++;
      stepsWindow++;
      pending.push({ step, lr });
      stopped = hooks.shouldStop?.() ?? false;
      if (pending.length === window || step === o.steps || stopped || step % o.checkpointEvery === 0) await drain();
      if (step % o.checkpointEvery === 0 || step === o.steps || stopped) await checkpoint();
      if (stopped) break;
    }
    await drain();
  } finally {
    lossBuf.dispose();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { run, step, stopped, losses, seconds, imagesPerSecond: ((step - start) * o.batch * accum) / Math.max(seconds, 1e-9) };
}

/** A one-line progress bar (terminal) or a plain log line (pipes and files). */
export function formatProgress(p: ProgressInfo, tty: boolean): string {
  const eta = fmtDuration(p.etaSeconds);
  const stage = p.stage ? `stage ${p.stage.index}/${p.stage.count}  ` : '';
  const etaLabel = p.stage && p.stage.index < p.stage.count ? 'stage ETA' : 'ETA';
  const fields = `step ${p.step}/${p.steps}  ${stage}loss ${p.loss.toFixed(4)}  lr ${p.lr.toExponential(2)}  ${p.imagesPerSecond.toFixed(1)} img/s  ${p.secondsPerStep.toFixed(2)} s/step  ${etaLabel} ${eta}`;
  if (!tty) return fields;
  const width = 24;
  const filled = Math.round((width * p.step) / p.steps);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${fields}`;
}

export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s - m * 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
