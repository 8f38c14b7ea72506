// Fine-tuning against training from scratch, at equal steps: the measurement behind the README's
// "Fine-tuning" table.
//
//   npm run build && node dist/bench/finetune.js --data DIR --init weights/mini-shapes.safetensors \
//     [--steps 300] [--every 50] [--batch 8] [--lr 0.02] [--out bench/results/finetune-shapes-merged.json]
//
// Two runs of `atrous train` with the same options (model, data, batch, crop, lr, seed), one from
// --init, one from the seed; a copy of the weights is kept every --every steps (the run directory
// keeps only its two newest checkpoints) and each copy is evaluated on the whole val split of DIR
// (`atrous eval --weights`: the checkpoint's output stride and padding). Writes the mIoU of every
// copy of both runs to --out (JSON) and prints a table.

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
    batch: { type: 'string', default: '8' }, lr: { type: 'string', default: '0.02' }, seed: { type: 'string', default: '0' },
    out: { type: 'string', default: 'bench/results/finetune-shapes-merged.json' }, work: { type: 'string' },
  },
});
if (!v.data || !v.init) throw new Error('finetune: --data DIR and --init FILE are required');
const steps = Number(v.steps);
const every = Number(v.every);
const work = v.work ?? mkdtempSync(join(tmpdir(), 'atrous-finetune-'));

async function one(name: string, initFile: string | undefined): Promise<{ step: number; miou: number; iou: (number | null)[] }[]> {
  const { options, init: record } = nodeTrainOptions({
    config: 'mini', dataset: `voc:${v.data}`, init: initFile,
    options: { steps, batch: Number(v.batch), lr: Number(v.lr), seed: Number(v.seed), checkpointEvery: every, logEvery: every },
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
  const finetune = await one('finetune', v.init);
  const scratch = await one('scratch', undefined);
  const result = {
    what: 'mIoU on the val split of --data (whole images) after each number of steps: fine-tuned from --init vs trained from the seed',
    command: `node dist/bench/finetune.js ${process.argv.slice(2).join(' ')}`,
    data: v.data, init: v.init, model: 'mini', steps, every, batch: Number(v.batch), lr: Number(v.lr), seed: Number(v.seed),
    created: new Date().toISOString(), finetune, scratch,
  };
  writeFileSync(v.out!, `${JSON.stringify(result, null, 2)}\n`);
  console.log('\n| step | fine-tuned mIoU | from scratch mIoU |\n|---|---|---|');
  for (let i = 0; i < finetune.length; i++) console.log(`| ${finetune[i].step} | ${finetune[i].miou.toFixed(4)} | ${scratch[i]?.miou.toFixed(4) ?? '?'} |`);
  console.log(`\nwritten ${v.out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
