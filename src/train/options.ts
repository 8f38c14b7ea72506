// The training recipe's options, defined once: their types, ranges, defaults, command-line flags
// and training-config-file keys, their validation, how a config file and flags combine into a
// run's options, and what a resume may change. `atrous train` and `atrous main` (src/cli/), the
// Node trainer (trainer.ts), the in-memory session of the page (session.ts) and the page's Train
// form (web/) all use this module. Pure TypeScript: runs in browsers too.
//
// The recipe is DeepLabv3 §4.1: SGD with momentum and weight decay, the poly learning rate
// (lr · (1 − step/steps)^power), random scale (scaleMin..scaleMax), crop and flip; optionally in
// stages (e.g. output stride 16, then 8 with batch norm frozen). Fine-tuning: `init` starts from
// the weights of a file (src/train/init-weights.ts), and what trains is chosen per run or per stage:
// a frozen backbone, frozen batch norm, a learning-rate multiplier for the head.

import type { Dataset } from '../data/types.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import { CONFIGS, modelConfig, configFromJSON, type DeepLabV3Config } from '../nn/configs.js';
import { paddingForCrop, type InferenceSettings } from '../nn/inference.js';
import { polyLR } from '../optim/schedule.js';
import { IMAGENET } from '../data/augment.js';

/** What trains: run-level options (TrainOptions) that a stage may override. */
export interface FreezeOptions {
  /** Batch norm uses and keeps its running statistics, and its weight and bias stop training. */
  freezeBatchNorm?: boolean;
  /** The backbone (`backbone.*`) stops training: its parameters get no gradient and no update,
   * and its batch norm uses and keeps its running statistics (mmseg's frozen_stages). */
  freezeBackbone?: boolean;
  /** Learning-rate multiplier of the head (`classifier.*`, `aux_classifier.*`): its parameters
   * train at lr × headLrMult (mmseg's decode_head lr_mult, TF deeplab's
   * last_layer_gradient_multiplier); 0 leaves them unchanged. Default 1. */
  headLrMult?: number;
}

export interface StageOptions extends FreezeOptions {
  steps: number;
  lr: number;
  /** Output stride of this stage (default: the config's). */
  outputStride?: number;
}
const STAGE_KEYS = ['steps', 'lr', 'outputStride', 'freezeBatchNorm', 'freezeBackbone', 'headLrMult'] as const;

/** The boolean options (run level and per stage), with their flags. */
export const FREEZE_FLAGS: readonly { key: 'freezeBackbone' | 'freezeBatchNorm'; flag: string; label: string }[] = [
  { key: 'freezeBackbone', flag: 'freeze-backbone', label: 'Freeze the backbone' },
  { key: 'freezeBatchNorm', flag: 'freeze-batch-norm', label: 'Freeze batch norm' },
];

/** The numeric options of the recipe (everything but the model, the dataset and the stages). */
export interface RecipeOptions {
  /** Seed of the embedded dataset's generator (its identity, not the run's randomness). */
  dataSeed: number;
  steps: number;
  /** Images per batch. */
  batch: number;
  /** Side of the square training crops, pixels. */
  crop: number;
  /** Base learning rate of the poly schedule. */
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Exponent of the poly schedule (§4.1: 0.9). */
  power: number;
  /** Random scale range of the augmentation (§4.1: 0.5 to 2). */
  scaleMin: number;
  scaleMax: number;
  /** Weights init, data order, augmentation and dropout. */
  seed: number;
  /** Write a checkpoint every N steps (and at the end). */
  checkpointEvery: number;
  /** Read the loss back from the GPU (and log it) every N steps. */
  logEvery: number;
  /** Gradient accumulation: each SGD step sums the gradients of `accum` batches of `batch`
   * images, each loss weighted 1/accum (an effective batch of batch × accum). */
  accum: number;
  /** Learning-rate multiplier of the head (FreezeOptions.headLrMult); default 1. */
  headLrMult: number;
}

