// The markdown report of a benchmark run (bench/results/<adapter>.md): the kernel tables, the
// comparison with TensorFlow.js and PyTorch, Fig. 4, and the issue's targets as ratios computed
// from the rows of this run. Informational only: nothing here fails a run.

import type { BenchRow } from './common.js';
import { fig4Markdown, type Fig4Row } from './fig4.js';

const num = (v: unknown, d = 2): string => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '–');
const ratio = (a: number | null | undefined, b: number | null | undefined): number | null => (a && b ? a / b : null);
const x = (v: number | null, d = 2): string => (v === null ? '–' : `${v.toFixed(d)}×`);
const mb = (v: unknown): string => (typeof v === 'number' ? `${(v / 2 ** 20).toFixed(0)} MiB` : '–');

function convKey(r: BenchRow): string {
  return [r.group, r.n, r.cin, r.cout, r.h, r.k, r.stride, r.dilation].join('/');
}

export interface Report {
  adapter: string;
  date: string;
  command: string;
  rows: BenchRow[];
  fig4: Fig4Row[];
}

/** Conv rows grouped by shape: one line per shape with the three passes (and tfjs's forward). */
function convTable(rows: BenchRow[]): string[] {
  const conv = rows.filter((r) => r.kernel === 'conv2d');
  const keys = [...new Set(conv.map(convKey))];
  const hasTf = conv.some((r) => r.impl === 'tfjs' && r.ms !== null);
  const out = [
    `| shape | rate | useful | fwd ms | fwd GFLOP/s${hasTf ? ' | tfjs fwd GFLOP/s | × tfjs' : ''} | dx GFLOP/s | dx / fwd | dw GFLOP/s | dw / fwd |`,
    `|---|---|---|---|---|${hasTf ? '---|---|' : ''}---|---|---|---|`,
  ];
  for (const key of keys) {
    const of = (impl: string, pass: string) => conv.find((r) => convKey(r) === key && r.impl === impl && r.pass === pass);
    const f = of('atrous', 'forward');
    const dx = of('atrous', 'backward-data');
    const dw = of('atrous', 'backward-weight');
    const tf = of('tfjs', 'forward');
    const any = f ?? dx ?? dw;
    if (!any) continue;
    const shape = `${any.group} ${any.n}×${any.cin}×${any.h}×${any.w} → ${any.cout}, ${any.k}×${any.k}, stride ${any.stride}`;
    const tfCols = hasTf ? ` | ${num(tf?.gflops)} | ${x(ratio(f?.gflops, tf?.gflops))}` : '';
    out.push(
      `| ${shape} | ${any.dilation} | ${num(any.useful_fraction)} | ${num(f?.ms, 1)} | ${num(f?.gflops)}${tfCols} | ${num(dx?.gflops)} | ${x(ratio(dx?.gflops, f?.gflops))} | ${num(dw?.gflops)} | ${x(ratio(dw?.gflops, f?.gflops))} |`,
    );
  }
  return out;
}

function otherTable(rows: BenchRow[]): string[] {
  const other = rows.filter((r) => r.kernel === 'matmul' || r.kernel === 'batch_norm' || r.kernel === 'resize');
  const out = ['| kernel | pass | shape | ms | GFLOP/s | GB/s |', '|---|---|---|---|---|---|'];
  for (const r of other) {
    const shape =
      r.kernel === 'matmul' ? `${r.m}×${r.k} · ${r.k}×${r.n}` : r.kernel === 'resize' ? `${r.n}×${r.cin}×${r.h}×${r.w} → ${r.oh}×${r.ow} (×${r.scale})` : `${r.n}×${r.cin}×${r.h}×${r.w}`;
    out.push(`| ${r.kernel} | ${r.pass} | ${shape} | ${num(r.ms, 2)} | ${num(r.gflops)} | ${num(r.gbs)} |`);
  }
  return out;
}

function trainTable(rows: BenchRow[]): string[] {
  const steps = rows.filter((r) => r.kernel === 'train-step' && r.impl === 'atrous');
  const out = [
    '| config | batch × size | atrous s/step | GFLOP/s | first step s | peak GPU bytes | pool peak | submits / step | dispatches / step | buffers created / step | PyTorch CPU s/step | atrous / PyTorch | PyTorch peak bytes | atrous / PyTorch peak |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of steps) {
    const t = rows.find((q) => q.kernel === 'train-step' && q.impl === 'torch' && q.config === r.config && q.n === r.n && q.h === r.h);
    const tms = t?.ms ?? null;
    out.push(
      `| ${r.config} | ${r.n} × ${r.h}² | ${num(r.ms! / 1000, 2)} | ${num(r.gflops)} | ${num((r.first_step_ms as number) / 1000, 1)} | ${mb(r.peak_bytes)} | ${r.pool_peak_bytes === undefined ? '—' : mb(r.pool_peak_bytes)} | ${num(r.submits_per_step, 1)} | ${num(r.dispatches_per_step, 0)} | ${num(r.buffers_created_per_step, 1)} | ${tms === null ? (t?.note ?? 'not run') : num(tms / 1000, 2)} | ${x(ratio(r.ms, tms), 1)} | ${t?.peak_bytes ? mb(t.peak_bytes) : '—'} | ${t?.peak_bytes ? x(ratio(r.peak_bytes as number, t.peak_bytes as number), 2) : '—'} |`,
    );
  }
  return out;
}

