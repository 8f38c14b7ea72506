// `atrous data`: export an embedded dataset to the PASCAL VOC layout, or check a dataset directory.
import { existsSync, readFileSync } from 'node:fs';
import {
  openDataset, exportVoc, labelMapEntries, labelReport,
  LABEL_COUNT_SAMPLES, IGNORE_SHARE_LIMIT, type Dataset,
} from '../data/index.js';
import { RunDir, writeFileAtomic } from '../train/rundir.js';
import type { TrainOptions } from '../train/options.js';
import { parse } from './args.js';
import type { Command } from './main.js';

const USAGE = [
  'usage: atrous data export --dataset NAME --split S --count N --out DIR [--seed S] [--size H[xW]]',
  '                          [--format jpg|png] [--quality Q] [--force]',
  '       atrous data check --dataset voc:DIR [--split S] [--image-dir D --label-dir D] [--full] [--cityscapes] [--strict]',
  '       atrous data check --dataset shapes|fashion-scenes [--split S] [--count N] [--strict]',
  '',
  'export  writes samples 0..N-1 of an embedded dataset (shapes, fashion-scenes) or of a VOC directory',
  '        (voc:DIR) in the PASCAL VOC layout: JPEGImages/<id>.jpg (or .png with --format png, lossless),',
  '        SegmentationClass/<id>.png (palette PNG, 255 = ignore), ImageSets/Segmentation/<split>.txt and',
  '        atrous-dataset.json (class names). Splits of embedded datasets: train, val. Default seed 0,',
  '        size 129 (129x129), JPEG quality 95. Exporting train and val into one DIR also writes trainval.txt.',
  'check   opens a VOC-layout directory the way training does and reports every problem found',
  '        (missing files, images without labels and labels without images, size mismatches, label values',
  '        outside the classes and 255, corrupt or truncated files), decoding every image and label as',
  '        training does (--full, the default, is accepted for older scripts).',
  '        Then it prints the pixels of each class in the split (count, share of all pixels, images that',
  '        have it) and of 255 (ignore), with a warning for each class without a labelled pixel (it trains',
  `        nothing and cannot be evaluated) and when 255 covers more than ${IGNORE_SHARE_LIMIT * 100}% of the pixels. The label map`,
  '        of the dataset ("labelMap" in DIR/atrous-dataset.json, e.g. {"255": 1} for masks saved as 0/255)',
  '        applies first. Warnings leave the exit status 0; --strict makes them an error (exit 1).',
  '        --image-dir and --label-dir name other folders than JPEGImages and SegmentationClass, e.g. the',
  "        images/ and masks/ of plain pairs: --split all --image-dir images --label-dir masks (as the page reads them).",
  `        Generated datasets are counted over their first --count samples (default ${LABEL_COUNT_SAMPLES}).`,
].join('\n');

/** A run's record of its training labels: the dataset, its label map and the train split's counts. */
export const RUN_LABELS_FILE = 'labels.json';

/**
 * At the start of a run: logs the train split's label counts and warnings (labelReport) and
 * records the dataset's label map and the counts in the run's labels.json, which `eval --run` checks.
 */
export async function reportTrainLabels(run: RunDir, o: TrainOptions, log: (s: string) => void): Promise<void> {
  const ds = openDataset(o.dataset, { split: 'train', seed: o.dataSeed, length: o.dataLength });
  const r = await labelReport(ds);
  for (const line of r.lines) log(line);
  const labelMap = labelMapEntries((ds as { labelMap?: Uint8Array | null }).labelMap);
  writeFileAtomic(run.file(RUN_LABELS_FILE), `${JSON.stringify({ dataset: ds.name, labelMap, train: r.counts }, null, 2)}\n`);
}

/**
 * Throws when `ds`, the dataset a run was trained on, now maps its labels otherwise than the run
 * recorded in labels.json (runs without the file are not checked).
 */
export function checkRunLabelMap(run: RunDir, ds: Dataset): void {
  const f = run.file(RUN_LABELS_FILE);
  if (!existsSync(f)) return;
  let rec: { dataset?: string; labelMap?: Record<string, number> | null };
  try {
    rec = JSON.parse(readFileSync(f, 'utf8'));
  } catch (e) {
    throw new Error(`${f}: not valid JSON (${(e as Error).message})`);
  }
  if (rec.dataset !== ds.name) return;
  const now = labelMapEntries((ds as { labelMap?: Uint8Array | null }).labelMap);
  const show = (m: Record<string, number> | null | undefined) => (m ? JSON.stringify(m) : 'none');
  if (show(now) !== show(rec.labelMap)) {
    throw new Error(`${run.path} was trained with the label map ${show(rec.labelMap)} (${f}) but ${ds.name} now has ${show(now)}: `
      + 'restore the dataset\'s "labelMap" in its atrous-dataset.json, or evaluate with --weights and --dataset');
  }
}