/** Recipe options a run's options may lack (runs recorded before they existed): their defaults apply. */
const OPTIONAL_RECIPE_KEYS = ['accum', 'headLrMult'] as const;

export interface TrainOptions extends Omit<RecipeOptions, (typeof OPTIONAL_RECIPE_KEYS)[number]>, Omit<FreezeOptions, 'headLrMult'> {
  /** Resolved model configuration (numClasses = the dataset's). */
  config: DeepLabV3Config;
  /** 'shapes', 'fashion-scenes' or 'voc:DIR'. */
  dataset: string;
  /** Embedded datasets: train on the first N generated samples only (default: the split's size). */
  dataLength?: number;
  /** Default 1. */
  accum?: number;
  /** Default 1 (see FreezeOptions.headLrMult). */
  headLrMult?: number;
  /** A weights file to start from (path): an atrous checkpoint, a torchvision DeepLabv3 / FCN
   * export or a ResNet classification state dict (src/train/init-weights.ts). Absent: the
   * weights are initialised from `seed`. */
  init?: string;
  /** The §4.1 schedule in stages, run one after the other (steps = the sum of theirs); each has its
   * own poly learning rate from its `lr` to 0, and may change the output stride, freeze batch
   * norm (statistics and affine parameters) or the backbone, and the head's lr multiplier (the
   * run-level values apply where a stage says nothing). Absent: one stage of `steps` at `lr`. */
  stages?: StageOptions[];
}

/** One numeric option: its key (in TrainOptions and in a config file), flag, type and range. */
export interface OptionSpec {
  key: keyof RecipeOptions;
  /** Command-line flag, without the dashes. */
  flag: string;
  integer: boolean;
  min: number;
  /** Upper bound (default none); 'scaleMin' for scaleMax's lower bound is handled by `min` = the other option. */
  max?: number;
  /** The other option this one must be at least (scaleMax ≥ scaleMin). */
  atLeast?: keyof RecipeOptions;
  /** Short name for people (the page's form, usage text). */
  label: string;
}

/** Every numeric option of the recipe, in the order the usage text lists them. */
export const RECIPE_OPTIONS: readonly OptionSpec[] = [
  { key: 'steps', flag: 'steps', integer: true, min: 1, label: 'Steps' },
  { key: 'batch', flag: 'batch', integer: true, min: 1, label: 'Batch' },
  { key: 'crop', flag: 'crop', integer: true, min: 8, label: 'Crop' },
  { key: 'lr', flag: 'lr', integer: false, min: 0, label: 'Learning rate' },
  { key: 'momentum', flag: 'momentum', integer: false, min: 0, max: 1, label: 'Momentum' },
  { key: 'weightDecay', flag: 'weight-decay', integer: false, min: 0, label: 'Weight decay' },
  { key: 'power', flag: 'power', integer: false, min: 0, label: 'Poly power' },
  { key: 'scaleMin', flag: 'scale-min', integer: false, min: 0.01, label: 'Smallest random scale' },
  { key: 'scaleMax', flag: 'scale-max', integer: false, min: 0.01, atLeast: 'scaleMin', label: 'Largest random scale' },
  { key: 'seed', flag: 'seed', integer: true, min: 0, label: 'Seed' },
  { key: 'dataSeed', flag: 'data-seed', integer: true, min: 0, label: 'Data seed' },
  { key: 'checkpointEvery', flag: 'checkpoint-every', integer: true, min: 1, label: 'Checkpoint every' },
  { key: 'logEvery', flag: 'log-every', integer: true, min: 1, label: 'Log every' },
  { key: 'accum', flag: 'accum', integer: true, min: 1, label: 'Accumulated batches' },
  { key: 'headLrMult', flag: 'head-lr-mult', integer: false, min: 0, label: 'Head lr multiplier' },
];

