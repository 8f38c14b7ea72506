// `atrous main` (what `npm start` runs): trains the `mini` configuration on the embedded `shapes`
// dataset with the two-stage schedule of §4.1 in configs/main.json (stage 1: output stride 16,
// training batch norm, lr 0.1; stage 2: output stride 8, frozen batch norm, lr 0.01), evaluates it
// on the held-out val split with the settings its checkpoint records (output stride 8, the last
// stage's), writes prediction overlays and an HTML report into the run directory, and prints where
// they are and the mIoU. Its budget is 15 minutes on a 2-core CPU through lavapipe; what it took
// is measured in the README ("Set-up").
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeTrainOptions, readJsonFile, runTraining, TRAIN_USAGE } from './train.js';
import { parseOptionFlag } from '../train/options.js';
import { runEval, writeEvalOutputs, evalSettingsLine } from './eval.js';
import { formatMetrics } from '../train/metrics.js';
import { parse } from './args.js';
import type { Command } from './main.js';

/** configs/main.json of this package (found from the compiled file's location). */
export const MAIN_CONFIG = resolve(dirname(fileURLToPath(import.meta.url)), '../../../configs/main.json');

const USAGE = [
  'usage: atrous main [--out DIR] [--config FILE] [--seed S] [--eval-output-stride N]',
  '',
  'Trains mini on shapes with configs/main.json (two stages: 700 steps at output stride 16, then 200 at',
  "output stride 8 with batch norm frozen), evaluates it on the held-out val split with the checkpoint's",
  "settings (output stride 8, the last stage's; --eval-output-stride N: another), writes overlays and",
  'report.html into the run and prints the run directory and the final mIoU. DIR defaults to runs/main-<time>. --config takes another training',
  'config file (see atrous train).',
  '',
  'The training options behave as in atrous train:',
  TRAIN_USAGE,
].join('\n');

export const startCommand: Command = {
  summary: 'the main job (npm start): train mini on shapes, evaluate on val, print the mIoU',
  usage: USAGE,
  async run(argv) {
    const { values: v } = parse('main', argv, {
      out: { type: 'string' }, config: { type: 'string' }, seed: { type: 'string' }, 'eval-output-stride': { type: 'string' },
    });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
    const out = v.out ?? join('runs', `main-${stamp}`);
    const evalOs = v['eval-output-stride'] !== undefined ? Number(v['eval-output-stride']) : undefined;
    if (evalOs !== undefined && (!Number.isInteger(evalOs) || evalOs < 4)) throw new Error(`atrous main: --eval-output-stride must be an integer >= 4, got '${v['eval-output-stride']}'`);
    const configFile = v.config ?? MAIN_CONFIG;
    const config = readJsonFile(configFile);
    if (!config) throw new Error(`atrous main: ${configFile}: no such config file`);
    const seed = parseOptionFlag('main', 'seed', v.seed);
    const { options, init } = nodeTrainOptions({ config, options: seed !== undefined ? { seed } : {} });
    const res = await runTraining({ options, out, resume: null, adapter: v.adapter as string | undefined, ...(init ? { init } : {}) });
    if (res.stopped) return 130;
    console.log('\nevaluating on the held-out val split (whole images) ...');
    const r = await runEval({ run: out, outputStride: evalOs, adapter: v.adapter as string | undefined, keep: 6 });
    console.log(`${evalSettingsLine(r)}\n`);
    console.log(formatMetrics(r, r.classNames));
    const files = await writeEvalOutputs(res.run.path, r);
    console.log(`\nrun directory: ${res.run.path}`);
    console.log(`report: ${files.report} (loss curve, per-class IoU, ${files.overlays.length} overlays in ${files.overlayDir})`);
    console.log(`training: ${res.step} steps, ${(res.seconds / 60).toFixed(1)} min, ${res.imagesPerSecond.toFixed(1)} images/s`);
    console.log(`final mIoU on shapes val (${r.images} images): ${r.miou.toFixed(4)}`);
    return 0;
  },
};
