// What the labels of a split can train: per-class pixel counts, the share of ignored pixels, and
// warnings for classes that have no labelled pixel (they train nothing and cannot be evaluated)
// or when the ignore value covers most of the pixels; and the dataset's label map (mmseg's
// `label_map`: label value as stored → class index), e.g. {"255": 1} for binary masks saved 0/255.
// Pure TypeScript: runs in browsers too.

import { IGNORE, type Dataset } from './types.js';

/** Above this share of all pixels, 255 (ignore) gets a warning. */
export const IGNORE_SHARE_LIMIT = 0.5;

/** Samples counted from generated datasets, whose splits are long and cheap to sample but not to generate whole. */
export const LABEL_COUNT_SAMPLES = 200;

/** Pixel counts of a split's labels (after the label map). */
export interface LabelCounts {
  numClasses: number;
  /** Pixels of each class, numClasses entries. */
  pixels: number[];
  /** Images with at least one pixel of each class, numClasses entries. */
  images: number[];
  /** Pixels labelled 255 (ignore), and the images that have any. */
  ignore: number;
  ignoreImages: number;
  /** All pixels counted: the classes' and the ignored ones. */
  total: number;
  /** Images counted, of `of` in the split (fewer when only a sample was counted). */
  counted: number;
  of: number;
}

export function emptyLabelCounts(numClasses: number, of: number): LabelCounts {
  return {
    numClasses, pixels: new Array<number>(numClasses).fill(0), images: new Array<number>(numClasses).fill(0),
    ignore: 0, ignoreImages: 0, total: 0, counted: 0, of,
  };
}

/** Adds one image's labels. Throws a RangeError on a value outside [0, numClasses) that is not 255. */
export function addLabelCounts(c: LabelCounts, label: ArrayLike<number>): void {
  const n = c.numClasses;
  const hist = new Float64Array(256);
  for (let i = 0; i < label.length; i++) hist[label[i]]++;
  for (let v = 0; v < 256; v++) {
    const k = hist[v];
    if (k === 0) continue;
    if (v === IGNORE) {
      c.ignore += k;
      c.ignoreImages++;
    } else if (v < n) {
      c.pixels[v] += k;
      c.images[v]++;
    } else {
      throw new RangeError(`label value ${v} is outside 0..${n - 1} and not ${IGNORE} (ignore)`);
    }
  }
  c.total += label.length;
  c.counted++;
}

/**
 * Counts the labels of `ds`: the counts its reader made while opening it (a VOC directory checks
 * every label then), else samples 0..limit-1 read through get() (default: all of them).
 */
export async function countLabels(ds: Dataset, opts: { limit?: number } = {}): Promise<LabelCounts> {
  if (ds.labelCounts) return ds.labelCounts;
  const n = Math.min(opts.limit ?? ds.length, ds.length);
  const c = emptyLabelCounts(ds.numClasses, ds.length);
  for (let i = 0; i < n; i++) addLabelCounts(c, (await ds.get(i)).label);
  return c;
}

function pct(part: number, whole: number): string {
  if (whole === 0) return '0.0%';
  const p = (100 * part) / whole;
  return p > 0 && p < 0.05 ? '<0.1%' : `${p.toFixed(1)}%`;
}

/** "the train split" or "the first 200 of 10000 samples of the train split". */
function scope(c: LabelCounts, split: string): string {
  return c.counted < c.of ? `the first ${c.counted} of ${c.of} samples of the ${split} split` : `the ${split} split`;
}

/**
 * The warnings about what a split's labels can train, one string each: every class with no
 * labelled pixel (naming its index and name, and the share of 255 when there is any; when the
 * labels hold one class and 255 only, as 0/255 binary masks do, the label map that makes 255 that
 * class), and 255 covering more than IGNORE_SHARE_LIMIT of the pixels.
 */
export function labelWarnings(c: LabelCounts, classNames: readonly string[], split: string): string[] {
  const out: string[] = [];
  const where = scope(c, split);
  const ignoreShare = pct(c.ignore, c.total);
  // Only one class and 255 in the labels: most likely masks saved as 0/255, where 255 is the object.
  const binaryLike = c.ignore > 0 && c.pixels.filter((n) => n > 0).length === 1;
  for (let k = 0; k < c.numClasses; k++) {
    if (c.pixels[k] > 0) continue;
    let msg = `class ${k} '${classNames[k] ?? `class ${k}`}' has no labelled pixel in ${where} (${c.counted} images): it trains nothing and cannot be evaluated`;
    if (c.ignore > 0) msg += `; 255 (ignore) covers ${ignoreShare} of the pixels`;
    if (binaryLike) {
      msg += `. If 255 marks class ${k} (binary masks saved as 0/255), map it in the dataset's atrous-dataset.json: "labelMap": {"255": ${k}}`;
    }
    out.push(msg);
  }
  if (c.total > 0 && c.ignore / c.total > IGNORE_SHARE_LIMIT) {
    out.push(`255 (ignore) covers ${ignoreShare} of the pixels in ${where} (more than ${pct(IGNORE_SHARE_LIMIT, 1)}): `
      + 'those pixels train nothing; if 255 is a class in these labels, map it with "labelMap" in atrous-dataset.json');
  }
  return out;
}