export function optionSpec(key: keyof RecipeOptions): OptionSpec {
  const s = RECIPE_OPTIONS.find((o) => o.key === key);
  if (!s) throw new Error(`train: no option '${key}'`);
  return s;
}

export const TRAIN_DEFAULTS: RecipeOptions = {
  dataSeed: 0, steps: 1000, batch: 8, crop: 65, lr: 0.02, momentum: 0.9, weightDecay: 1e-4, power: 0.9,
  scaleMin: 0.5, scaleMax: 2.0, seed: 0, checkpointEvery: 200, logEvery: 10, accum: 1, headLrMult: 1,
};

/** Keys a training config file may hold: the recipe's, plus model, dataset, init, outputStride,
 * freezeBackbone, freezeBatchNorm, stages. */
export const TRAIN_FILE_KEYS: readonly string[] = ['model', 'dataset', 'init', ...RECIPE_OPTIONS.map((o) => o.key), 'outputStride', ...FREEZE_FLAGS.map((f) => f.key), 'stages'];

/** The range of an option in words: "an integer >= 1", "a number in [0, 1]". */
function rangeText(s: OptionSpec, lower: number): string {
  return s.max !== undefined ? `a number in [${lower}, ${s.max}]` : `${s.integer ? 'an integer' : 'a number'} >= ${lower}`;
}

/** Whether `v` is a valid value of option `s` (with `lower` as its effective lower bound). */
function inRange(s: OptionSpec, v: unknown, lower: number): v is number {
  return typeof v === 'number' && Number.isFinite(v) && (!s.integer || Number.isSafeInteger(v)) && v >= lower && (s.max === undefined || v <= s.max);
}

/**
 * Checks option `key` of `o` (a value present or `required`), naming it as `${where}${key}`:
 * throws Error "train: lr must be a number >= 0, got -1".
 */
function checkOption(o: Partial<RecipeOptions>, s: OptionSpec, where: string, required: boolean, quote = false): void {
  const v = o[s.key];
  if (v === undefined && !required) return;
  const lower = s.atLeast !== undefined && typeof o[s.atLeast] === 'number' ? Math.max(s.min, o[s.atLeast] as number) : s.min;
  if (!inRange(s, v, lower)) throw new Error(`${where}${quote ? `'${s.key}'` : s.key} must be ${rangeText(s, lower)}, got ${JSON.stringify(v)}`);
}

/**
 * A flag's value (a string) as option `key`: "atrous train: --lr must be a number >= 0, got 'x'".
 * `cmd` names the command in the message. Returns undefined for an absent flag.
 */
export function parseOptionFlag(cmd: string, key: keyof RecipeOptions, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const s = optionSpec(key);
  const v = raw.trim() === '' ? NaN : Number(raw);
  if (!inRange(s, v, s.min) || (s.integer && !/^\d+$/.test(raw.trim()))) throw new Error(`atrous ${cmd}: --${s.flag} must be ${rangeText(s, s.min)}, got '${raw}'`);
  return v;
}

/** Checks the numeric options and the stages of a run, naming the first bad field. Throws Error. */
export function checkTrainOptions(o: TrainOptions): void {
  for (const s of RECIPE_OPTIONS) checkOption(o, s, 'train: ', !(OPTIONAL_RECIPE_KEYS as readonly string[]).includes(s.key));
  if (o.dataLength !== undefined && !(Number.isInteger(o.dataLength) && o.dataLength >= 1)) throw new Error(`train: dataLength must be an integer >= 1, got ${JSON.stringify(o.dataLength)}`);
  for (const f of FREEZE_FLAGS) checkBoolean(o[f.key], `train: ${f.key}`);
  if (o.init !== undefined && (typeof o.init !== 'string' || o.init === '')) throw new Error(`train: init must be a file name, got ${JSON.stringify(o.init)}`);
  if (o.stages !== undefined) checkStages(o.stages, o.steps, 'train: ');
}

