// The HTML report of a run: loss curve (inline SVG), per-class IoU (table with bars), the
// evaluation settings and prediction overlays. A pure function of its inputs (no Node built-ins):
// `atrous eval --report` and `atrous main` write it next to the overlays it links.

import { describeMiouClasses, type SegMetrics } from './metrics.js';

export interface ReportInput {
  title: string;
  /** Where the numbers come from: checkpoint, dataset, split, output stride, scales, flip, ... */
  settings: Record<string, string | number | boolean>;
  metrics: SegMetrics & { images: number };
  classNames: readonly string[];
  /** Training losses by step (metrics.jsonl); empty for a bare checkpoint. */
  losses: { step: number; loss: number; lr?: number }[];
  /** Overlay images relative to the report, with the sample id. */
  overlays: { file: string; id: string }[];
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A loss-by-step polyline (and its moving average) as an SVG element. */
export function lossCurveSvg(losses: { step: number; loss: number }[], width = 640, height = 240): string {
  const pts = losses.filter((p) => Number.isFinite(p.loss));
  if (pts.length === 0) return '<p>No training losses recorded.</p>';
  const m = { l: 48, r: 12, t: 12, b: 28 };
  const x0 = pts[0].step;
  const x1 = Math.max(pts[pts.length - 1].step, x0 + 1);
  const ymax = Math.max(...pts.map((p) => p.loss)) * 1.05 || 1;
  const X = (s: number) => m.l + ((s - x0) / (x1 - x0)) * (width - m.l - m.r);
  const Y = (v: number) => height - m.b - (v / ymax) * (height - m.t - m.b);
  const line = (ps: { step: number; loss: number }[]) => ps.map((p) => `${X(p.step).toFixed(1)},${Y(p.loss).toFixed(1)}`).join(' ');
  const k = Math.max(1, Math.round(pts.length / 50));
  const avg = pts.map((p, i) => {
    const w = pts.slice(Math.max(0, i - k + 1), i + 1);
    return { step: p.step, loss: w.reduce((a, q) => a + q.loss, 0) / w.length };
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * ymax);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="training loss by step">`,
    `<rect x="${m.l}" y="${m.t}" width="${width - m.l - m.r}" height="${height - m.t - m.b}" fill="#fafafa" stroke="#ccc"/>`,
    ...ticks.map((v) => `<text x="${m.l - 6}" y="${Y(v) + 4}" font-size="11" text-anchor="end">${v.toFixed(2)}</text>`),
    `<text x="${m.l}" y="${height - 8}" font-size="11">step ${x0}</text>`,
    `<text x="${width - m.r}" y="${height - 8}" font-size="11" text-anchor="end">step ${x1}</text>`,
    `<polyline fill="none" stroke="#9ecae1" stroke-width="1" points="${line(pts)}"/>`,
    `<polyline fill="none" stroke="#08519c" stroke-width="2" points="${line(avg)}"/>`,
    '</svg>',
  ].join('\n');
}

export function renderReport(r: ReportInput): string {
  const rows = r.classNames.map((name, k) => {
    const v = r.metrics.iou[k];
    const bar = v === null ? '' : `<span class="bar" style="width:${(v * 200).toFixed(0)}px"></span>`;
    const note = r.metrics.support[k] === 0 ? ' (no ground truth)' : '';
    return `<tr><td>${k}</td><td>${esc(name)}</td><td>${v === null ? 'n/a' : v.toFixed(4)}${note}</td><td>${bar}</td></tr>`;
  });
  const settings = Object.entries(r.settings).map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(String(v))}</td></tr>`);
  const overlays = r.overlays.map((o) => `<figure><img src="${esc(o.file)}" alt="${esc(o.id)}"><figcaption>${esc(o.id)}: image · ground truth · prediction</figcaption></figure>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(r.title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}
.bar{display:inline-block;height:10px;background:#3182bd}.big{font-size:1.6em}
figure{display:inline-block;margin:8px}img{image-rendering:pixelated;width:387px}figcaption{font-size:12px;color:#555}
</style></head><body>
<h1>${esc(r.title)}</h1>
<p class="big">mIoU <b>${r.metrics.miou.toFixed(4)}</b> · pixel accuracy ${r.metrics.pixelAccuracy.toFixed(4)} · ${r.metrics.images} images</p>
<p>${esc(describeMiouClasses(r.metrics, r.classNames))}</p>
<h2>Settings</h2><table>${settings.join('')}</table>
<h2>Training loss</h2>${lossCurveSvg(r.losses)}
<h2>Per-class IoU</h2><table><tr><th>#</th><th>class</th><th>IoU</th><th></th></tr>${rows.join('')}</table>
<h2>Predictions</h2>${overlays.length ? overlays.join('\n') : '<p>No overlays written.</p>'}
</body></html>
`;
}
