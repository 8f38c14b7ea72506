// `atrous train`: trains DeepLabv3 into a run directory (or resumes one).
import { existsSync, readFileSync } from 'node:fs';
import { init } from '../gpu/engine.js';
import { modelConfig, CONFIGS } from '../nn/configs.js';
import { configFromJSON } from '../io/checkpoint.js';
import { openDataset } from '../data/index.js';
import { RunDir, writeFileAtomic, RUN_FILE } from '../train/rundir.js';
import { train, checkTrainOptions, formatProgress, fmtDuration, TRAIN_DEFAULTS, RUN_FORMAT, type RunInfo, type TrainOptions, type TrainResult } from '../train/trainer.js';
import type { DeepLabV3Config } from '../nn/configs.js';
import { parse } from './args.js';
import { reportTrainLabels } from './data.js';
import type { Command } from './main.js';

const D = TRAIN_DEFAULTS;
export const TRAIN_USAGE = [
  'usage: atrous train --out DIR [--config NAME|FILE] [--dataset shapes|fashion-scenes|voc:DIR] [--steps N]',
  '                    [--batch B] [--crop C] [--lr L] [--seed S] [--output-stride 8|16|32]',
  '                    [--weight-decay W] [--momentum M] [--scale-min A] [--scale-max B]',
  '                    [--checkpoint-every N] [--log-every N] [--data-seed S] [--accum K]',
  '       atrous train --resume DIR [--steps N]',
  '',
  `Trains with SGD (momentum ${D.momentum}, weight decay ${D.weightDecay}) and the poly learning rate (power ${D.power}),`,
  'cross entropy ignoring 255 on logits upsampled to the crop; random scale, crop and flip (§4.1).',
  `Defaults: --config mini --dataset shapes --steps ${D.steps} --batch ${D.batch} --crop ${D.crop} --lr ${D.lr} --seed ${D.seed}`,
  `--checkpoint-every ${D.checkpointEvery} --log-every ${D.logEvery} (the loss is read back from the GPU every N steps).`,
  `--config takes a name (${Object.keys(CONFIGS).join(', ')}) or a JSON file: a model config, or a training`,
  'config {"model": NAME|{...}, "steps", "batch", "lr", ..., "stages": [{"steps", "lr", "outputStride",',
  '"freezeBatchNorm"}, ...]} (the two-stage schedule of §4.1 in one file; flags override the file).',
  '--accum K sums the gradients of K batches per step (effective batch B×K). numClasses always follows the dataset. DIR receives run.json, metrics.jsonl, checkpoints/ and latest.json;',
  'checkpoints (weights, momentum buffers, step, RNG state) are atomic. --resume continues the run in DIR',
  'from its latest checkpoint (--steps may extend it). Ctrl-C saves a checkpoint and exits.',
].join('\n');