/** Where the peak bytes of each training step were at the moment of the peak (peak_breakdown). */
function memoryTable(rows: BenchRow[]): string[] {
  const steps = rows.filter((r) => r.kernel === 'train-step' && r.impl === 'atrous' && r.peak_breakdown);
  if (!steps.length) return [];
  const keys = [...new Set(steps.flatMap((r) => Object.keys(r.peak_breakdown as Record<string, number>)))];
  const out = [
    `| config | batch × size | peak | ${keys.map((k) => k.replace(/_/g, ' ')).join(' | ')} |`,
    `|---|---|---|${keys.map(() => '---|').join('')}`,
  ];
  for (const r of steps) {
    const b = r.peak_breakdown as Record<string, number>;
    const peak = r.peak_bytes as number;
    out.push(`| ${r.config} | ${r.n} × ${r.h}² | ${mb(peak)} | ${keys.map((k) => `${mb(b[k] ?? 0)} (${((100 * (b[k] ?? 0)) / peak).toFixed(0)}%)`).join(' | ')} |`);
  }
  return out;
}

/** The issue's targets, as measured in this run (null where the rows needed are missing). */
export function targets(rows: BenchRow[]): string[] {
  const aspp = rows.filter((r) => r.kernel === 'conv2d' && r.group === 'aspp');
  const at = (impl: string, pass: string, h: unknown, d: unknown) => aspp.find((r) => r.impl === impl && r.pass === pass && r.h === h && r.dilation === d);
  const lines: string[] = [];
  const fwd = aspp.filter((r) => r.impl === 'atrous' && r.pass === 'forward');
  const tfRatios = fwd.map((r) => ratio(r.gflops, at('tfjs', 'forward', r.h, r.dilation)?.gflops)).filter((v): v is number => v !== null);
  if (tfRatios.length) {
    const min = Math.min(...tfRatios);
    lines.push(`- conv2d forward at the ASPP shapes ≥ 4× TensorFlow.js: ${x(min)} to ${x(Math.max(...tfRatios))} over ${tfRatios.length} shapes: ${min >= 4 ? 'met' : 'not met'}`);
  }
  for (const h of [...new Set(fwd.map((r) => r.h))]) {
    const r1 = at('atrous', 'forward', h, 1);
    const r18 = at('atrous', 'forward', h, 18);
    const q = ratio(r18?.gflops, r1?.gflops);
    if (q !== null) lines.push(`- ${h}×${h}: rate 18 within 10% of rate 1 in useful GFLOP/s: ${x(q)} (${num(r18?.gflops)} vs ${num(r1?.gflops)}): ${q >= 0.9 ? 'met' : 'not met'}`);
  }
  for (const pass of ['backward-data', 'backward-weight']) {
    const qs = fwd.map((f) => ratio(at('atrous', pass, f.h, f.dilation)?.gflops, f.gflops)).filter((v): v is number => v !== null);
    if (qs.length) {
      const min = Math.min(...qs);
      lines.push(`- ${pass} ≥ 70% of forward's GFLOP/s (ASPP shapes): ${(100 * min).toFixed(0)}% to ${(100 * Math.max(...qs)).toFixed(0)}%: ${min >= 0.7 ? 'met' : 'not met'}`);
    }
  }
  for (const r of rows.filter((q) => q.kernel === 'train-step' && q.impl === 'atrous')) {
    const t = rows.find((q) => q.kernel === 'train-step' && q.impl === 'torch' && q.config === r.config && q.n === r.n && q.h === r.h);
    const q = ratio(r.ms, t?.ms);
    if (q !== null) {
      const goal = r.config === 'paper-r50-os16' ? `: within 8×: ${q <= 8 ? 'met' : 'not met'}` : '';
      lines.push(`- ${r.config} ${r.n} × ${r.h}² training step: ${num(r.ms! / 1000)} s vs PyTorch CPU ${num(t!.ms! / 1000)} s = ${x(q, 1)}${goal}`);
    }
    lines.push(
      `- ${r.config} step overhead: ${num(r.submits_per_step, 1)} submits, ${num(r.buffers_created_per_step, 1)} buffers created, ${r.pipelines_created} pipelines compiled per timed step (after the first)`,
    );
  }
  return lines;
}

export function markdown(rep: Report): string {
  const timing = [...new Set(rep.rows.filter((r) => r.impl === 'atrous').map((r) => r.timing))].join(', ');
  return [
    `# atrous benchmarks on ${rep.adapter}`,
    '',
    `${rep.date}, \`${rep.command}\`; timing: ${timing}; GFLOP/s count useful work (taps that read padding excluded).`,
    '',
    '## conv2d',
    '',
    ...convTable(rep.rows),
    '',
    '## Other kernels',
    '',
    ...otherTable(rep.rows),
    '',
    '## Training step',
    '',
    ...trainTable(rep.rows),
    '',
    '### Peak memory by category (requested bytes; rounding: the pool\'s block alignment)',
    '',
    ...memoryTable(rep.rows),
    '',
    '## Fig. 4: valid weights of a 3×3 filter on a 65×65 map',
    '',
    fig4Markdown(rep.fig4),
    '',
    '## Targets (issue 6), measured in this run',
    '',
    ...targets(rep.rows),
    '',
  ].join('\n');
}
