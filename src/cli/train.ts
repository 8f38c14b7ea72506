// `atrous train`: trains DeepLabv3 into a run directory (or resumes one). This module parses flags
// and reads files; what the options are, their defaults, their checks and the config-file schema
// live in src/train/options.ts.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { init } from '../init.js';
import { CONFIGS } from '../nn/configs.js';
import { openDataset } from '../data/index.js';
import { RunDir, writeFileAtomic, RUN_FILE, METRICS_FILE, CHECKPOINT_DIR } from '../train/rundir.js';
import { train, formatProgress, fmtDuration, readInitFile, checkInitFile, RUN_FORMAT, type InitRecord, type RunInfo, type TrainResult } from '../train/trainer.js';
import { describeInitReport, initKind, INIT_KIND_NAMES } from '../train/init-weights.js';
import {
  RECIPE_OPTIONS, FREEZE_FLAGS, TRAIN_DEFAULTS as D, TRAIN_FILE_KEYS, parseOptionFlag, resolveTrainOptions, resumeOptions, describePlan, describeFreezing,
  type RecipeOptions, type TrainConfigFile, type TrainOptions, type TrainRequest,
} from '../train/options.js';
import { parse } from './args.js';
import { reportTrainLabels, RUN_LABELS_FILE } from './data.js';
import type { Command } from './main.js';

export const TRAIN_USAGE = [
  'usage: atrous train --out DIR [--config NAME|FILE] [--dataset shapes|fashion-scenes|voc:DIR] [--output-stride 8|16|32]',
  '                    [--init FILE] [--freeze-backbone] [--freeze-batch-norm]',
  `                    ${RECIPE_OPTIONS.map((s) => `[--${s.flag} ${s.integer ? 'N' : 'X'}]`).join(' ').replace(/(.{1,84})(\s|$)/g, '$1\n                    ').trimEnd()}`,
  '       atrous train --resume DIR [--steps N] [--log-every N]',
  '',
  `Trains with SGD (momentum ${D.momentum}, weight decay ${D.weightDecay}) and the poly learning rate (power ${D.power}),`,
  'cross entropy ignoring 255 on logits upsampled to the crop; random scale, crop and flip (§4.1).',
  `Defaults: --config mini --dataset shapes ${RECIPE_OPTIONS.map((s) => `--${s.flag} ${D[s.key]}`).join(' ')}`.replace(/(.{1,100})(\s|$)/g, '$1\n').trimEnd(),
  `--config takes a name (${Object.keys(CONFIGS).join(', ')}) or a JSON file: a model config, or a training`,
  `config {"model": NAME|{...}, ${TRAIN_FILE_KEYS.filter((k) => k !== 'model' && k !== 'stages').map((k) => `"${k}"`).join(', ')},`,
  '"stages": [{"steps", "lr", "outputStride", "freezeBatchNorm", "freezeBackbone", "headLrMult"}, ...]} (the',
  'two-stage schedule of §4.1 in one file; a stage\'s settings override the run\'s; flags override the file).',
  '--accum K sums the gradients of K batches per step (effective batch B×K).',
  'numClasses always follows the dataset. --log-every N reads the loss back from the GPU every N steps.',
  '--init FILE starts a new run from weights: an atrous checkpoint, a torchvision DeepLabv3 or FCN export, or a',
  'ResNet classification state dict (tools/export_torchvision.py); the model is --config\'s, else the file\'s.',
  'With another class count than the file, the last classifier layer (and the aux one) is re-initialised;',
  'any other tensor that does not fit is an error. --freeze-backbone stops the backbone (parameters and batch',
  'norm statistics), --freeze-batch-norm every batch norm (statistics, weight, bias); --head-lr-mult X trains',
  'classifier.* and aux_classifier.* at lr × X. Frozen parameters get no gradient and no weight decay.',
  'DIR receives run.json, metrics.jsonl, checkpoints/ and latest.json;',
  'checkpoints (weights, momentum buffers, step, RNG state) are atomic. --resume continues the run in DIR',
  'from its latest checkpoint, with its optimizer state (--steps may extend it); it never takes --init.',
  'Ctrl-C, SIGTERM and SIGHUP save a checkpoint and exit (status 130, 143, 129). One process trains',
  'into a run at a time (DIR/train.lock names it).',
].join('\n');

/** An integer flag of any command: "atrous eval: --count must be an integer >= 1, got 'x'". */
export function intOpt(cmd: string, name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) throw new Error(`atrous ${cmd}: --${name} must be an integer >= ${min}, got '${v}'`);
  return n;
}

