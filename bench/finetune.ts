// Fine-tuning against training from scratch, at equal steps: the measurement behind the README's
// "Fine-tuning" table.
//
//   npm run build && node dist/bench/finetune.js --data DIR --init weights/mini-shapes.safetensors \
//     [--steps 300] [--every 50] [--batch 8] [--lr 0.02] [--seeds 0,1] [--out bench/results/finetune-shapes-merged.json]
//
// Runs of `atrous train` with the same options (model, data, batch, crop, lr), per seed: from
// --init ("finetune"), from --init with the backbone frozen ("finetune-frozen-backbone") and from
// the seed ("scratch"); a copy of the weights is kept every --every steps (the run directory keeps
// only its two newest checkpoints) and each copy is evaluated on the whole val split of DIR
// (`atrous eval --weights`: the checkpoint's output stride and padding). Writes the mIoU of every
// copy of every run to --out (JSON) and prints a table of the means over the seeds.

import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { init } from '../src/index.js';
import { RunDir, train, RUN_FORMAT, type RunInfo } from '../src/train/index.js';
import { nodeTrainOptions } from '../src/cli/train.js';
import { runEval } from '../src/cli/eval.js';

const { values: v } = parseArgs({
  options: {
    data: { type: 'string' }, init: { type: 'string' }, steps: { type: 'string', default: '300' }, every: { type: 'string', default: '50' },
    batch: { type: 'string', default: '8' }, lr: { type: 'string', default: '0.02' }, seeds: { type: 'string', default: '0,1' },
    out: { type: 'string', default: 'bench/results/finetune-shapes-merged.json' }, work: { type: 'string' },
  },
});
if (!v.data || !v.init) throw new Error('finetune: --data DIR and --init FILE are required');
const steps = Number(v.steps);
const every = Number(v.every);
const work = v.work ?? mkdtempSync(join(tmpdir(), 'atrous-finetune-'));

const seeds = v.seeds!.split(',').map(Number);

interface Point { step: number; miou: number; iou: (number | null)[] }

const VARIANTS: Record<string, { init: boolean; freeze?: { freezeBackbone: boolean } }> = {
  finetune: { init: true },
  'finetune-frozen-backbone': { init: true, freeze: { freezeBackbone: true } },
  scratch: { init: false },
};

async function one(variant: string, seed: number): Promise<Point[]> {
  const name = `${variant}-seed${seed}`;
  const vv = VARIANTS[variant];
  const { options, init: record } = nodeTrainOptions({
    config: 'mini', dataset: `voc:${v.data}`, init: vv.init ? v.init : undefined, freeze: vv.freeze,
    options: { steps, batch: Number(v.batch), lr: Number(v.lr), seed, checkpointEvery: every, logEvery: every },
  });
  const dir = join(work, name);
  const info: RunInfo = { format: RUN_FORMAT, created: new Date().toISOString(), options, ...(record ? { init: record } : {}) };
  const run = RunDir.create(dir, info);
  const snaps = join(dir, 'snapshots');
  mkdirSync(snaps);
  const copies: { step: number; file: string }[] = [];
  const t0 = performance.now();
  await train(run, {
    onCheckpoint: (step, ck) => {
      const file = join(snaps, `step-${step}.safetensors`);
      copyFileSync(join(ck, 'model.safetensors'), file);
      copies.push({ step, file });
    },
    onProgress: (p) => process.stdout.write(`${name} step ${p.step}/${p.steps} loss ${p.loss.toFixed(4)}\n`),
  });
  console.log(`${name}: ${steps} steps in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const out = [];
  for (const c of copies) {
    const r = await runEval({ weights: c.file, dataset: `voc:${v.data}`, batch: 4 });
    console.log(`${name} step ${c.step}: mIoU ${r.miou.toFixed(4)}`);
    out.push({ step: c.step, miou: r.miou, iou: r.iou });
  }
  return out;
}

async function main(): Promise<void> {
  await init();
  const runs: Record<string, Record<string, Point[]>> = {};
  for (const variant of Object.keys(VARIANTS)) {
    runs[variant] = {};
    for (const seed of seeds) runs[variant][`seed${seed}`] = await one(variant, seed);
  }
  const mean = Object.fromEntries(Object.entries(runs).map(([variant, bySeed]) => {
    const curves = Object.values(bySeed);
    return [variant, curves[0].map((p, i) => ({ step: p.step, miou: curves.reduce((a, c) => a + c[i].miou, 0) / curves.length }))];
  }));
  const result = {
    what: 'mIoU on the val split of --data (whole images, the checkpoint\'s output stride) after each number of steps: fine-tuned from --init, the same with the backbone frozen, and trained from the seed',
    command: `node dist/bench/finetune.js ${process.argv.slice(2).join(' ')}`,
    data: v.data, init: v.init, model: 'mini', steps, every, batch: Number(v.batch), lr: Number(v.lr), seeds,
    created: new Date().toISOString(), mean, runs,
  };
  writeFileSync(v.out!, `${JSON.stringify(result, null, 2)}\n`);
  const names = Object.keys(VARIANTS);
  console.log(`\n| step | ${names.join(' | ')} |\n|---|${names.map(() => '---|').join('')}`);
  for (let i = 0; i < mean.finetune.length; i++) {
    console.log(`| ${mean.finetune[i].step} | ${names.map((n) => `${mean[n][i].miou.toFixed(4)} (${Object.values(runs[n]).map((c) => c[i].miou.toFixed(3)).join(', ')})`).join(' | ')} |`);
  }
  console.log(`\nwritten ${v.out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
