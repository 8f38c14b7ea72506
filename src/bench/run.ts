// `npm run bench` / `npx atrous bench`: the benchmark suite. Prints a table (or, with --json, one
// JSON object per line), then writes bench/results/<adapter>.json and bench/results/<adapter>.md.
// Never asserts: the numbers are for people.
//
//   --quick            tiny sizes (seconds; what the test suite runs)
//   --json             one JSON object per row on stdout (and the Fig. 4 rows with "table": "fig4")
//   --compare LIST     tfjs and/or torch (comma-separated or repeated)
//   --only LIST        sections: matmul, conv, backbone, bn, resize, fig4, train
//   --repeats N        timed repeats per row (default 5; 3 for training steps; 2 with --quick)
//   --out DIR          where the results go (default bench/results)
//   --adapter NAME     the WebGPU adapter (as everywhere in atrous)
//
// Timing: common.ts. Rows: conv2d.ts, ops.ts, train-step.ts; the peers:
// tfjs.ts, torch.ts; Fig. 4: fig4.ts; the report: report.ts (all in src/bench/).

import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { init } from '../index.js';
import type { BenchRow } from './common.js';
import { asppShapes, backboneShapes, benchConv2d } from './conv2d.js';
import { benchMatmul, benchBatchNorm, benchResize } from './ops.js';
import { fig4Table, type Fig4Row } from './fig4.js';
import { benchTrainStep, trainStepFlops, type TrainStepCase } from './train-step.js';
import { markdown, targets } from './report.js';

export { median, timeKernels } from './common.js';
export type { BenchRow } from './common.js';

export const SECTIONS = ['matmul', 'conv', 'backbone', 'bn', 'resize', 'fig4', 'train'] as const;
export type Section = (typeof SECTIONS)[number];

export interface BenchOptions {
  quick?: boolean;
  json?: boolean;
  compare?: ('tfjs' | 'torch')[];
  only?: Section[];
  repeats?: number;
  outDir?: string;
  adapter?: string;
  /** Where text goes (default console.log). */
  log?: (line: string) => void;
}

export interface BenchResult {
  adapter: string;
  rows: BenchRow[];
  fig4: Fig4Row[];
  files: { json: string; md: string };
}

export const USAGE = `usage: atrous bench [--quick] [--json] [--compare tfjs,torch] [--only SECTIONS] [--repeats N] [--out DIR] [--adapter NAME]
  Kernel and training-step benchmarks: conv2d forward / backward-data / backward-weight at the ASPP
  and backbone shapes, batch norm, bilinear resize, matmul (the device's ceiling), the paper's
  Fig. 4 valid-weight table, and a training step of paper-r50-os16 and mini. GPU timestamps where
  the adapter has them, median of repeats. Writes bench/results/<adapter>.json and .md.
  --compare tfjs   the forward convolutions through @tensorflow/tfjs-backend-webgpu (same adapter)
  --compare torch  the training steps in PyTorch CPU (tools/torch_step.py; needs python3-torch)
  --only           ${SECTIONS.join(', ')}`;

// dist/src/bench → the package's bench/results
const DEFAULT_OUT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bench', 'results');

function fmtRow(r: BenchRow): string {
  const skip = new Set(['kernel', 'pass', 'impl', 'ms', 'gflops', 'adapter', 'timing', 'note', 'group', 'padding', 'w']);
  const shape = Object.entries(r)
    .filter(([k, v]) => !skip.has(k) && (typeof v === 'string' || Number.isInteger(v)))
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  const ms = r.ms === null ? 'n/a'.padStart(9) : r.ms.toFixed(2).padStart(9);
  const gf = r.gflops === null ? '' : `${r.gflops.toFixed(2).padStart(7)} GFLOP/s`;
  const extra = typeof r.gbs === 'number' ? ` ${r.gbs.toFixed(2).padStart(6)} GB/s` : '';
  const note = r.note ? `  (${r.note})` : '';
  return `${r.kernel.padEnd(10)} ${r.pass.padEnd(15)} ${r.impl.padEnd(6)} ${shape.padEnd(62)} ${ms} ms ${gf}${extra}${note}`;
}

