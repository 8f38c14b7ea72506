// `atrous data`: export an embedded dataset to the PASCAL VOC layout, or check a dataset directory.
import { openDataset, exportVoc } from '../data/index.js';
import { parse } from './args.js';
import type { Command } from './main.js';

const USAGE = [
  'usage: atrous data export --dataset NAME --split S --count N --out DIR [--seed S] [--size H[xW]]',
  '                          [--format jpg|png] [--quality Q] [--force]',
  '       atrous data check --dataset voc:DIR [--split S] [--full] [--cityscapes]',
  '',
  'export  writes samples 0..N-1 of an embedded dataset (shapes, fashion-scenes) or of a VOC directory',
  '        (voc:DIR) in the PASCAL VOC layout: JPEGImages/<id>.jpg (or .png with --format png, lossless),',
  '        SegmentationClass/<id>.png (palette PNG, 255 = ignore), ImageSets/Segmentation/<split>.txt and',
  '        atrous-dataset.json (class names). Splits of embedded datasets: train, val. Default seed 0,',
  '        size 129 (129x129), JPEG quality 95. Exporting train and val into one DIR also writes trainval.txt.',
  'check   opens a VOC-layout directory the way training does and reports every problem found',
  '        (missing files, images without labels and labels without images, size mismatches, label values',
  '        outside the classes and 255, corrupt or truncated files); --full also decodes every image.',
].join('\n');

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
      });
      if (!values.dataset?.startsWith('voc:')) throw new Error(`atrous data check: --dataset voc:DIR is required\n\n${USAGE}`);
      const ds = openDataset(values.dataset, {
        split: values.split ?? 'train',
        voc: { validate: values.full ? 'full' : 'labels', labelMap: values.cityscapes ? 'cityscapes' : undefined },
      });
      console.log(`${ds.name} (${ds.split}): ${ds.length} samples, ${ds.numClasses} classes, no problems found`);
      return 0;
    }
    throw new Error(`atrous data: expected a subcommand, export or check${sub ? `, got '${sub}'` : ''}\n\n${USAGE}`);
  },
};