const TRAIN_FLAGS = {
  config: { type: 'string' }, dataset: { type: 'string' }, out: { type: 'string' }, 'output-stride': { type: 'string' }, resume: { type: 'string' },
  init: { type: 'string' }, ...Object.fromEntries(FREEZE_FLAGS.map((f) => [f.flag, { type: 'boolean' }])),
  ...Object.fromEntries(RECIPE_OPTIONS.map((s) => [s.flag, { type: 'string' }])),
} as const;

/** A JSON file's contents for a config, or null when `path` is no file. */
export function readJsonFile(path: string): TrainConfigFile | null {
  if (!existsSync(path)) return null;
  try {
    return { name: path, json: JSON.parse(readFileSync(path, 'utf8')) };
  } catch (e) {
    throw new Error(`atrous train: ${path}: not a JSON config: ${(e as Error).message}`);
  }
}

/** The parsed command: a new run's options and directory, or a run to resume with what may change. */
export interface ParsedTrain {
  options: TrainOptions | null;
  out: string | null;
  resume: string | null;
  resumeChange?: { steps?: number; logEvery?: number };
  adapter?: string;
  /** The init file, checked against the model (a new run with options.init). */
  init?: InitRecord;
}

/** Parses `atrous train` flags into the run to start or resume (nothing is written yet). */
export function parseTrainArgs(argv: string[]): ParsedTrain {
  const { values: v } = parse('train', argv, TRAIN_FLAGS);
  const given = v as Record<string, string | undefined>;
  const adapter = v.adapter as string | undefined;
  if (v.resume !== undefined && v.init !== undefined) {
    throw new Error('atrous train: --init starts a new run from the weights of a file, --resume continues a run with its own weights and optimizer state: give one of them');
  }
  if (v.resume !== undefined) {
    const others = Object.keys(given).filter((k) => !['resume', 'steps', 'adapter', 'log-every'].includes(k) && given[k] !== undefined);
    if (others.length) throw new Error(`atrous train: --resume continues a run with its own settings; drop --${others.join(', --')} (only --steps and --log-every may change)`);
    return {
      options: null, out: null, resume: v.resume, adapter,
      resumeChange: { steps: parseOptionFlag('train', 'steps', given.steps), logEvery: parseOptionFlag('train', 'logEvery', given['log-every']) },
    };
  }
  if (v.out === undefined) throw new Error(`atrous train: --out DIR is required (or --resume DIR)\n\n${TRAIN_USAGE}`);
  const flags: Partial<RecipeOptions> = {};
  for (const s of RECIPE_OPTIONS) {
    const x = parseOptionFlag('train', s.key, given[s.flag]);
    if (x !== undefined) flags[s.key] = x;
  }
  const spec = v.config;
  let config: string | TrainConfigFile | undefined = spec;
  if (spec !== undefined && !CONFIGS[spec]) {
    const file = readJsonFile(spec);
    if (!file) throw new Error(`atrous train: unknown model configuration '${spec}' (known: ${Object.keys(CONFIGS).join(', ')}; or a JSON file)`);
    config = file;
  }
  const freeze = Object.fromEntries(FREEZE_FLAGS.filter((f) => given[f.flag] !== undefined).map((f) => [f.key, true]));
  const { options, init } = nodeTrainOptions({
    config, dataset: v.dataset, outputStride: intOpt('train', 'output-stride', v['output-stride'], 1), options: flags, init: v.init as string | undefined, freeze,
  });
  return { options, resume: null, out: v.out, adapter, ...(init ? { init } : {}) };
}

/**
 * resolveTrainOptions with the datasets, model-config files and init files of this machine; an
 * init file is read and checked against the model here, before anything is written.
 */
export function nodeTrainOptions(req: TrainRequest): { options: TrainOptions; init?: InitRecord } {
  let read: ReturnType<typeof readInitFile> | null = null;
  const readInit = (path: string) => (read ??= readInitFile(path));
  // The dataset is opened here so a missing directory or unknown name fails before anything is written.
  const options = resolveTrainOptions(req, (dataset, dataSeed) => openDataset(dataset, { split: 'train', seed: dataSeed }).numClasses, readJsonFile,
    (path) => {
      const { checkpoint } = readInit(path);
      initKind(checkpoint, path); // a file that is no weights to start from fails here, naming itself
      return checkpoint.config;
    });
  if (options.init === undefined) return { options };
  return { options, init: checkInitFile(options.init, options.config, readInit(options.init)).record };
}

/** The stop signals training answers with a checkpoint, and the conventional exit status of each. */
export const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
export type StopSignal = keyof typeof STOP_SIGNALS;

