// `npm run bench` / `atrous bench`: kernel microbenchmarks. Prints a table (or JSON lines with
// --json) and writes bench/results/<adapter>.json. Never asserts: numbers are for people.
//
// Timing: GPU timestamps around one compute pass where the adapter has 'timestamp-query', else
// wall-clock around a submit + onSubmittedWorkDone. Warm-up excluded, median of repeats.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { init, engine, tensor, tidy, keep, matmul, type Tensor } from '../src/index.js';
import { benchConv2d } from './conv2d.js';

export interface BenchRow {
  kernel: string;
  pass: string;
  impl: string;
  ms: number;
  gflops: number;
  adapter?: string;
  [shape: string]: unknown;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Times `record` (which must only record kernels): median ms over `repeats` after one warm-up. */
export async function timeKernel(record: () => void, repeats = 5): Promise<number> {
  const e = engine();
  record(); // warm-up: compiles pipelines, touches buffers
  await e.sync();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const gpu = await e.timeGpu(record);
    if (gpu !== null) times.push(gpu);
    else {
      const t0 = performance.now();
      record();
      await e.sync();
      times.push(performance.now() - t0);
    }
  }
  return median(times);
}

export async function benchMatmul(size: number, repeats: number): Promise<BenchRow> {
  const data = new Float32Array(size * size).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const [a, b] = tidy(() => [keep(tensor(data, [size, size])), keep(tensor(data, [size, size]))]);
  const outs: Tensor[] = [];
  const ms = await timeKernel(() => outs.push(matmul(a, b)), repeats);
  for (const t of [a, b, ...outs]) t.dispose();
  return { kernel: 'matmul', pass: 'forward', impl: 'atrous', m: size, n: size, k: size, ms, gflops: (2 * size ** 3) / (ms * 1e6) };
}

async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const quick = argv.includes('--quick');
  const e = await init();
  const adapter = e.adapterName;
  const repeats = quick ? 2 : 5;
  const rows: BenchRow[] = [];
  const emit = (r: BenchRow) => {
    r.adapter = adapter;
    rows.push(r);
    if (json) console.log(JSON.stringify(r));
    else {
      const shape = Object.entries(r)
        .filter(([k]) => !['kernel', 'pass', 'impl', 'ms', 'gflops', 'adapter'].includes(k))
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
      console.log(`${r.kernel.padEnd(8)} ${r.pass.padEnd(16)} ${r.impl.padEnd(7)} ${shape.padEnd(58)} ${r.ms.toFixed(2).padStart(9)} ms ${r.gflops.toFixed(2).padStart(7)} GFLOP/s`);
    }
  };
  if (!json) console.log(`adapter: ${adapter} (${e.hasTimestamps ? 'GPU timestamps' : 'wall clock'})`);
  emit(await benchMatmul(quick ? 256 : 1024, repeats));
  const convRows = await benchConv2d({
    n: 1,
    c: quick ? 32 : 256,
    hw: quick ? 17 : 65,
    dilations: quick ? [1, 6] : [1, 6, 12, 18],
    repeats,
  });
  for (const r of convRows) emit(r as unknown as BenchRow);
  const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${adapter.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 80)}${quick ? '.quick' : ''}.json`);
  writeFileSync(file, JSON.stringify({ adapter, date: new Date().toISOString(), rows }, null, 2) + '\n');
  if (!json) console.log(`results: ${file}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}

export { main as benchMain };
