// conv2d kernel benchmark at the ASPP shape (default 1×256×65×65 → 256, 3×3, padding = dilation):
// forward, backward-data and backward-weight timed separately, wall clock around
// `await engine().sync()`, one warm-up, median of `repeats`.
// GFLOP/s counts the useful work of a dense conv, 2·n·cout·oh·ow·cin·kh·kw, for every rate, so
// taps skipped by pruning show up as a higher effective rate. Never asserts.
//   node dist/bench/conv2d.js [--quick]
// No Node built-ins: the browser demo's Bench panel runs benchConv2d too.

import { init, engine, tensor, noGrad, type Tensor } from '../src/index.js';
import { conv2dGeometry, conv2dForward, conv2dBackwardData, conv2dBackwardWeight } from '../src/ops/conv2d.js';

export type Conv2dPass = 'forward' | 'backward-data' | 'backward-weight';

export interface Conv2dBenchRow {
  kernel: 'conv2d';
  pass: string;
  impl: 'atrous';
  n: number;
  cin: number;
  cout: number;
  h: number;
  w: number;
  k: number;
  stride: number;
  dilation: number;
  ms: number;
  gflops: number;
}

/** Deterministic values in [-0.5, 0.5) (an LCG: the benchmark needs data, not statistics). */
function values(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 4294967296 - 0.5;
  }
  return out;
}

async function timeMs(record: () => Tensor, repeats: number): Promise<number> {
  const e = engine();
  record().dispose(); // warm-up: pipelines compiled, pool buffers created
  await e.sync();
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    await e.sync();
    const t0 = performance.now();
    const out = record();
    await e.sync();
    times.push(performance.now() - t0);
    out.dispose();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

export async function benchConv2d(
  opts: { n?: number; c?: number; hw?: number; dilations?: number[]; repeats?: number; passes?: Conv2dPass[] } = {},
): Promise<Conv2dBenchRow[]> {
  const n = opts.n ?? 1;
  const c = opts.c ?? 256;
  const hw = opts.hw ?? 65;
  const k = 3;
  const repeats = opts.repeats ?? 5;
  const passes = opts.passes ?? ['forward', 'backward-data', 'backward-weight'];
  const rows: Conv2dBenchRow[] = [];
  const x = tensor(values(n * c * hw * hw, 1), [n, c, hw, hw]);
  const w = tensor(values(c * c * k * k, 2).map((v) => v * 0.1), [c, c, k, k]);
  try {
    for (const dilation of opts.dilations ?? [1, 6, 12, 18]) {
      const g = conv2dGeometry(x, w, null, { padding: dilation, dilation });
      const dy = tensor(values(n * c * g.oh * g.ow, 3), [n, c, g.oh, g.ow]);
      const flop = 2 * n * c * g.oh * g.ow * c * k * k;
      for (const pass of passes) {
        const record =
          pass === 'forward'
            ? () => conv2dForward(x, w, null, g)
            : pass === 'backward-data'
              ? () => conv2dBackwardData(dy, w, g)
              : () => conv2dBackwardWeight(x, dy, g);
        const ms = await timeMs(() => noGrad(record), repeats);
        rows.push({ kernel: 'conv2d', pass, impl: 'atrous', n, cin: c, cout: c, h: hw, w: hw, k, stride: 1, dilation, ms, gflops: flop / (ms * 1e6) });
      }
      dy.dispose();
    }
  } finally {
    x.dispose();
    w.dispose();
  }
  return rows;
}

// Run as a script? (No node:url import and no Node types: the browser demo bundles this module.)
const proc = (globalThis as { process?: { argv: string[]; exit(code: number): never } }).process;
if (proc?.argv[1] && decodeURIComponent(new URL(import.meta.url).pathname) === proc.argv[1]) {
  const quick = proc.argv.includes('--quick');
  init()
    .then(() => benchConv2d(quick ? { c: 64, hw: 33, dilations: [1, 18], repeats: 3 } : { dilations: [1, 18] }))
    .then((rows) => {
      for (const r of rows) console.log(`${r.pass.padEnd(16)} d=${String(r.dilation).padEnd(3)} ${r.ms.toFixed(1).padStart(8)} ms ${r.gflops.toFixed(2).padStart(6)} GFLOP/s`);
      proc.exit(0);
    })
    .catch((err) => {
      console.error(err);
      proc.exit(1);
    });
}
