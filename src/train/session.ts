// An in-memory training session: DeepLabv3 trained on an embedded dataset or on a dataset the caller
// opened (the page: a dropped folder, src/data/voc-core.ts) with the recipe of
// trainer.ts (SGD with momentum and weight decay, poly learning rate, random scale/crop/flip), but
// with no run directory: it can be paused and resumed at any step, evaluated on the held-out split
// and saved as checkpoint bytes. Pure TypeScript, no Node built-ins: the browser demo trains with it.
//
// GPU memory: the model, the momentum buffers and a one-float loss buffer live until dispose(),
// which frees them, waits for the GPU and gives the pool's free buffers back to the driver, so
// repeated sessions do not accumulate memory.

import { engine } from '../gpu/engine.js';
import { empty, type Tensor } from '../tensor.js';
import { keep } from '../scope.js';
import { SGD } from '../optim/sgd.js';
import { polyLR } from '../optim/schedule.js';
import { DataLoader } from '../data/loader.js';
import { ShapesDataset } from '../data/shapes.js';
import type { Batch, Dataset } from '../data/types.js';
import { DeepLabV3 } from '../nn/deeplabv3.js';
import { modelConfig } from '../nn/configs.js';
import { readCheckpoint, saveCheckpoint, stateDictToSafetensors } from '../io/checkpoint.js';
import { Dropout } from '../nn/layers.js';
import type { HostTensor } from '../nn/module.js';
import { applyInit, describeInitReport, planInit } from './init-weights.js';
import { FREEZE_FLAGS } from './options.js';
import { evaluate, type EvaluateResult } from './evaluate.js';
import { recordTrainStep } from './step.js';
import { trainedInference, checkRecipeOptions, TRAIN_DEFAULTS, type RecipeOptions } from './options.js';

/** The recipe options a session takes (their types, ranges and meaning: src/train/options.ts). */
export const SESSION_RECIPE_KEYS = ['steps', 'batch', 'crop', 'lr', 'momentum', 'weightDecay', 'power', 'scaleMin', 'scaleMax', 'seed', 'dataSeed', 'headLrMult'] as const;

export interface SessionOptions extends Pick<RecipeOptions, (typeof SESSION_RECIPE_KEYS)[number]> {
  /** Model configuration name (default 'mini'); numClasses follows the dataset. */
  config: string;
  /** 'shapes' (embedded), or 'given': the train and held-out datasets passed to the constructor. */
  dataset: 'shapes' | 'given';
  /** What trains, as `atrous train --freeze-backbone / --freeze-batch-norm` (src/train/options.ts). */
  freezeBackbone: boolean;
  freezeBatchNorm: boolean;
  /** Evaluate on the held-out split every N steps (0: never automatically). */
  evalEvery: number;
  /** Held-out images per evaluation. */
  evalCount: number;
}

/** The session's own options, beside the recipe's: the page's form reads them with these specs. */
export const SESSION_OPTIONS: readonly { key: 'evalEvery' | 'evalCount'; integer: true; min: number; label: string }[] = [
  { key: 'evalEvery', integer: true, min: 0, label: 'Evaluate every' },
  { key: 'evalCount', integer: true, min: 1, label: 'Held-out images' },
];

/** The page's defaults: a shorter run than `atrous train`'s, on smaller batches. */
export const SESSION_DEFAULTS: SessionOptions = {
  ...Object.fromEntries(SESSION_RECIPE_KEYS.map((k) => [k, TRAIN_DEFAULTS[k]])) as Pick<RecipeOptions, (typeof SESSION_RECIPE_KEYS)[number]>,
  config: 'mini', dataset: 'shapes', steps: 300, batch: 4, evalEvery: 50, evalCount: 16, freezeBackbone: false, freezeBatchNorm: false,
};

/** Datasets a session trains and evaluates on (options.dataset 'given'). */
export interface SessionData {
  train: Dataset;
  val: Dataset;
  /** The dataset's label map ({"stored value": class index}), recorded in the checkpoint's metadata. */
  labelMap?: Record<string, number> | null;
}

/** Everything a session needs to continue exactly where it was saved (saveState()): the model,
 * the momentum buffers, the step and dropout's mask counters; the losses and evaluations so far. */
export interface SessionState {
  step: number;
  model: Uint8Array;
  optimizer: Uint8Array;
  dropoutCalls: Record<string, number>;
  losses: { step: number; loss: number }[];
  evals: EvalReport[];
}

/** Weights to start from, as `atrous train --init`: an atrous checkpoint or torchvision export's
 * bytes (the head is re-initialised when its class count differs from the dataset's). */
export interface SessionInit {
  bytes: Uint8Array;
  /** The file's name, for messages. */
  source: string;
}

export interface StepReport {
  step: number;
  steps: number;
  loss: number;
  lr: number;
  /** Wall-clock milliseconds of this step (recording, GPU work, loss read-back). */
  ms: number;
}