export function intOpt(cmd: string, name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new Error(`atrous ${cmd}: --${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

export function numOpt(cmd: string, name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < min) throw new Error(`atrous ${cmd}: --${name} must be a number >= ${min}, got '${v}'`);
  return n;
}

/** A config by name or from a JSON file. */
export function resolveConfig(spec: string, overrides: Partial<DeepLabV3Config>): DeepLabV3Config {
  if (CONFIGS[spec]) return modelConfig(spec, overrides);
  if (!existsSync(spec)) throw new Error(`atrous train: unknown model configuration '${spec}' (known: ${Object.keys(CONFIGS).join(', ')}; or a JSON file)`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(spec, 'utf8'));
  } catch (e) {
    throw new Error(`atrous train: ${spec}: not a JSON config: ${(e as Error).message}`);
  }
  return configFromJSON({ ...(json as object), ...overrides });
}

const TRAIN_OPTIONS = {
  config: { type: 'string' }, dataset: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, crop: { type: 'string' },
  lr: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, 'output-stride': { type: 'string' }, resume: { type: 'string' },
  'weight-decay': { type: 'string' }, momentum: { type: 'string' }, 'scale-min': { type: 'string' }, 'scale-max': { type: 'string' },
  'checkpoint-every': { type: 'string' }, 'log-every': { type: 'string' }, 'data-seed': { type: 'string' }, accum: { type: 'string' },
} as const;

/** Keys of a training config file (--config FILE with a "model" key or any of these). */
const TRAIN_FILE_KEYS = ['model', 'dataset', 'steps', 'batch', 'crop', 'lr', 'momentum', 'weightDecay', 'power', 'scaleMin', 'scaleMax',
  'seed', 'dataSeed', 'checkpointEvery', 'logEvery', 'accum', 'outputStride', 'stages'] as const;
type TrainFile = Partial<Record<(typeof TRAIN_FILE_KEYS)[number], unknown>>;

/**
 * Reads --config FILE. A file with a "model" key (or with training keys only) is a training
 * config: "model" is a config name or a model-config object, the other keys are TrainOptions
 * (stages included); a file without is a model config as the checkpoints store it.
 */
export function readConfigFile(file: string): { train: TrainFile | null; model: unknown } {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`atrous train: ${file}: not a JSON config: ${(e as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new Error(`atrous train: ${file}: a config file must hold a JSON object`);
  const o = json as Record<string, unknown>;
  const isTrain = 'model' in o || 'stages' in o || Object.keys(o).every((k) => (TRAIN_FILE_KEYS as readonly string[]).includes(k));
  if (!isTrain) return { train: null, model: o };
  const unknown = Object.keys(o).filter((k) => !(TRAIN_FILE_KEYS as readonly string[]).includes(k));
  if (unknown.length) throw new Error(`atrous train: ${file}: unknown key '${unknown[0]}' (a training config knows ${TRAIN_FILE_KEYS.join(', ')})`);
  return { train: o as TrainFile, model: o.model ?? 'mini' };
}

/** Parses `atrous train` options into the run to start or resume (nothing is written yet). */
export function parseTrainArgs(argv: string[]): { options: TrainOptions | null; resume: string | null; out: string | null; adapter?: string } {
  const { values: v } = parse('train', argv, TRAIN_OPTIONS);
  if (v.resume !== undefined) {
    const others = Object.keys(v).filter((k) => k !== 'resume' && k !== 'steps' && k !== 'adapter' && k !== 'log-every' && (v as Record<string, unknown>)[k] !== undefined);
    if (others.length) throw new Error(`atrous train: --resume continues a run with its own settings; drop --${others.join(', --')} (only --steps may change)`);
    return { options: null, resume: v.resume, out: null, adapter: v.adapter as string | undefined };
  }
  if (v.out === undefined) throw new Error(`atrous train: --out DIR is required (or --resume DIR)\n\n${TRAIN_USAGE}`);
  const C = 'train';
  const spec = v.config ?? 'mini';
  const file = CONFIGS[spec] ? null : existsSync(spec) ? readConfigFile(spec) : null;
  if (!CONFIGS[spec] && !file) throw new Error(`atrous train: unknown model configuration '${spec}' (known: ${Object.keys(CONFIGS).join(', ')}; or a JSON file)`);
  const f: TrainFile = file?.train ?? {};
  // Command-line values win over the file's; the file's are checked like the flags (as strings).
  const pick = (flag: string | undefined, key: keyof TrainFile): string | undefined => flag ?? (f[key] === undefined ? undefined : String(f[key]));
  if (f.dataset !== undefined && typeof f.dataset !== 'string') throw new Error(`atrous train: ${spec}: 'dataset' must be a string, got ${JSON.stringify(f.dataset)}`);
  const dataset = v.dataset ?? (f.dataset as string | undefined) ?? 'shapes';
  const dataSeed = intOpt(C, 'data-seed', pick(v['data-seed'], 'dataSeed'), 0) ?? D.dataSeed;
  // The dataset is opened here so a missing directory or unknown name fails before anything is written.
  const ds = openDataset(dataset, { split: 'train', seed: dataSeed });
  const outputStride = intOpt(C, 'output-stride', pick(v['output-stride'], 'outputStride'), 1);
  const overrides = { numClasses: ds.numClasses, ...(outputStride !== undefined ? { outputStride } : {}) };
  let config: DeepLabV3Config;
  if (!file) config = modelConfig(spec, overrides);
  else if (typeof file.model === 'string') config = resolveConfig(file.model, overrides);
  else {
    try {
      config = configFromJSON({ ...(file.model as object), ...overrides });
    } catch (e) {
      throw new Error(`atrous train: ${spec}: ${(e as Error).message.replace(/^atrous: /, '')}`);
    }
  }
  const stages = f.stages as TrainOptions['stages'] | undefined;
  const stepsFlag = intOpt(C, 'steps', v.steps, 1);
  if (stages !== undefined && stepsFlag !== undefined) throw new Error(`atrous train: ${spec} has stages, whose steps set the run's length; drop --steps`);
  if (stages !== undefined && v.lr !== undefined) throw new Error(`atrous train: ${spec} has stages, each with its own lr; drop --lr`);
  const stageSteps = Array.isArray(stages) ? stages.reduce((a, st) => a + (Number.isInteger(st?.steps) ? st.steps : 0), 0) : undefined;
  const options: TrainOptions = {
    config, dataset, dataSeed,
    steps: stepsFlag ?? stageSteps ?? intOpt(C, 'steps', pick(undefined, 'steps'), 1) ?? D.steps,
    batch: intOpt(C, 'batch', pick(v.batch, 'batch'), 1) ?? D.batch,
    crop: intOpt(C, 'crop', pick(v.crop, 'crop'), 8) ?? D.crop,
    lr: numOpt(C, 'lr', pick(v.lr, 'lr'), 0) ?? (Array.isArray(stages) && typeof stages[0]?.lr === 'number' ? stages[0].lr : D.lr),
    momentum: numOpt(C, 'momentum', pick(v.momentum, 'momentum'), 0) ?? D.momentum,
    weightDecay: numOpt(C, 'weight-decay', pick(v['weight-decay'], 'weightDecay'), 0) ?? D.weightDecay,
    power: numOpt(C, 'power', pick(undefined, 'power'), 0) ?? D.power,
    scaleMin: numOpt(C, 'scale-min', pick(v['scale-min'], 'scaleMin'), 0.01) ?? D.scaleMin,
    scaleMax: numOpt(C, 'scale-max', pick(v['scale-max'], 'scaleMax'), 0.01) ?? D.scaleMax,
    seed: intOpt(C, 'seed', pick(v.seed, 'seed'), 0) ?? D.seed,
    checkpointEvery: intOpt(C, 'checkpoint-every', pick(v['checkpoint-every'], 'checkpointEvery'), 1) ?? D.checkpointEvery,
    logEvery: intOpt(C, 'log-every', pick(v['log-every'], 'logEvery'), 1) ?? D.logEvery,
    accum: intOpt(C, 'accum', pick(v.accum, 'accum'), 1) ?? D.accum,
    ...(stages !== undefined ? { stages } : {}),
  };
  checkTrainOptions(options);
  return { options, resume: null, out: v.out, adapter: v.adapter as string | undefined };
}

/** Runs a parsed training command end to end: creates or reopens the run, trains, logs. */
export async function runTraining(parsed: ReturnType<typeof parseTrainArgs>, argv: string[], log: (s: string) => void = console.log): Promise<TrainResult> {
  let run: RunDir;
  if (parsed.resume !== null) {
    run = RunDir.open(parsed.resume);
    const info = run.readRun<RunInfo>();
    const { values: v } = parse('train', argv, TRAIN_OPTIONS);
    const steps = intOpt('train', 'steps', v.steps, 1);
    const logEvery = intOpt('train', 'log-every', v['log-every'], 1);
    if (steps !== undefined || logEvery !== undefined) {
      const done = run.latest()?.step ?? 0;
      if (steps !== undefined && steps < done) throw new Error(`atrous train: --steps ${steps} is below the ${done} steps the run has done`);
      const st = info.options.stages;
      // With stages, extra steps extend the last stage (its poly schedule stretches to the new end).
      const stages = steps !== undefined && st ? st.map((s, i) => (i === st.length - 1 ? { ...s, steps: s.steps + steps - info.options.steps } : s)) : st;
      if (stages && stages[stages.length - 1].steps < 1) throw new Error(`atrous train: --steps ${steps} leaves the last stage no steps`);
      info.options = { ...info.options, ...(steps !== undefined ? { steps } : {}), ...(logEvery !== undefined ? { logEvery } : {}), ...(stages ? { stages } : {}) };
      checkTrainOptions(info.options);
      writeFileAtomic(run.file(RUN_FILE), `${JSON.stringify(info, null, 2)}\n`);
    }
    log(`resuming ${run.path} at step ${run.latest()?.step ?? 0} of ${info.options.steps}`);
  } else {
    const info: RunInfo = { format: RUN_FORMAT, created: new Date().toISOString(), options: parsed.options! };
    run = RunDir.create(parsed.out!, info);
    const o = parsed.options!;
    const plan = o.stages
      ? `${o.stages.length} stages (${o.stages.map((st) => `${st.steps} steps at output stride ${st.outputStride ?? o.config.outputStride}, lr ${st.lr}${st.freezeBatchNorm ? ', batch norm frozen' : ''}`).join('; ')})`
      : `output stride ${o.config.outputStride}, ${o.steps} steps, lr ${o.lr}`;
    log(`run ${run.path}: ${o.config.name} on ${o.dataset}, ${plan}, batch ${o.batch}${(o.accum ?? 1) > 1 ? ` × ${o.accum} accumulated` : ''}, ${o.crop}×${o.crop} crops, seed ${o.seed}`);
    // What the training labels can teach: per-class pixel counts, and warnings for classes that have none.
    await reportTrainLabels(run, o, log);
  }
  await init({ adapter: parsed.adapter });
  const tty = process.stdout.isTTY === true;
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write('\ninterrupted: saving a checkpoint (Ctrl-C again to quit at once)\n');
  };
  process.on('SIGINT', onSigint);
  let res: TrainResult;
  try {
    res = await train(run, {
      onProgress: (p) => {
        const line = formatProgress(p, tty);
        if (tty) process.stdout.write(`\r${line}\x1b[K`);
        else log(line);
      },
      onStage: (i, st) => {
        const line = `stage ${i + 1}: output stride ${st.outputStride}, lr ${st.lr}${st.freezeBatchNorm ? ', batch norm frozen' : ''}`;
        if (tty) process.stdout.write(`\n${line}\n`);
        else log(line);
      },
      onCheckpoint: (step, dir) => {
        if (!tty) log(`checkpoint step ${step}: ${dir}`);
      },
      shouldStop: () => interrupted,
    }, { resume: parsed.resume !== null });
  } finally {
    process.off('SIGINT', onSigint);
    if (tty) process.stdout.write('\n');
  }
  log(`${res.stopped ? 'stopped' : 'done'} at step ${res.step}: ${fmtDuration(res.seconds)}, ${res.imagesPerSecond.toFixed(1)} images/s; checkpoint ${run.latestFile('model.safetensors')}`);
  return res;
}

export const trainCommand: Command = {
  summary: 'train DeepLabv3 into a run directory (SGD, poly LR, atomic checkpoints, --resume)',
  usage: TRAIN_USAGE,
  async run(argv) {
    const res = await runTraining(parseTrainArgs(argv), argv);
    return res.stopped ? 130 : 0;
  },
};
