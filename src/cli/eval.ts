// `atrous eval`: confusion matrix, per-class IoU, mIoU and pixel accuracy of a run or a checkpoint.
import { readFileSync, existsSync } from 'node:fs';
import { init } from '../gpu/engine.js';
import { modelFromCheckpoint } from '../io/checkpoint.js';
import { openDataset } from '../data/index.js';
import { RunDir } from '../train/rundir.js';
import { evaluate, type EvaluateResult } from '../train/evaluate.js';
import { formatMetrics } from '../train/metrics.js';
import type { RunInfo } from '../train/trainer.js';
import { intOpt } from './train.js';
import { parse } from './args.js';
import type { Command } from './main.js';

export const EVAL_USAGE = [
  'usage: atrous eval (--run DIR | --weights FILE) [--dataset NAME] [--split val] [--count N]',
  '                   [--output-stride N] [--batch B] [--json]',
  '',
  'Runs whole images (no crop) of the split through the model and prints per-class IoU, pixel accuracy',
  "and a closing line 'mIoU: 0.xxxx' (--json: one JSON object instead). --run takes the run's latest",
  'checkpoint and its dataset; --weights takes any checkpoint file (then --dataset, default shapes).',
  'Default split val, all of it; --output-stride evaluates at another output stride than trained.',
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
}

export interface EvalOutcome extends EvaluateResult {
  weights: string;
  dataset: string;
  split: string;
  classNames: readonly string[];
  outputStride: number;
}

/** Loads the weights and the dataset (errors before any GPU work where possible), then evaluates. */
export async function runEval(a: EvalArgs): Promise<EvalOutcome> {
  if ((a.run === undefined) === (a.weights === undefined)) throw new Error(`atrous eval: give exactly one of --run DIR or --weights FILE\n\n${EVAL_USAGE}`);
  let weights: string;
  let datasetSpec = a.dataset;
  let dataSeed = 0;
  if (a.run !== undefined) {
    const run = RunDir.open(a.run);
    const info = run.readRun<RunInfo>();
    weights = run.latestFile('model.safetensors');
    datasetSpec ??= info.options?.dataset;
    dataSeed = info.options?.dataSeed ?? 0;
  } else {
    weights = a.weights!;
    if (!existsSync(weights)) throw new Error(`atrous eval: ${weights}: no such checkpoint file`);
  }
  const split = a.split ?? 'val';
  const ds = openDataset(datasetSpec ?? 'shapes', { split, seed: dataSeed });
  const bytes = readFileSync(weights);
  await init({ adapter: a.adapter });
  const { model, config } = modelFromCheckpoint(bytes, { source: weights, outputStride: a.outputStride });
  try {
    if (config.numClasses !== ds.numClasses) {
      throw new Error(`atrous eval: ${weights} predicts ${config.numClasses} classes but ${ds.name} (${split}) has ${ds.numClasses}: wrong --dataset?`);
    }
    // Images of a directory dataset may differ in size: one per forward there.
    const batch = a.batch ?? (ds.name.startsWith('voc:') ? 1 : 4);
    const r = await evaluate(model, ds, { count: a.count, batchSize: batch });
    return { ...r, weights, dataset: ds.name, split, classNames: ds.classNames, outputStride: model.outputStride };
  } finally {
    model.dispose();
  }
}

export const evalCommand: Command = {
  summary: 'evaluate a run or checkpoint: per-class IoU, mIoU, pixel accuracy',
  usage: EVAL_USAGE,
  async run(argv) {
    const { values: v } = parse('eval', argv, {
      run: { type: 'string' }, weights: { type: 'string' }, dataset: { type: 'string' }, split: { type: 'string' },
      count: { type: 'string' }, 'output-stride': { type: 'string' }, batch: { type: 'string' }, json: { type: 'boolean' },
    });
    const r = await runEval({
      run: v.run, weights: v.weights, dataset: v.dataset, split: v.split, adapter: v.adapter as string | undefined,
      count: intOpt('eval', 'count', v.count, 1), outputStride: intOpt('eval', 'output-stride', v['output-stride'], 1), batch: intOpt('eval', 'batch', v.batch, 1),
    });
    if (v.json) {
      const { classNames, ...rest } = r;
      console.log(JSON.stringify({ ...rest, classes: classNames }, null, 2));
      return 0;
    }
    console.log(`${r.weights} on ${r.dataset} (${r.split}), ${r.images} images, output stride ${r.outputStride}, ${r.seconds.toFixed(1)} s\n`);
    console.log(formatMetrics(r, r.classNames));
    return 0;
  },
};
