// The conv2d kernel benchmark from the command line (the benchmark itself: src/bench/conv2d.ts).
//   node dist/bench/conv2d.js [--quick] [--variants]
// --variants: the forward pass only, once per forward kernel variant (register, tiled, subgroup),
// forced in turn (per shape, one variant's warm-up and repeats, then the next one's), at rates 1
// and 12, for the side-by-side in README "Kernel variants and autotune".

import { init } from '../src/index.js';
import { setConv2dVariant, CONV2D_VARIANTS } from '../src/ops/conv2d/index.js';
import { asppShapes, benchConv2d } from '../src/bench/conv2d.js';
import type { BenchRow } from '../src/bench/common.js';

const quick = process.argv.includes('--quick');
const variants = process.argv.includes('--variants');
const shapes = quick ? asppShapes({ n: 1, c: 32, sizes: [17], rates: [1, 6] }) : asppShapes({ sizes: [65], rates: variants ? [1, 12] : [1, 18] });
init()
  .then(async (e) => {
    if (!variants) return benchConv2d(shapes, { repeats: quick ? 2 : 5, adapter: e.adapterName });
    const rows: BenchRow[] = [];
    for (const s of shapes) {
      for (const v of CONV2D_VARIANTS) {
        setConv2dVariant(v);
        rows.push(...(await benchConv2d([s], { repeats: quick ? 2 : 3, adapter: e.adapterName, passes: ['forward'] })));
      }
    }
    setConv2dVariant(null);
    return rows;
  })
  .then((rows) => {
    for (const r of rows) console.log(`${r.pass.padEnd(16)} ${String(r.variant ?? '').padEnd(9)}n=${r.n} c=${r.cin} h=${r.h} d=${String(r.dilation).padEnd(3)} ${r.ms!.toFixed(1).padStart(8)} ms ${r.gflops!.toFixed(2).padStart(6)} GFLOP/s (dense ${(r.gflops_dense as number).toFixed(2)})`);
    process.exit(0);
  })
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