export interface EvalReport extends EvaluateResult {
  step: number;
}

export interface SessionHooks {
  onStep?: (r: StepReport) => void;
  onEval?: (r: EvalReport) => void;
}

function checkOptions(o: SessionOptions): void {
  checkRecipeOptions(o, SESSION_RECIPE_KEYS, 'training: ');
  for (const spec of SESSION_OPTIONS) {
    const v = o[spec.key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < spec.min) throw new Error(`training: ${spec.key} must be an integer >= ${spec.min}, got ${JSON.stringify(v)}`);
  }
  if (o.dataset !== 'shapes' && o.dataset !== 'given') throw new Error(`training: dataset must be 'shapes' or 'given' in a session, got ${JSON.stringify(o.dataset)}`);
  for (const f of FREEZE_FLAGS) if (typeof o[f.key] !== 'boolean') throw new Error(`training: ${f.key} must be true or false, got ${JSON.stringify(o[f.key])}`);
}

export class TrainSession {
  readonly options: SessionOptions;
  readonly train: Dataset;
  readonly val: Dataset;
  readonly model: DeepLabV3;
  /** Steps done. */
  step = 0;
  readonly losses: { step: number; loss: number }[] = [];
  readonly evals: EvalReport[] = [];
  private readonly opt: SGD;
  private readonly labelMap: Record<string, number> | null;
  private readonly lossBuf: Tensor;
  private readonly batches: AsyncIterator<Batch>;
  private running = false;
  private pauseRequested = false;
  private disposed = false;

  /** What the weights came from: 'seed N', or the init file and what was loaded (describeInitReport). */
  readonly initReport: string;

  /**
   * Builds the model and the optimizer; needs `await init()` first. The weights: from `init` (as
   * `atrous train --init`; the model is the file's configuration, when it has one, with the
   * dataset's class count), else from `seed`. Data: `data` with options.dataset 'given', else shapes.
   */
  constructor(options: Partial<SessionOptions> = {}, data?: SessionData, init?: SessionInit, resume?: SessionState) {
    const o: SessionOptions = { ...SESSION_DEFAULTS, ...options };
    checkOptions(o);
    if ((o.dataset === 'given') !== (data !== undefined)) throw new Error("training: pass the datasets exactly when options.dataset is 'given'");
    this.options = o;
    this.labelMap = data?.labelMap ?? null;
    this.train = data?.train ?? new ShapesDataset({ split: 'train', seed: o.dataSeed });
    this.val = data?.val ?? new ShapesDataset({ split: 'val', seed: o.dataSeed });
    if (this.train.numClasses !== this.val.numClasses) throw new Error(`training: the held-out images have ${this.val.numClasses} classes, the training images ${this.train.numClasses}`);
    if (this.train.length === 0 || this.val.length === 0) throw new Error('training: no training or no held-out images');
    const ck = resume ? readCheckpoint(resume.model, 'saved session') : init ? readCheckpoint(init.bytes, init.source) : null;
    const cfg = ck?.config ? { ...ck.config, numClasses: this.train.numClasses } : modelConfig(o.config, { numClasses: this.train.numClasses });
    this.model = new DeepLabV3(cfg);
    let opt: SGD | null = null;
    try {
      if (resume) {
        // The saved model (the class count and configuration were checked when it was saved).
        this.model.loadStateDict(ck!.state);
        this.initReport = `the saved session at step ${resume.step}`;
      } else if (ck && init) {
        const plan = planInit(ck, this.model, init.source);
        applyInit(this.model, plan, o.seed);
        this.initReport = `${init.source}: ${describeInitReport(plan.report)}`;
      } else {
        this.model.materialize(o.seed);
        this.initReport = `seed ${o.seed}`;
      }
      this.model.setDropoutSeed(o.seed);
      if (o.freezeBackbone || o.freezeBatchNorm) this.model.setFrozen({ backbone: o.freezeBackbone, batchNorm: o.freezeBatchNorm });
      this.model.train();
      // The parameter groups of the Node trainer: the head (classifier.*, aux_classifier.*) at lr × headLrMult.
      const named = this.model.namedParameters();
      const isHead = (n: string) => n.startsWith('classifier.') || n.startsWith('aux_classifier.');
      opt = new SGD([
        { params: named.filter(([n]) => !isHead(n)).map(([, p]) => p) },
        { params: named.filter(([n]) => isHead(n)).map(([, p]) => p), lrMult: o.headLrMult },
      ], { lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay });
      this.opt = opt;
      if (resume) {
        const mom = readCheckpoint(resume.optimizer, 'saved session optimizer').state;
        for (const [name, p] of named) {
          const h = mom.get(name);
          if (h && p.requiresGrad) this.opt.setMomentumBuffer(p, h.data as Float32Array);
        }
        for (const [name, m] of this.model.namedModules()) if (m instanceof Dropout) m.calls = resume.dropoutCalls[name] ?? 0;
        this.step = resume.step;
        this.losses.push(...resume.losses);
        this.evals.push(...resume.evals);
      }
      this.lossBuf = keep(empty([1]));
    } catch (err) {
      // The optimizer's momentum buffers (restored ones included) live outside every scope.
      opt?.dispose();
      this.model.dispose();
      throw err;
    }
    const loader = new DataLoader(this.train, {
      batchSize: o.batch, seed: o.seed, augment: { crop: o.crop, scaleMin: o.scaleMin, scaleMax: o.scaleMax }, steps: o.steps, prefetch: 1, startStep: this.step,
    });
    this.batches = loader[Symbol.asyncIterator]();
  }

