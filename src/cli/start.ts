// `atrous main` (what `npm start` runs): trains the `mini` configuration on the embedded `shapes`
// dataset, evaluates it on the held-out val split and prints where the run is and its mIoU.
//
// Budget: ~15 minutes on a 2-core CPU through lavapipe. Measured there: a batch-16 step at a
// 65×65 crop takes 0.7 to 0.8 s (~21 images/s), so MAIN_DEFAULTS.steps steps fill ~11 minutes
// and the evaluation of the 200 val images (129×129, whole) ~20 s more.
import { join } from 'node:path';
import { writeFileAtomic } from '../train/rundir.js';
import { formatMetrics } from '../train/metrics.js';
import { parseTrainArgs, runTraining, TRAIN_USAGE } from './train.js';
import { runEval } from './eval.js';
import { parse } from './args.js';
import type { Command } from './main.js';

export const MAIN_DEFAULTS = { steps: 900, batch: 16, crop: 65, lr: 0.05, seed: 0 };

const USAGE = [
  'usage: atrous main [--out DIR] [--steps N] [--batch B] [--crop C] [--lr L] [--seed S]',
  '',
  `Trains mini on shapes (defaults: ${MAIN_DEFAULTS.steps} steps of ${MAIN_DEFAULTS.batch}×${MAIN_DEFAULTS.crop}², lr ${MAIN_DEFAULTS.lr},`,
  'about 11 minutes on 2 CPU cores through lavapipe), evaluates it on the held-out val split and prints',
  "the run directory and the final mIoU; eval.json in the run holds the metrics. DIR defaults to runs/main-<time>.",
  '',
  'The training options behave as in atrous train:',
  TRAIN_USAGE,
].join('\n');

export const startCommand: Command = {
  summary: 'the main job (npm start): train mini on shapes, evaluate on val, print the mIoU',
  usage: USAGE,
  async run(argv) {
    const { values: v } = parse('main', argv, {
      out: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, crop: { type: 'string' }, lr: { type: 'string' }, seed: { type: 'string' },
    });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
    const out = v.out ?? join('runs', `main-${stamp}`);
    const args = [
      '--config', 'mini', '--dataset', 'shapes', '--out', out,
      '--steps', v.steps ?? String(MAIN_DEFAULTS.steps), '--batch', v.batch ?? String(MAIN_DEFAULTS.batch),
      '--crop', v.crop ?? String(MAIN_DEFAULTS.crop), '--lr', v.lr ?? String(MAIN_DEFAULTS.lr), '--seed', v.seed ?? String(MAIN_DEFAULTS.seed),
      ...(v.adapter !== undefined ? ['--adapter', v.adapter as string] : []),
    ];
    const res = await runTraining(parseTrainArgs(args), args);
    if (res.stopped) return 130;
    console.log('\nevaluating on shapes (val, whole 129×129 images) ...');
    const r = await runEval({ run: out, adapter: v.adapter as string | undefined });
    console.log(formatMetrics(r, r.classNames));
    const { classNames, ...rest } = r;
    writeFileAtomic(join(res.run.path, 'eval.json'), `${JSON.stringify({ ...rest, classes: classNames }, null, 2)}\n`);
    console.log(`\nrun directory: ${res.run.path}`);
    console.log(`training: ${res.step} steps, ${(res.seconds / 60).toFixed(1)} min, ${res.imagesPerSecond.toFixed(1)} images/s`);
    console.log(`final mIoU on shapes val (${r.images} images): ${r.miou.toFixed(4)}`);
    return 0;
  },
};