function int(option: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new Error(`atrous data: --${option} must be an integer >= ${min}, got '${v}'`);
  }
  return n;
}

function size(v: string | undefined): { h?: number; w?: number } {
  if (v === undefined) return {};
  const m = /^(\d+)(?:x(\d+))?$/i.exec(v.trim());
  if (!m) throw new Error(`atrous data: --size must be N or HxW (e.g. 129 or 129x193), got '${v}'`);
  const h = Number(m[1]);
  const w = Number(m[2] ?? m[1]);
  if (h < 8 || w < 8) throw new Error(`atrous data: --size must be at least 8x8, got '${v}'`);
  return { h, w };
}

export const dataCommand: Command = {
  summary: 'export an embedded dataset to the PASCAL VOC layout, or check a dataset directory',
  usage: USAGE,
  async run(argv) {
    const [sub, ...rest] = argv;
    if (sub === 'export') {
      const { values } = parse('data export', rest, {
        dataset: { type: 'string' }, split: { type: 'string' }, count: { type: 'string' }, out: { type: 'string' },
        seed: { type: 'string' }, size: { type: 'string' }, format: { type: 'string' }, quality: { type: 'string' },
        force: { type: 'boolean' },
      });
      for (const req of ['dataset', 'split', 'count', 'out'] as const) {
        if (values[req] === undefined) throw new Error(`atrous data export: --${req} is required\n\n${USAGE}`);
      }
      const format = values.format ?? 'jpg';
      if (format !== 'jpg' && format !== 'png') throw new Error(`atrous data export: --format must be jpg or png, got '${format}'`);
      const count = int('count', values.count, 1)!;
      const dataset = values.dataset!;
      // Embedded datasets are generated on demand: make the split exactly as long as the export.
      const embedded = !dataset.startsWith('voc:');
      const ds = openDataset(dataset, {
        split: values.split, seed: int('seed', values.seed, 0) ?? 0, length: embedded ? count : undefined, ...size(values.size),
      });
      const t0 = Date.now();
      let last = 0;
      const res = await exportVoc(ds, values.out!, {
        count, format, quality: int('quality', values.quality, 1), force: values.force,
        onProgress: (done, total) => {
          // A progress line every 2 s at most: exports of thousands of samples take a while.
          if (process.stderr.isTTY && Date.now() - last > 2000 && done < total) {
            last = Date.now();
            process.stderr.write(`  ${done}/${total}\r`);
          }
        },
      });
      console.log(`wrote ${res.count} ${ds.name} ${ds.split} samples to ${res.dir} in ${((Date.now() - t0) / 1000).toFixed(1)} s `
        + `(JPEGImages/*.${format}, SegmentationClass/*.png, ${res.listFile.slice(res.dir.length + 1)}; ${ds.numClasses} classes)`);
      return 0;
    }
    if (sub === 'check') {
      const { values } = parse('data check', rest, {
        dataset: { type: 'string' }, split: { type: 'string' }, full: { type: 'boolean' }, cityscapes: { type: 'boolean' },
        strict: { type: 'boolean' }, count: { type: 'string' }, 'image-dir': { type: 'string' }, 'label-dir': { type: 'string' },
      });
      if (values.dataset === undefined) throw new Error(`atrous data check: --dataset is required\n\n${USAGE}`);
      const voc = values.dataset.startsWith('voc:');
      if (!voc && (values.full || values.cityscapes)) throw new Error('atrous data check: --full and --cityscapes apply to a dataset directory (voc:DIR)');
      if (!voc && (values['image-dir'] !== undefined || values['label-dir'] !== undefined)) throw new Error('atrous data check: --image-dir and --label-dir apply to a dataset directory (voc:DIR)');
      if (voc && values.count !== undefined) throw new Error('atrous data check: --count applies to the generated datasets; a directory is counted whole');
      const ds = openDataset(values.dataset, {
        split: values.split ?? 'train',
        // Every image is decoded, as training will decode it: a file whose structure is sound but
        // whose data is not (a flipped bit in a JPEG's entropy-coded data) is found here, not mid-run.
        voc: { validate: 'full', labelMap: values.cityscapes ? 'cityscapes' : undefined, imageDir: values['image-dir'], labelDir: values['label-dir'] },
      });
      const { lines, warnings } = await labelReport(ds, int('count', values.count, 1));
      const n = warnings.length;
      console.log(`${ds.name} (${ds.split}): ${ds.length} samples, ${ds.numClasses} classes, `
        + (n === 0 ? 'no problems found' : `files valid; ${n} warning${n > 1 ? 's' : ''} about what the labels train (below)`));
      for (const l of lines) console.log(l);
      if (n > 0 && values.strict) throw new Error(`atrous data check: ${n} warning${n > 1 ? 's' : ''} about the labels (--strict)`);
      return 0;
    }
    throw new Error(`atrous data: expected a subcommand, export or check${sub ? `, got '${sub}'` : ''}\n\n${USAGE}`);
  },
};
