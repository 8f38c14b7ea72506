// `atrous eval`: confusion matrix, per-class IoU, mIoU and pixel accuracy of a run or a checkpoint.
import { readFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { init } from '../init.js';
import { modelFromCheckpoint, readCheckpoint, describeInference, type ResolvedInference } from '../io/checkpoint.js';
import { padMultipleOf, PADDINGS, type InferenceSettings, type Padding } from '../nn/inference.js';
import type { Triple } from '../data/augment.js';
import { openDataset } from '../data/index.js';
import { RunDir, writeFileAtomic } from '../train/rundir.js';
import { renderReport } from '../train/report.js';
import { encodePng } from '../io/image.js';
import { chwToRgb, overlayLabels } from '../data/pixels.js';
import { evaluate, type EvaluateResult } from '../train/evaluate.js';
import { formatMetrics } from '../train/metrics.js';
import type { RunInfo } from '../train/trainer.js';
import { intOpt } from './train.js';
import { checkRunLabelMap } from './data.js';
import { parse } from './args.js';
import type { Command } from './main.js';

export const EVAL_USAGE = [
  'usage: atrous eval (--run DIR | --weights FILE) [--dataset NAME] [--split val] [--count N]',
  '                   [--output-stride N] [--scales 0.5,0.75,1,1.25,1.5,1.75] [--flip]',
  '                   [--padding stride+1|none] [--no-pad] [--mean R,G,B --std R,G,B]',
  '                   [--batch B] [--json] [--report] [--overlays N] [--out DIR]',
  '',
  'Runs whole images (no crop) of the split through the model and prints per-class IoU, pixel accuracy',
  "and a closing line 'mIoU: 0.xxxx' (--json: one JSON object instead); classes without ground truth in",
  'the images are marked, and the line before says over how many classes the mean was taken.',
  "--run takes the run's latest checkpoint and its dataset; --weights takes any checkpoint file (then",
  '--dataset, default shapes).',
  'Default split val, all of it; --output-stride evaluates at another output stride than trained;',
  '--scales and --flip average the class probabilities over scaled and flipped inputs (Tables 4, 6);',
  'inputs are padded to k × output stride + 1, as the paper pads to 513 (--no-pad: not). --report writes eval.json,',
  'N overlays (default 6: image, ground truth, prediction) and report.html (loss curve, per-class IoU,',
  'overlays) into --out DIR, or into the run directory with --run.',
].join('\n');

export interface EvalArgs {
  run?: string;
  weights?: string;
  dataset?: string;
  split?: string;
  count?: number;
  outputStride?: number;
  batch?: number;
  adapter?: string;
  scales?: number[];
  flip?: boolean;
  /** Padding convention (default: the checkpoint's, else 'none'). */
  padding?: Padding;
  /** Input normalisation in 0..1 units (default: the checkpoint's, else ImageNet's). */
  normalization?: { mean: Triple; std: Triple };
  /** Samples kept with their predictions for overlays. */
  keep?: number;
}

export interface EvalOutcome extends EvaluateResult {
  weights: string;
  dataset: string;
  split: string;
  classNames: readonly string[];
  palette: Uint8Array;
  outputStride: number;
  /** The inference settings used, each with where it came from. */
  settings: ResolvedInference;
  /** Where the dataset came from: 'option' (--dataset), 'run', 'checkpoint' or 'default'. */
  datasetSource: string;
  /** The run directory evaluated (--run), if any. */
  run?: string;
}

/** Loads the weights and the dataset (errors before any GPU work where possible), then evaluates. */
export async function runEval(a: EvalArgs): Promise<EvalOutcome> {
  if ((a.run === undefined) === (a.weights === undefined)) throw new Error(`atrous eval: give exactly one of --run DIR or --weights FILE\n\n${EVAL_USAGE}`);
  let weights: string;
  let datasetSpec = a.dataset;
  let datasetSource = 'option';
  let dataSeed = 0;
  let run: RunDir | undefined;
  if (a.run !== undefined) {
    run = RunDir.open(a.run);
    const info = run.readRun<RunInfo>();
    weights = run.latestFile('model.safetensors');
    if (datasetSpec === undefined && info.options?.dataset !== undefined) [datasetSpec, datasetSource] = [info.options.dataset, 'run'];
    dataSeed = info.options?.dataSeed ?? 0;
  } else {
    weights = a.weights!;
    if (!existsSync(weights)) throw new Error(`atrous eval: ${weights}: no such checkpoint file`);
  }
  const bytes = readFileSync(weights);
  const settings: Partial<InferenceSettings> = {
    ...(a.outputStride !== undefined ? { outputStride: a.outputStride } : {}),
    ...(a.padding !== undefined ? { padding: a.padding } : {}),
    ...(a.normalization !== undefined ? { normalization: a.normalization } : {}),
  };
  // The checkpoint is parsed (and its settings checked) before the GPU starts; the model is built after.
  const loadModel = () => modelFromCheckpoint(bytes, { source: weights, settings });
  const named = readCheckpointDataset(bytes, weights);
  if (datasetSpec === undefined && named !== undefined) [datasetSpec, datasetSource] = [named, 'checkpoint'];
  if (datasetSpec === undefined) [datasetSpec, datasetSource] = ['shapes', 'default'];
  const split = a.split ?? 'val';
  let ds;
  try {
    ds = openDataset(datasetSpec, { split, seed: dataSeed });
  } catch (e) {
    if (datasetSource !== 'checkpoint') throw e;
    throw new Error(`atrous eval: ${weights} was trained on '${datasetSpec}', which cannot be opened here (${(e as Error).message}): give --dataset`);
  }
  if (run) checkRunLabelMap(run, ds);
  await init({ adapter: a.adapter });
  const { model, config, inference } = loadModel();
  try {
    if (config.numClasses !== ds.numClasses) {
      throw new Error(`atrous eval: ${weights} predicts ${config.numClasses} classes but ${ds.name} (${split}) has ${ds.numClasses}: wrong --dataset?`);
    }
    // Images of a directory dataset may differ in size: one per forward there.
    const batch = a.batch ?? (ds.name.startsWith('voc:') ? 1 : 4);
    const r = await evaluate(model, ds, {
      count: a.count, batchSize: batch, scales: a.scales, flip: a.flip, keep: a.keep,
      padMultiple: padMultipleOf(inference.values.padding, model.outputStride), normalization: inference.values.normalization,
    });
    return {
      ...r, weights, dataset: ds.name, split, classNames: ds.classNames, palette: ds.palette, outputStride: model.outputStride,
      settings: inference, datasetSource, ...(a.run !== undefined ? { run: a.run } : {}),
    };
  } finally {
    model.dispose();
  }
}

/** The dataset a checkpoint's metadata names (`dataset`, written by the trainers), if any. */
function readCheckpointDataset(bytes: Uint8Array, source: string): string | undefined {
  const d = readCheckpoint(bytes, source).metadata.dataset;
  return d === undefined || d === '' ? undefined : d;
}

/** The first line of eval's report: what was evaluated, with each setting and where it came from. */
export function evalSettingsLine(r: EvalOutcome): string {
  const from = r.datasetSource === 'option' ? 'given' : r.datasetSource === 'default' ? 'default' : `from the ${r.datasetSource}`;
  return `${r.weights} on ${r.dataset} (${r.split}; dataset ${from}), ${r.images} images, scales ${r.scales.join(',')}${r.flip ? ' + flip' : ''}, ${r.seconds.toFixed(1)} s\n` +
    `settings: ${describeInference(r.settings)}`;
}

/** The metrics as JSON (no kept samples, no palette). */
export function evalJson(r: EvalOutcome): string {
  const { classNames, kept, palette, settings, ...rest } = r;
  void kept;
  void palette;
  return `${JSON.stringify({ ...rest, classes: classNames, settings: settings.values, settingSources: settings.sources }, null, 2)}\n`;
}

/** A kept prediction as one PNG: the image, the ground truth over it and the prediction over it. */
function overlayPng(k: NonNullable<EvalOutcome['kept']>[number], palette: Uint8Array): Uint8Array {
  const { h, w } = k;
  const rgb = chwToRgb(k.image, h, w);
  const truth = overlayLabels(rgb, k.label, palette, 0.6);
  // Ignored pixels (255) are shown white in the ground truth.
  for (let i = 0; i < h * w; i++) if (k.label[i] === 255) truth.fill(255, 3 * i, 3 * i + 3);
  const panels = [rgb, truth, overlayLabels(rgb, k.pred, palette, 0.6)];
  const out = new Uint8Array(h * w * 3 * 3);
  for (let y = 0; y < h; y++) panels.forEach((p, j) => out.set(p.subarray(3 * y * w, 3 * (y + 1) * w), 3 * (y * 3 * w + j * w)));
  return encodePng(out, 3 * w, h);
}

/**
 * Writes eval.json, overlays/<id>.png for the kept samples and report.html into `dir` (each file
 * atomically); the loss curve comes from the run's metrics.jsonl when `dir` is a run.
 */
export async function writeEvalOutputs(dir: string, r: EvalOutcome): Promise<{ report: string; json: string; overlayDir: string; overlays: string[] }> {
  // Everything that can fail to read is read first; a failed write (a full disk) removes the outputs
  // already written, so a report is whole or absent.
  let losses: { step: number; loss: number }[] = [];
  const runDir = r.run ?? (existsSync(join(dir, 'run.json')) ? dir : undefined);
  if (runDir !== undefined) losses = RunDir.open(runDir).readMetrics().map((m) => ({ step: m.step, loss: m.loss }));
  const written: string[] = [];
  const write = (f: string, what: string, data: () => Uint8Array | string) => {
    writeFileAtomic(f, data(), what);
    written.push(f);
  };
  const overlayDir = join(dir, 'overlays');
  const json = join(dir, 'eval.json');
  const report = join(dir, 'report.html');
  const overlays: string[] = [];
  try {
    mkdirSync(overlayDir, { recursive: true });
    for (const k of r.kept ?? []) {
      const f = join(overlayDir, `${k.id}.png`);
      write(f, 'evaluation overlay', () => overlayPng(k, r.palette));
      overlays.push(f);
    }
    write(json, 'evaluation results', () => evalJson(r));
    write(report, 'evaluation report', () => renderReport({
      title: `atrous: ${r.dataset} (${r.split})`,
      settings: {
        checkpoint: r.weights, dataset: r.dataset, split: r.split, images: r.images, 'output stride': r.outputStride,
        padding: r.settings.values.padding, scales: r.scales.join(', '), flip: r.flip, 'evaluation seconds': +r.seconds.toFixed(1),
      },
      metrics: r, classNames: r.classNames, losses,
      overlays: (r.kept ?? []).map((k) => ({ file: `overlays/${k.id}.png`, id: k.id })),
    }));
  } catch (e) {
    for (const f of written) rmSync(f, { force: true });
    throw e;
  }
  return { report, json, overlayDir, overlays };
}

/** "0.485,0.456,0.406" → a triple, naming the option on a bad value. */
export function tripleOpt(cmd: string, name: string, v: string | undefined): Triple | undefined {
  if (v === undefined) return undefined;
  const p = v.split(',').map((s) => Number(s.trim()));
  if (p.length !== 3 || p.some((x) => !Number.isFinite(x))) throw new Error(`atrous ${cmd}: --${name} must be three numbers R,G,B, got '${v}'`);
  return p as Triple;
}

/** "0.5,1,1.5" → [0.5, 1, 1.5], naming the option on a bad value. */
export function scalesOpt(cmd: string, v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  const xs = v.split(',').map((s) => Number(s.trim()));
  if (!xs.length || xs.some((x) => !Number.isFinite(x) || x <= 0)) throw new Error(`atrous ${cmd}: --scales must be positive numbers separated by commas, got '${v}'`);
  return xs;
}

export const evalCommand: Command = {
  summary: 'evaluate a run or checkpoint: per-class IoU, mIoU, pixel accuracy; overlays and an HTML report',
  usage: EVAL_USAGE,
  async run(argv) {
    const { values: v } = parse('eval', argv, {
      run: { type: 'string' }, weights: { type: 'string' }, dataset: { type: 'string' }, split: { type: 'string' },
      count: { type: 'string' }, 'output-stride': { type: 'string' }, batch: { type: 'string' }, json: { type: 'boolean' },
      scales: { type: 'string' }, flip: { type: 'boolean' }, 'no-pad': { type: 'boolean' }, padding: { type: 'string' }, report: { type: 'boolean' },
      overlays: { type: 'string' }, out: { type: 'string' }, mean: { type: 'string' }, std: { type: 'string' },
    });
    if (v['no-pad'] && v.padding !== undefined) throw new Error('atrous eval: give --padding or --no-pad, not both');
    if (v.padding !== undefined && !(PADDINGS as readonly string[]).includes(v.padding)) throw new Error(`atrous eval: --padding must be ${PADDINGS.join(' or ')}, got '${v.padding}'`);
    const padding = v['no-pad'] ? 'none' : (v.padding as Padding | undefined);
    const mean = tripleOpt('eval', 'mean', v.mean);
    const std = tripleOpt('eval', 'std', v.std);
    if ((mean === undefined) !== (std === undefined)) throw new Error('atrous eval: --mean and --std go together');
    const report = v.report === true;
    if (report && v.out === undefined && v.run === undefined) throw new Error('atrous eval: --report needs --out DIR (or --run DIR, which receives it)');
    if (!report && (v.out !== undefined || v.overlays !== undefined)) throw new Error('atrous eval: --out and --overlays go with --report');
    const overlays = intOpt('eval', 'overlays', v.overlays, 0) ?? 6;
    const r = await runEval({
      run: v.run, weights: v.weights, dataset: v.dataset, split: v.split, adapter: v.adapter as string | undefined,
      count: intOpt('eval', 'count', v.count, 1), outputStride: intOpt('eval', 'output-stride', v['output-stride'], 1), batch: intOpt('eval', 'batch', v.batch, 1),
      scales: scalesOpt('eval', v.scales), flip: v.flip === true, padding, keep: report ? overlays : 0,
      ...(mean && std ? { normalization: { mean, std } } : {}),
    });
    const files = report ? await writeEvalOutputs(v.out ?? v.run!, r) : null;
    if (v.json) {
      process.stdout.write(evalJson(r));
      return 0;
    }
    console.log(`${evalSettingsLine(r)}\n`);
    console.log(formatMetrics(r, r.classNames));
    if (files) console.log(`\nreport: ${files.report} (${files.overlays.length} overlays in ${files.overlayDir})`);
    return 0;
  },
};