function checkBoolean(v: unknown, what: string): void {
  if (v !== undefined && typeof v !== 'boolean') throw new Error(`${what} must be true or false, got ${JSON.stringify(v)}`);
}

/** Checks a stage list; `steps` (when given) must be their sum. */
function checkStages(stages: unknown, steps: number | undefined, where: string): void {
  if (!Array.isArray(stages) || stages.length === 0) throw new Error(`${where}stages must be a non-empty array, got ${JSON.stringify(stages)}`);
  let total = 0;
  stages.forEach((st: StageOptions, i) => {
    const at = `${where}stages[${i}]`;
    if (!st || typeof st !== 'object' || Array.isArray(st)) throw new Error(`${at} must be an object, got ${JSON.stringify(st)}`);
    const unknown = Object.keys(st).filter((k) => !(STAGE_KEYS as readonly string[]).includes(k));
    if (unknown.length) throw new Error(`${at}: unknown field '${unknown[0]}' (known: ${STAGE_KEYS.join(', ')})`);
    if (!Number.isSafeInteger(st.steps) || st.steps < 1) throw new Error(`${at}.steps must be an integer >= 1, got ${JSON.stringify(st.steps)}`);
    if (typeof st.lr !== 'number' || !Number.isFinite(st.lr) || st.lr < 0) throw new Error(`${at}.lr must be a number >= 0, got ${JSON.stringify(st.lr)}`);
    if (st.outputStride !== undefined && (!Number.isInteger(st.outputStride) || st.outputStride < 4 || (st.outputStride & (st.outputStride - 1)) !== 0)) {
      throw new Error(`${at}.outputStride must be a power of two >= 4, got ${JSON.stringify(st.outputStride)}`);
    }
    for (const f of FREEZE_FLAGS) checkBoolean(st[f.key], `${at}.${f.key}`);
    if (st.headLrMult !== undefined && !(typeof st.headLrMult === 'number' && Number.isFinite(st.headLrMult) && st.headLrMult >= 0)) {
      throw new Error(`${at}.headLrMult must be a number >= 0, got ${JSON.stringify(st.headLrMult)}`);
    }
    total += st.steps;
  });
  if (steps !== undefined && total !== steps) throw new Error(`${where}the stages add up to ${total} steps but steps is ${steps}`);
}

/** Checks some recipe options (as the page's session holds them), naming the first bad one. */
export function checkRecipeOptions(o: Partial<RecipeOptions>, keys: readonly (keyof RecipeOptions)[], where: string): void {
  for (const k of keys) checkOption(o, optionSpec(k), where, true);
}

// ------------------------------------------------------------------------------ the schedule

/** The stages of a run (one implicit stage without `stages`), each with every setting resolved:
 * the stage's own, else the run's, else the default. */
export function runStages(o: TrainOptions): Required<StageOptions>[] {
  const st = o.stages ?? [{ steps: o.steps, lr: o.lr }];
  return st.map((s) => ({
    steps: s.steps, lr: s.lr, outputStride: s.outputStride ?? o.config.outputStride,
    freezeBatchNorm: s.freezeBatchNorm ?? o.freezeBatchNorm ?? false,
    freezeBackbone: s.freezeBackbone ?? o.freezeBackbone ?? false,
    headLrMult: s.headLrMult ?? o.headLrMult ?? 1,
  }));
}

/** What a stage trains, in words: ", backbone frozen, batch norm frozen, head lr × 10" ('' for everything at lr). */
export function describeFreezing(st: Required<StageOptions>): string {
  return `${st.freezeBackbone ? ', backbone frozen' : ''}${st.freezeBatchNorm ? ', batch norm frozen' : ''}${st.headLrMult !== 1 ? `, head lr × ${st.headLrMult}` : ''}`;
}