/** Runs a parsed training command end to end: creates or reopens the run, trains, logs. */
export async function runTraining(parsed: ParsedTrain, log: (s: string) => void = console.log): Promise<TrainResult & { signal?: StopSignal }> {
  let run: RunDir;
  let newOptions: TrainOptions | undefined;
  let info: RunInfo | undefined;
  let created = false;
  if (parsed.resume !== null) {
    run = RunDir.open(parsed.resume);
    run.lock();
    info = run.readRun<RunInfo>();
    const change = parsed.resumeChange ?? {};
    if (change.steps !== undefined || change.logEvery !== undefined) newOptions = resumeOptions(info.options, run.latest()?.step ?? 0, change);
    log(`resuming ${run.path} at step ${run.latest()?.step ?? 0} of ${(newOptions ?? info.options).steps}`);
  } else {
    const fresh: RunInfo = { format: RUN_FORMAT, created: new Date().toISOString(), options: parsed.options!, ...(parsed.init ? { init: parsed.init } : {}) };
    created = !existsSync(parsed.out!);
    run = RunDir.create(parsed.out!, fresh, { lock: true });
    log(`run ${run.path}: ${describePlan(parsed.options!)}`);
    if (parsed.init) {
      const r = parsed.init.report;
      log(`init ${parsed.init.file} (${INIT_KIND_NAMES[r.kind]}, sha256 ${parsed.init.sha256.slice(0, 12)}…): ${describeInitReport(r)}`);
    }
  }
  const stale = run.removeLeftovers();
  if (stale.length) log(`removed ${stale.length} leftover${stale.length > 1 ? 's' : ''} of an interrupted write: ${stale.join(', ')}`);
  const tty = process.stdout.isTTY === true;
  let signal: StopSignal | undefined;
  const handlers = Object.keys(STOP_SIGNALS).map((name) => {
    const sig = name as StopSignal;
    const h = () => {
      if (signal) process.exit(STOP_SIGNALS[signal]);
      signal = sig;
      // A closed terminal (SIGHUP) makes writes to it fail: they must not stop the checkpoint.
      if (sig === 'SIGHUP') for (const s of [process.stdout, process.stderr]) s.on('error', () => {});
      try {
        process.stderr.write(`\n${sig === 'SIGINT' ? 'interrupted' : `${sig} received`}: saving a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : 'a second signal'} again to quit at once)\n`);
      } catch {
        /* no terminal left */
      }
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  let res: TrainResult;
  try {
    if (!info) await reportTrainLabels(run, parsed.options!, log); // what the training labels can teach
    await init({ adapter: parsed.adapter });
    res = await train(run, {
      onProgress: (p) => {
        const line = formatProgress(p, tty);
        if (tty) process.stdout.write(`\r${line}\x1b[K`);
        else log(line);
      },
      onStage: (i, st) => {
        const line = `stage ${i + 1}: output stride ${st.outputStride}, lr ${st.lr}${describeFreezing(st)}`;
        if (tty) process.stdout.write(`\n${line}\n`);
        else log(line);
      },
      onCheckpoint: (step, dir) => {
        if (!tty) log(`checkpoint step ${step}: ${dir}`);
      },
      // A resume's new --steps / --log-every are saved only once its checkpoint has loaded.
      onReady: () => {
        if (info && newOptions) writeFileAtomic(run.file(RUN_FILE), `${JSON.stringify({ ...info, options: newOptions }, null, 2)}\n`, 'the run description');
      },
      shouldStop: () => signal !== undefined,
    }, { resume: parsed.resume !== null, options: newOptions });
  } catch (e) {
    // A new run that failed before its first step leaves nothing that blocks the same command.
    if (!info && run.latest() === null && !existsSync(run.file(METRICS_FILE))) {
      run.unlock();
      if (created) rmSync(run.path, { recursive: true, force: true });
      else for (const f of [RUN_FILE, RUN_LABELS_FILE, CHECKPOINT_DIR]) rmSync(run.file(f), { recursive: true, force: true });
    } else if (/^atrous: (out of GPU memory|GPU error)/.test((e as Error).message)) {
      // A device fault (out of memory, device lost): say what is kept.
      const last = run.latest();
      throw new Error(`${(e as Error).message}; training stopped: ${last ? `the last checkpoint (step ${last.step}) is kept in ${run.path}` : 'no checkpoint was written yet'}`);
    }
    throw e;
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
    run.unlock();
    if (tty) process.stdout.write('\n');
  }
  log(`${res.stopped ? 'stopped' : 'done'} at step ${res.step}: ${fmtDuration(res.seconds)}, ${res.imagesPerSecond.toFixed(1)} images/s; checkpoint ${run.latestFile('model.safetensors')}`);
  return { ...res, ...(res.stopped && signal ? { signal } : {}) };
}

export const trainCommand: Command = {
  summary: 'train DeepLabv3 into a run directory (SGD, poly LR, atomic checkpoints, --resume)',
  usage: TRAIN_USAGE,
  async run(argv) {
    const res = await runTraining(parseTrainArgs(argv));
    return res.stopped ? STOP_SIGNALS[res.signal ?? 'SIGINT'] : 0;
  },
};
