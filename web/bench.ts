// The Bench panel: benchConv2d (src/bench/conv2d.ts, as in `npm run bench`) on the visitor's GPU.
import { engine } from '../src/index.js';
import { benchConv2d, asppShapes, type Conv2dPass } from '../src/bench/conv2d.js';
import { $, demo, errText, setStatus, updateMemory } from './page.js';

let benchRunning = false;

export function setupBench(): void {
  $('bench-run').addEventListener('click', async () => {
    if (benchRunning) return;
    if (demo.train.state === 'running') {
      setStatus('bench-status', 'Pause the training first: the benchmark needs the GPU to itself.', true);
      return;
    }
    const [c, hw] = $<HTMLSelectElement>('bench-shape').value.split('x').map(Number);
    const rates = [...document.querySelectorAll<HTMLInputElement>('input[name="bench-rate"]:checked')].map((i) => Number(i.value));
    const passes = [...document.querySelectorAll<HTMLInputElement>('input[name="bench-pass"]:checked')].map((i) => i.value as Conv2dPass);
    const repeats = Number($<HTMLInputElement>('bench-repeats').value);
    if (!rates.length || !passes.length) {
      setStatus('bench-status', 'Pick at least one rate and one pass.', true);
      return;
    }
    if (!Number.isInteger(repeats) || repeats < 1) {
      setStatus('bench-status', `Repeats must be an integer ≥ 1, got '${$<HTMLInputElement>('bench-repeats').value}'.`, true);
      return;
    }
    benchRunning = true;
    const btn = $<HTMLButtonElement>('bench-run');
    btn.disabled = true;
    const tbody = $('bench-table').querySelector('tbody')!;
    const adapter = engine().adapterName;
    const total = rates.length * passes.length;
    const t0 = performance.now();
    let done = 0;
    try {
      for (const rate of rates) {
        for (const pass of passes) {
          setStatus('bench-status', `Running conv2d ${pass}, rate ${rate} (${done + 1} of ${total})…`);
          const [row] = await benchConv2d(asppShapes({ n: 1, c, sizes: [hw], rates: [rate] }), { passes: [pass], repeats, adapter });
          demo.benchRows.push({ ...row, adapter });
          const tr = document.createElement('tr');
          for (const v of ['conv2d', pass, String(rate), `1×${c}×${hw}×${hw} → ${c}, 3×3`, (row.ms ?? NaN).toFixed(2), (row.gflops ?? NaN).toFixed(2), adapter]) {
            const td = document.createElement('td');
            td.textContent = v;
            tr.append(td);
          }
          tbody.append(tr);
          done++;
        }
      }
      setStatus('bench-status', `Done: ${done} row${done > 1 ? 's' : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s (median of ${repeats} after a warm-up).`);
    } catch (e) {
      setStatus('bench-status', `Benchmark failed: ${errText(e)}`, true);
    } finally {
      const e = engine();
      await e.sync().catch(() => undefined);
      e.pool.trim();
      benchRunning = false;
      btn.disabled = false;
      updateMemory();
    }
  });
}