/** The stage that step (0-based) falls in, with its first step and its learning rate there. */
export function stageAt(o: TrainOptions, step: number): { index: number; stage: Required<StageOptions>; start: number; lr: number } {
  const stages = runStages(o);
  let start = 0;
  for (let i = 0; i < stages.length; i++) {
    const st = stages[i];
    if (step < start + st.steps || i === stages.length - 1) {
      return { index: i, stage: st, start, lr: polyLR(st.lr, Math.min(step - start, st.steps), st.steps, o.power) };
    }
    start += st.steps;
  }
  throw new Error('train: no stages');
}

/** The run's plan in one line: "2 stages (700 steps at output stride 16, lr 0.1; ...)". */
export function describePlan(o: TrainOptions): string {
  const stages = runStages(o);
  const plan = o.stages
    ? `${o.stages.length} stages (${stages.map((st) => `${st.steps} steps at output stride ${st.outputStride}, lr ${st.lr}${describeFreezing(st)}`).join('; ')})`
    : `output stride ${o.config.outputStride}, ${o.steps} steps, lr ${o.lr}${describeFreezing(stages[0])}`;
  const from = o.init !== undefined ? `, from ${o.init}` : '';
  return `${o.config.name} on ${o.dataset}${from}, ${plan}, batch ${o.batch}${(o.accum ?? 1) > 1 ? ` × ${o.accum} accumulated` : ''}, ${o.crop}×${o.crop} crops, seed ${o.seed}`;
}

// ------------------------------------------------------------------------------ config files and flags

/** A training config file's contents, as JSON. */
export interface TrainConfigFile {
  /** Its name in messages (the path). */
  name: string;
  json: unknown;
}

/**
 * Splits a --config FILE's JSON: a file with a "model" or "stages" key, or with training keys only,
 * is a training config (its keys checked against TRAIN_FILE_KEYS: an unknown key is an error
 * naming it); any other object is a model config as the checkpoints store it.
 */
export function splitConfigFile(f: TrainConfigFile): { train: Record<string, unknown> | null; model: unknown } {
  const o = f.json;
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error(`atrous train: ${f.name}: a config file must hold a JSON object`);
  const rec = o as Record<string, unknown>;
  // A key only a training config has (lr, steps, ...) makes it one, so its unknown keys are named.
  const isTrain = 'model' in rec || 'stages' in rec || Object.keys(rec).every((k) => TRAIN_FILE_KEYS.includes(k))
    || Object.keys(rec).some((k) => TRAIN_FILE_KEYS.includes(k) && k !== 'outputStride');
  if (!isTrain) return { train: null, model: rec };
  const unknown = Object.keys(rec).filter((k) => !TRAIN_FILE_KEYS.includes(k));
  if (unknown.length) throw new Error(`atrous train: ${f.name}: unknown key '${unknown[0]}' (a training config knows ${TRAIN_FILE_KEYS.join(', ')})`);
  // Without "model": the init file's configuration when it has one, else 'mini' (resolveTrainOptions).
  return { train: rec, model: rec.model ?? null };
}

/** What a training command asks for: a config (name, or file contents) and the flags given. */
export interface TrainRequest {
  /** A configuration name (CONFIGS) or a config file's contents; default 'mini'. */
  config?: string | TrainConfigFile;
  dataset?: string;
  outputStride?: number;
  /** Recipe options given as flags (already parsed); they win over the file's. */
  options?: Partial<RecipeOptions>;
  /** --init FILE (wins over the file's "init"). */
  init?: string;
  /** --freeze-backbone, --freeze-batch-norm given (true); they win over the file's. */
  freeze?: Partial<Record<(typeof FREEZE_FLAGS)[number]['key'], boolean>>;
}

