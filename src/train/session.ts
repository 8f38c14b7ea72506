// An in-memory training session: DeepLabv3 trained on an embedded dataset with the recipe of
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
import { saveCheckpoint } from '../io/checkpoint.js';
import { evaluate, type EvaluateResult } from './evaluate.js';
import { recordTrainStep } from './step.js';
import { trainedInference, checkRecipeOptions, TRAIN_DEFAULTS, type RecipeOptions } from './options.js';

/** The recipe options a session takes (their types, ranges and meaning: src/train/options.ts). */
export const SESSION_RECIPE_KEYS = ['steps', 'batch', 'crop', 'lr', 'momentum', 'weightDecay', 'power', 'scaleMin', 'scaleMax', 'seed', 'dataSeed'] as const;

export interface SessionOptions extends Pick<RecipeOptions, (typeof SESSION_RECIPE_KEYS)[number]> {
  /** Model configuration name (default 'mini'); numClasses follows the dataset. */
  config: string;
  /** Embedded dataset (only 'shapes' is available without files). */
  dataset: 'shapes';
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
  config: 'mini', dataset: 'shapes', steps: 300, batch: 4, evalEvery: 50, evalCount: 16,
};

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
  if (o.dataset !== 'shapes') throw new Error(`training: dataset must be 'shapes' in a session, got ${JSON.stringify(o.dataset)}`);
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
  private readonly lossBuf: Tensor;
  private readonly batches: AsyncIterator<Batch>;
  private running = false;
  private pauseRequested = false;
  private disposed = false;

  /** Builds the model (initialised from `seed`) and the optimizer; needs `await init()` first. */
  constructor(options: Partial<SessionOptions> = {}) {
    const o: SessionOptions = { ...SESSION_DEFAULTS, ...options };
    checkOptions(o);
    this.options = o;
    this.train = new ShapesDataset({ split: 'train', seed: o.dataSeed });
    this.val = new ShapesDataset({ split: 'val', seed: o.dataSeed });
    const cfg = modelConfig(o.config, { numClasses: this.train.numClasses });
    this.model = new DeepLabV3(cfg);
    try {
      this.model.materialize(o.seed);
      this.model.setDropoutSeed(o.seed);
      this.model.train();
      this.opt = new SGD(this.model.trainableParameters(), { lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay });
      this.lossBuf = keep(empty([1]));
    } catch (err) {
      this.model.dispose();
      throw err;
    }
    const loader = new DataLoader(this.train, {
      batchSize: o.batch, seed: o.seed, augment: { crop: o.crop, scaleMin: o.scaleMin, scaleMax: o.scaleMax }, steps: o.steps, prefetch: 1,
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
      const r = await evaluate(this.model, this.val, { count: this.options.evalCount, batchSize: 4 });
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
    return saveCheckpoint(this.model, { step: String(this.step), seed: String(this.options.seed), dataset: this.train.name });
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