/** The table: class, pixels, share of all pixels, images containing it; then the 255 (ignore) row. */
export function formatLabelCounts(c: LabelCounts, classNames: readonly string[]): string {
  const names = Array.from({ length: c.numClasses }, (_, k) => classNames[k] ?? `class ${k}`);
  const ignoreName = '255 (ignore)';
  const width = Math.max(5, ignoreName.length, ...names.map((n) => n.length + String(c.numClasses - 1).length + 1));
  const pw = Math.max(6, String(c.total).length);
  const row = (name: string, px: number, imgs: number) =>
    `${name.padEnd(width)}  ${String(px).padStart(pw)}  ${pct(px, c.total).padStart(6)}  ${String(imgs).padStart(6)}`;
  const lines = [`${'class'.padEnd(width)}  ${'pixels'.padStart(pw)}  ${'share'.padStart(6)}  ${'images'.padStart(6)}`];
  names.forEach((n, k) => lines.push(row(`${k} ${n}`, c.pixels[k], c.images[k])));
  lines.push(row(ignoreName, c.ignore, c.ignoreImages));
  return lines.join('\n');
}

/** How the counts were taken, for the line above the table. */
export function describeLabelCounts(c: LabelCounts, split: string): string {
  return `label pixels in ${scope(c, split)} (${c.counted} images, ${c.total} pixels)`;
}

/**
 * A dataset's label map as a 256-entry table (identity for values not in it). `map` is an object
 * {"<stored value>": class index}, as in atrous-dataset.json: keys 0..255, values in
 * [0, numClasses) or 255 (ignore). Throws an error starting with `where` that names the bad entry.
 */
export function labelMapTable(map: unknown, numClasses: number, where: string): Uint8Array {
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new Error(`${where}: "labelMap" must be an object {"stored value": class index}, e.g. {"255": 1}, got ${JSON.stringify(map)}`);
  }
  const table = Uint8Array.from({ length: 256 }, (_, v) => v);
  const entries = Object.entries(map as Record<string, unknown>);
  if (entries.length === 0) throw new Error(`${where}: "labelMap" is empty; give at least one "stored value": class index pair or remove it`);
  for (const [key, value] of entries) {
    if (!/^\d{1,3}$/.test(key) || Number(key) > 255) {
      throw new Error(`${where}: "labelMap" key "${key}" is not a label value 0..255`);
    }
    if (!Number.isInteger(value) || (((value as number) < 0 || (value as number) >= numClasses) && value !== IGNORE)) {
      throw new Error(`${where}: "labelMap" maps ${key} to ${JSON.stringify(value)}, which is not a class index 0..${numClasses - 1} `
        + `(the dataset has ${numClasses} classes) or ${IGNORE} (ignore)`);
    }
    table[Number(key)] = value as number;
  }
  return table;
}

/** The values a table changes as a label map object {"255": 1, ...}; null for none or no table. */
export function labelMapEntries(table: Uint8Array | null | undefined): Record<string, number> | null {
  if (!table) return null;
  const out: Record<string, number> = {};
  for (let v = 0; v < 256; v++) if (table[v] !== v) out[String(v)] = table[v];
  return Object.keys(out).length ? out : null;
}

/** "255→1, 3→255" for the values a table changes (the first `max`, then a count). */
export function describeLabelMap(table: Uint8Array, max = 8): string {
  const changed: string[] = [];
  for (let v = 0; v < 256; v++) if (table[v] !== v) changed.push(`${v}→${table[v]}`);
  if (changed.length <= max) return changed.join(', ') || 'identity';
  return `${changed.slice(0, max).join(', ')}, ... (${changed.length} values changed)`;
}

/**
 * The label counts of `ds` as printed by `data check` and at the start of `train`: how they were
 * counted, the label map if any, the table, then one 'warning: ...' line per warning. Generated
 * datasets are counted over their first `limit` samples (default LABEL_COUNT_SAMPLES); a VOC
 * directory opened with its labels checked has been counted whole already.
 */
export async function labelReport(ds: Dataset, limit = LABEL_COUNT_SAMPLES): Promise<{ counts: LabelCounts; lines: string[]; warnings: string[] }> {
  const counts = await countLabels(ds, { limit });
  const warnings = labelWarnings(counts, ds.classNames, ds.split);
  const lines: string[] = [];
  const v = ds as { labelMap?: Uint8Array | null; labelMapSource?: string | null };
  if (v.labelMap) lines.push(`label map${v.labelMapSource === 'cityscapes' ? ' (Cityscapes label IDs → train IDs)' : v.labelMapSource && v.labelMapSource !== 'option' ? ` (${v.labelMapSource})` : ''}: ${describeLabelMap(v.labelMap)}`);
  lines.push(`${describeLabelCounts(counts, ds.split)}:`, formatLabelCounts(counts, ds.classNames), ...warnings.map((w) => `warning: ${w}`));
  return { counts, lines, warnings };
}