/**
 * The run's options from a request: flags win over the config file's keys, which win over
 * TRAIN_DEFAULTS. `numClassesOf(dataset)` opens the dataset (so a missing one fails before
 * anything is written) and gives its class count, which the model config always follows.
 * The model is --config's, else the config file's "model", else the init file's configuration
 * (`initConfigOf(path)`: null for a file without one, a backbone state dict, which then needs a
 * named model), else 'mini'.
 * Errors name the flag (`--lr`) or the file and its key (`main.json: 'lr'`).
 */
export function resolveTrainOptions(
  req: TrainRequest, numClassesOf: (dataset: string, dataSeed: number) => number, readModelFile?: (name: string) => TrainConfigFile | null,
  initConfigOf?: (path: string) => DeepLabV3Config | null,
): TrainOptions {
  const spec = req.config ?? null;
  const file = spec === null || typeof spec === 'string' ? null : splitConfigFile(spec);
  const where = spec === null || typeof spec === 'string' ? 'atrous train: ' : `atrous train: ${spec.name}: `;
  const f = file?.train ?? {};
  // A config file's values are checked as JSON values of their types, named by their key.
  for (const s of RECIPE_OPTIONS) if (f[s.key] !== undefined) checkOption(f as Partial<RecipeOptions>, s, where, true, true);
  if (f.dataset !== undefined && typeof f.dataset !== 'string') throw new Error(`${where}'dataset' must be a string, got ${JSON.stringify(f.dataset)}`);
  if (f.init !== undefined && (typeof f.init !== 'string' || f.init === '')) throw new Error(`${where}'init' must be a file name, got ${JSON.stringify(f.init)}`);
  for (const k of FREEZE_FLAGS) if (f[k.key] !== undefined && typeof f[k.key] !== 'boolean') throw new Error(`${where}'${k.key}' must be true or false, got ${JSON.stringify(f[k.key])}`);
  const init = req.init ?? (f.init as string | undefined);
  if (f.outputStride !== undefined && !(Number.isInteger(f.outputStride) && (f.outputStride as number) >= 4)) throw new Error(`${where}'outputStride' must be an integer >= 4, got ${JSON.stringify(f.outputStride)}`);
  const flags = req.options ?? {};
  const pick = <K extends keyof RecipeOptions>(k: K): RecipeOptions[K] => (flags[k] ?? (f[k] as RecipeOptions[K] | undefined) ?? TRAIN_DEFAULTS[k]);
  const dataset = req.dataset ?? (f.dataset as string | undefined) ?? 'shapes';
  const dataSeed = pick('dataSeed');
  let numClasses: number;
  try {
    numClasses = numClassesOf(dataset, dataSeed);
  } catch (e) {
    // A dataset named by the config file is reported as that file's key.
    if (req.dataset !== undefined || f.dataset === undefined) throw e;
    throw new Error(`${where}'dataset': ${(e as Error).message.replace(/^atrous( train)?: /, '')}`);
  }
  const outputStride = req.outputStride ?? (f.outputStride as number | undefined);
  const overrides = { numClasses, ...(outputStride !== undefined ? { outputStride } : {}) };
  let modelSpec = file ? file.model : spec;
  if (modelSpec === null) {
    const fromInit = init !== undefined ? initConfigOf?.(init) ?? null : null;
    if (init !== undefined && !fromInit) {
      throw new Error(`${where}${init} holds a backbone and no model configuration: name the configuration to build on it (--config, e.g. ${Object.keys(CONFIGS).filter((n) => n.startsWith('paper-r')).slice(0, 2).join(' or ')}, or "model" in a training config)`);
    }
    modelSpec = fromInit ?? 'mini';
  }
  let config: DeepLabV3Config;
  if (typeof modelSpec === 'string') {
    if (CONFIGS[modelSpec]) config = modelConfig(modelSpec, overrides);
    else {
      let mf: TrainConfigFile | null;
      try {
        mf = readModelFile?.(modelSpec) ?? null;
      } catch (e) {
        if (!file) throw e;
        throw new Error(`${where}'model': ${(e as Error).message.replace(/^atrous train: /, '')}`);
      }
      if (!mf) throw new Error(`${file ? `${where}'model': ` : 'atrous train: '}unknown model configuration '${modelSpec}' (known: ${Object.keys(CONFIGS).join(', ')}; or a JSON file)`);
      config = configFrom(mf.json, overrides, `atrous train: ${mf.name}: `);
    }
  } else config = configFrom(modelSpec, overrides, where);
  const stages = f.stages as StageOptions[] | undefined;
  if (stages !== undefined) {
    checkStages(stages, undefined, where);
    if (flags.steps !== undefined) throw new Error(`${where.replace(/: $/, '')} has stages, whose steps set the run's length; drop --steps`);
    if (flags.lr !== undefined) throw new Error(`${where.replace(/: $/, '')} has stages, each with its own lr; drop --lr`);
    if (f.steps !== undefined) throw new Error(`${where}has stages, whose steps set the run's length; drop 'steps'`);
  }
  const o: TrainOptions = {
    config, dataset, dataSeed,
    steps: stages ? stages.reduce((a, st) => a + st.steps, 0) : pick('steps'),
    batch: pick('batch'), crop: pick('crop'),
    lr: stages ? stages[0].lr : pick('lr'),
    momentum: pick('momentum'), weightDecay: pick('weightDecay'), power: pick('power'),
    scaleMin: pick('scaleMin'), scaleMax: pick('scaleMax'), seed: pick('seed'),
    checkpointEvery: pick('checkpointEvery'), logEvery: pick('logEvery'), accum: pick('accum'), headLrMult: pick('headLrMult'),
    ...(init !== undefined ? { init } : {}),
    ...Object.fromEntries(FREEZE_FLAGS.flatMap((k) => {
      const v = req.freeze?.[k.key] ?? (f[k.key] as boolean | undefined);
      return v !== undefined ? [[k.key, v]] : [];
    })),
    ...(stages !== undefined ? { stages } : {}),
  };
  checkTrainOptions(o);
  return o;
}