export async function runBench(o: BenchOptions = {}): Promise<BenchResult> {
  const log = o.log ?? ((s: string) => console.log(s));
  const quick = !!o.quick;
  const only = new Set<Section>(o.only?.length ? o.only : SECTIONS);
  const compare = new Set(o.compare ?? []);
  const e = await init({ adapter: o.adapter });
  const adapter = e.adapterName;
  const repeats = o.repeats ?? (quick ? 2 : 5);
  const rows: BenchRow[] = [];
  const emit = (r: BenchRow) => {
    rows.push(r);
    log(o.json ? JSON.stringify(r) : fmtRow(r));
  };
  const common = { repeats, adapter, onRow: emit };
  if (!o.json) log(`adapter: ${adapter} (${e.hasTimestamps ? 'GPU timestamps' : 'wall clock'}; median of ${repeats}; GFLOP/s = useful work)`);

  if (only.has('matmul')) await benchMatmul(quick ? 64 : 1024, common);

  const aspp = quick ? asppShapes({ n: 1, c: 16, sizes: [17, 9], rates: [1, 6] }) : asppShapes();
  const backbone = quick ? backboneShapes(1, 16) : backboneShapes(2);
  if (only.has('conv')) await benchConv2d(aspp, common);
  if (only.has('backbone')) await benchConv2d(backbone, common);
  if (compare.has('tfjs') && (only.has('conv') || only.has('backbone'))) {
    const { benchTfjsConv } = await import('./tfjs.js');
    const shapes = [...(only.has('conv') ? aspp : []), ...(only.has('backbone') ? backbone : [])];
    await benchTfjsConv(shapes, { ...common, repeats: quick ? repeats : Math.min(repeats, 3), adapterOption: o.adapter });
  }

  if (only.has('bn')) {
    for (const s of (quick ? [[1, 8, 17, 17]] : [[2, 256, 65, 65], [2, 256, 33, 33]]) as [number, number, number, number][]) await benchBatchNorm(s, common);
  }
  if (only.has('resize')) {
    if (quick) {
      await benchResize([1, 3, 5, 5], 8, common);
      await benchResize([1, 3, 5, 5], 16, common);
    } else {
      await benchResize([2, 21, 65, 65], 8, common);
      await benchResize([2, 21, 33, 33], 16, common);
    }
  }

  if (only.has('train')) {
    const cases: TrainStepCase[] = quick ? [{ config: 'mini', n: 2, size: 33 }] : [
      { config: 'paper-r50-os16', n: 2, size: 129 }, { config: 'mini', n: 16, size: 65 },
      // The memory comparison's steps: peak bytes next to PyTorch's for the same step (batch 2 at
      // 513: PyTorch refuses to train batch norm on the 1×1 image-pooling map of a batch of 1).
      { config: 'mini', n: 2, size: 129 }, { config: 'mini', n: 2, size: 513 }, { config: 'paper-r50-os16', n: 2, size: 513 },
    ];
    const stepRepeats = o.repeats ?? (quick ? 1 : 3);
    for (const c of cases) emit(await benchTrainStep(c, { repeats: stepRepeats, adapter }));
    if (compare.has('torch')) {
      const { findTorchPython, torchTrainStep } = await import('./torch.js');
      const py = findTorchPython();
      const cpu = `cpu: ${cpus()[0]?.model?.trim() ?? 'unknown'} × ${cpus().length}`;
      for (const c of cases) {
        if (py) emit(torchTrainStep(py, c, { repeats: stepRepeats, adapter: cpu, flops: trainStepFlops(c) }));
        else emit({ kernel: 'train-step', pass: 'step', impl: 'torch', config: c.config, n: c.n, h: c.size, w: c.size, ms: null, gflops: null, adapter: cpu, note: 'no python3 with torch and torchvision found (apt-get install python3-torch python3-torchvision, or set ATROUS_PYTHON)' });
      }
    }
  }

  const fig4 = only.has('fig4') ? fig4Table() : [];
  if (fig4.length) {
    if (o.json) for (const f of fig4) log(JSON.stringify({ table: 'fig4', ...f }));
    else {
      log('');
      log('Fig. 4: a 3×3 filter with rate r and padding r on a 65×65 map: fraction of positions with k valid weights');
      const { fig4Markdown } = await import('./fig4.js');
      log(fig4Markdown(fig4));
    }
  }

  const dir = o.outDir ?? DEFAULT_OUT;
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `${adapter.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}${quick ? '.quick' : ''}`);
  const date = new Date().toISOString();
  const command = `atrous bench ${[quick ? '--quick' : '', compare.size ? `--compare ${[...compare].join(',')}` : '', o.only?.length ? `--only ${o.only.join(',')}` : '', o.repeats ? `--repeats ${o.repeats}` : ''].filter(Boolean).join(' ')}`.trim();
  const files = { json: `${base}.json`, md: `${base}.md` };
  writeFileSync(files.json, JSON.stringify({ adapter, date, command, node: process.version, rows, fig4 }, null, 2) + '\n');
  writeFileSync(files.md, markdown({ adapter, date, command, rows, fig4 }));
  if (!o.json) {
    const t = targets(rows);
    if (t.length) log(['', 'targets (issue 6), measured in this run:', ...t].join('\n'));
    log(`\nresults: ${files.json}\n         ${files.md}`);
  }
  return { adapter, rows, fig4, files };
}

/** Parses the command line of `atrous bench`. */
export function parseBenchArgs(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean' },
      json: { type: 'boolean' },
      compare: { type: 'string', multiple: true },
      only: { type: 'string', multiple: true },
      repeats: { type: 'string' },
      out: { type: 'string' },
      adapter: { type: 'string' },
    },
  });
  const list = (v: string[] | undefined) => (v ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  const compare = list(values.compare);
  for (const c of compare) if (c !== 'tfjs' && c !== 'torch') throw new Error(`--compare: '${c}' is not one of tfjs, torch`);
  const only = list(values.only);
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only: '${s}' is not one of ${SECTIONS.join(', ')}`);
  let repeats: number | undefined;
  if (values.repeats !== undefined) {
    repeats = Number(values.repeats);
    if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`--repeats must be an integer >= 1, got '${values.repeats}'`);
  }
  return {
    quick: values.quick, json: values.json, compare: compare as ('tfjs' | 'torch')[], only: only as Section[], repeats,
    outDir: values.out, adapter: values.adapter,
  };
}