  get done(): boolean {
    return this.step >= this.options.steps;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Asks a running `run()` to return after the step in progress. */
  pause(): void {
    if (this.running) this.pauseRequested = true;
  }

  /**
   * Trains until the last step, or until pause() is called (then returns after the current step;
   * call run() again to resume exactly where it stopped). Evaluates every `evalEvery` steps and
   * after the last one. Returns the number of steps done in this call.
   */
  async run(hooks: SessionHooks = {}): Promise<number> {
    if (this.disposed) throw new Error('training: the session was disposed');
    if (this.running) throw new Error('training: the session is already running');
    this.running = true;
    this.pauseRequested = false;
    const o = this.options;
    let n = 0;
    try {
      while (!this.done && !this.pauseRequested && !this.disposed) {
        const t0 = performance.now();
        const next = await this.batches.next();
        if (next.done) break;
        const lr = polyLR(o.lr, this.step, o.steps, o.power);
        this.opt.lr = lr;
        recordTrainStep(this.model, this.opt, next.value, this.lossBuf, 0);
        const loss = await this.lossBuf.item();
        this.step++;
        n++;
        if (!Number.isFinite(loss)) throw new Error(`training: the loss became ${loss} at step ${this.step} (diverged: lower the learning rate)`);
        this.losses.push({ step: this.step, loss });
        hooks.onStep?.({ step: this.step, steps: o.steps, loss, lr, ms: performance.now() - t0 });
        if (!this.disposed && ((o.evalEvery > 0 && this.step % o.evalEvery === 0) || this.done)) {
          const r = await this.evaluate();
          hooks.onEval?.(r);
        }
      }
    } finally {
      this.running = false;
      this.pauseRequested = false;
    }
    return n;
  }

  /** mIoU and pixel accuracy on the first `evalCount` held-out images (the model is put back in training mode). */
  async evaluate(): Promise<EvalReport> {
    if (this.disposed) throw new Error('training: the session was disposed');
    try {
      const r = await evaluate(this.model, this.val, { count: Math.min(this.options.evalCount, this.val.length), batchSize: 4 });
      const report = { ...r, step: this.step };
      const last = this.evals[this.evals.length - 1];
      if (last?.step === this.step) this.evals[this.evals.length - 1] = report;
      else this.evals.push(report);
      return report;
    } finally {
      this.model.train();
    }
  }

  /** The model as a checkpoint (safetensors bytes, loadable by `atrous predict --weights`). */
  async checkpoint(): Promise<Uint8Array> {
    if (this.disposed) throw new Error('training: the session was disposed');
    this.model.inference = trainedInference(this.model, this.train, this.options.crop);
    const meta: Record<string, string> = { step: String(this.step), seed: String(this.options.seed), dataset: this.train.name };
    if (this.labelMap) meta.labelMap = JSON.stringify(this.labelMap);
    return saveCheckpoint(this.model, meta);
  }

  /** What resumes this session exactly (in a new session, after a reload): see SessionState. Not while running. */
  async saveState(): Promise<SessionState> {
    if (this.disposed) throw new Error('training: the session was disposed');
    if (this.running) throw new Error('training: pause the session before saving it');
    const mom = new Map<string, HostTensor>();
    for (const [name, p] of this.model.namedParameters()) {
      const b = this.opt.momentumBuffer(p);
      if (b) mom.set(name, { shape: [...p.shape], data: await b.float32() });
    }
    const dropoutCalls: Record<string, number> = {};
    for (const [name, m] of this.model.namedModules()) if (m instanceof Dropout) dropoutCalls[name] = m.calls;
    return {
      step: this.step, model: await this.checkpoint(), optimizer: stateDictToSafetensors(mom, { format: 'atrous-sgd', step: String(this.step) }),
      dropoutCalls, losses: [...this.losses], evals: [...this.evals],
    };
  }

  /** Frees the model, the optimizer state and the loss buffer, then returns the pool's free
   * buffers to the driver. A running `run()` stops after its current step. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    while (this.running) await new Promise((r) => setTimeout(r, 10));
    await this.batches.return?.();
    this.opt.dispose();
    this.model.dispose();
    this.lossBuf.dispose();
    const e = engine();
    await e.sync();
    e.pool.trim();
  }
}
