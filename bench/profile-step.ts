// Per-dispatch GPU profile of one DeepLabv3 training step (as src/bench/train-step.ts runs it).
//
//   npm run build && node dist/bench/profile-step.js [config] [batch] [size]
//   (defaults: paper-r50-os16 2 129)
//
// Engine.prototype.run is wrapped so that, during the profiled step, every dispatch is recorded in
// its own compute pass with timestamp writes (needs 'timestamp-query'). The per-dispatch times are
// grouped by shader (+ entry) and by (shader, workgroups, binding sizes), i.e. by shape. Wall clock
// of an unprofiled step is printed beside them: the difference is the cost of passes/submits and the
// CPU recording the step, not kernels. Same fixed random batch and optimizer as the bench.

import { engine, init } from '../src/index.js';
import { Engine, type KernelCall } from '../src/gpu/engine.js';
import { precompileTrainStep } from '../src/train/precompile.js';
import { trainStepFixture } from '../src/bench/train-step.js';

const [config = 'paper-r50-os16', nArg = '2', sizeArg = '129'] = process.argv.slice(2);
const n = Number(nArg);
const size = Number(sizeArg);

interface Rec { shader: string; key: string; q: number }

async function main(): Promise<void> {
  await init();
  const e = engine();
  if (!e.hasTimestamps) throw new Error('profile-step: the adapter has no timestamp-query');
  const { model, opt, step, dispose } = trainStepFixture({ config, n, size });
  await precompileTrainStep(model, opt, n, size, size);
  for (let i = 0; i < 2; i++) { step(); await e.sync(); }
  const wall: number[] = [];
  for (let i = 0; i < 3; i++) {
    const s0 = e.stats();
    const t0 = performance.now();
    step();
    await e.sync();
    wall.push(performance.now() - t0);
    if (i === 0) console.log(`dispatches/step ${e.stats().dispatches - s0.dispatches}, submits/step ${e.stats().submits - s0.submits}`);
  }
  wall.sort((a, b) => a - b);
  const wallMs = wall[1];

  // Profiled step: one pass per dispatch.
  const QS = 4096;
  const sets: GPUQuerySet[] = [];
  const recs: Rec[] = [];
  const orig = Engine.prototype.run;
  const anyE = e as unknown as { pass: GPUComputePassEncoder | null; commandEncoder(): GPUCommandEncoder };
  Engine.prototype.run = function (this: Engine, call: KernelCall): void {
    const q = recs.length * 2;
    const setIdx = Math.floor(q / QS);
    while (sets.length <= setIdx) sets.push(e.device.createQuerySet({ type: 'timestamp', count: QS }));
    const set = sets[setIdx];
    const local = q % QS;
    if (anyE.pass) { anyE.pass.end(); anyE.pass = null; }
    anyE.pass = anyE.commandEncoder().beginComputePass({ timestampWrites: { querySet: set, beginningOfPassWriteIndex: local, endOfPassWriteIndex: local + 1 } });
    const before = e.stats().dispatches;
    orig.call(this, call);
    if (e.stats().dispatches === before) { // nothing recorded (empty dispatch): drop the pass timestamps
      if (anyE.pass) { anyE.pass.end(); anyE.pass = null; }
      // the pass wrote timestamps anyway; keep the record with a zero-work marker
    }
    if (anyE.pass) { anyE.pass.end(); anyE.pass = null; }
    const wg = call.workgroups.join('x');
    const sizes = call.bindings.map((b) => b.byteLength / 4).join(',');
    const shader = call.entry && call.entry !== 'main' ? `${call.shader}:${call.entry}` : call.shader;
    recs.push({ shader, key: `${shader} wg=${wg} [${sizes}]${call.constants ? ' ' + JSON.stringify(call.constants) : ''}`, q });
  };
  let t0 = performance.now();
  try {
    step();
  } finally {
    Engine.prototype.run = orig;
  }
  await e.sync();
  const profWall = performance.now() - t0;
  // Resolve all query sets.
  const total = recs.length * 2;
  const times = new Float64Array(recs.length);
  for (let s = 0; s < sets.length; s++) {
    const count = Math.min(QS, total - s * QS);
    const resolve = e.device.createBuffer({ size: count * 8, usage: 0x0200 | 0x0004 });
    const staging = e.device.createBuffer({ size: count * 8, usage: 0x0001 | 0x0008 });
    const enc = e.device.createCommandEncoder();
    enc.resolveQuerySet(sets[s], 0, count, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, staging, 0, count * 8);
    e.device.queue.submit([enc.finish()]);
    await staging.mapAsync(0x0001);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    for (let i = 0; i < count; i += 2) times[(s * QS + i) / 2] = Number(t[i + 1] - t[i]) / 1e6;
  }
  const gpuSum = times.reduce((a, b) => a + b, 0);
  console.log(`${config} n=${n} ${size}x${size}: wall step ${wallMs.toFixed(0)} ms (median of 3), profiled step wall ${profWall.toFixed(0)} ms, sum of dispatch GPU times ${gpuSum.toFixed(0)} ms over ${recs.length} dispatches`);

  const group = (f: (r: Rec) => string) => {
    const m = new Map<string, { count: number; ms: number }>();
    recs.forEach((r, i) => {
      const k = f(r);
      const g = m.get(k) ?? { count: 0, ms: 0 };
      g.count++;
      g.ms += times[i];
      m.set(k, g);
    });
    return [...m].sort((a, b) => b[1].ms - a[1].ms);
  };
  const print = (title: string, rows: [string, { count: number; ms: number }][], limit: number) => {
    console.log(`\n${title}`);
    console.log('| ms | share of step (wall) | count | group |');
    console.log('|---:|---:|---:|---|');
    for (const [k, g] of rows.slice(0, limit)) console.log(`| ${g.ms.toFixed(1)} | ${((100 * g.ms) / wallMs).toFixed(1)}% | ${g.count} | ${k} |`);
  };
  print('By shader', group((r) => r.shader), 100);
  print('By shader and shape (top 40)', group((r) => r.key), 40);
  dispose();
  await e.sync();
  e.destroy();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