function configFrom(json: unknown, overrides: Partial<DeepLabV3Config>, where: string): DeepLabV3Config {
  try {
    return configFromJSON({ ...(json as object), ...overrides });
  } catch (e) {
    throw new Error(`${where}${(e as Error).message.replace(/^atrous: /, '')}`);
  }
}

/** What `--resume` may change: the length (extending the last stage) and the logging interval. */
export function resumeOptions(o: TrainOptions, done: number, change: { steps?: number; logEvery?: number }): TrainOptions {
  const { steps, logEvery } = change;
  if (steps !== undefined && steps < done) throw new Error(`atrous train: --steps ${steps} is below the ${done} steps the run has done`);
  const st = o.stages;
  // With stages, extra steps extend the last stage (its poly schedule stretches to the new end).
  const stages = steps !== undefined && st ? st.map((s, i) => (i === st.length - 1 ? { ...s, steps: s.steps + steps - o.steps } : s)) : st;
  if (stages && stages[stages.length - 1].steps < 1) throw new Error(`atrous train: --steps ${steps} leaves the last stage no steps`);
  const out = { ...o, ...(steps !== undefined ? { steps } : {}), ...(logEvery !== undefined ? { logEvery } : {}), ...(stages ? { stages } : {}) };
  checkTrainOptions(out);
  return out;
}

// ------------------------------------------------------------------------------ what checkpoints record

/** The inference settings of a model being trained on `ds` with crops of `crop` pixels (the
 * loaders normalise with ImageNet's mean/std): what its checkpoints record. */
export function trainedInference(model: DeepLabV3, ds: Dataset, crop: number): InferenceSettings {
  return {
    outputStride: model.outputStride,
    normalization: { mean: [...IMAGENET.mean], std: [...IMAGENET.std] },
    classes: [...ds.classNames],
    padding: paddingForCrop(crop, model.outputStride),
  };
}
