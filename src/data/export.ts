// Export any Dataset to the PASCAL VOC layout (Node), so that other tools (and our own VOC reader)
// can use the embedded datasets:
//
//   OUT/JPEGImages/<id>.jpg               photos: baseline JPEG, quality 95 by default; or lossless
//                                         PNG (<id>.png) with format 'png'. JPEG is the default
//                                         because VOC tools (torchvision's VOCSegmentation, the
//                                         devkit) expect .jpg; our reader accepts both.
//   OUT/SegmentationClass/<id>.png        8-bit palette PNG: index = class, 255 = ignore, the
//                                         dataset's palette (VOC's colour map) for viewing
//   OUT/ImageSets/Segmentation/<split>.txt   the ids, one per line; trainval.txt is rewritten as
//                                         the union of train.txt and val.txt whenever both exist
//   OUT/atrous-dataset.json               number of classes and their names (the reader uses it)
//
// Files are written to a temporary name and renamed, and the split's list file is written last:
// an interrupted export leaves no list that names a missing or partial file.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { chwToRgb, encodeIndexedPng, encodeJpeg, encodePng } from '../io/image.js';
import { METADATA_FILE } from './voc.js';
import type { Dataset } from './types.js';

export interface ExportOptions {
  /** Samples to write, from index `start`; default all of them. */
  count?: number;
  start?: number;
  /** Image file format; default 'jpg'. */
  format?: 'jpg' | 'png';
  /** JPEG quality 1..100; default 95. */
  quality?: number;
  /** Overwrite an existing list for this split; default false (refuse). */
  force?: boolean;
  /** Called after each sample with (done, total). */
  onProgress?: (done: number, total: number) => void;
}

export interface ExportResult {
  dir: string;
  count: number;
  listFile: string;
  ids: string[];
}

function writeAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

function readList(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split(/\r?\n/).map((l) => l.trim()).filter(Boolean) : [];
}

export async function exportVoc(ds: Dataset, outDir: string, opts: ExportOptions = {}): Promise<ExportResult> {
  const dir = resolve(outDir);
  const start = opts.start ?? 0;
  const count = opts.count ?? ds.length - start;
  const format = opts.format ?? 'jpg';
  const quality = opts.quality ?? 95;
  if (!Number.isInteger(start) || start < 0) throw new Error(`export: start must be a non-negative integer, got ${start}`);
  if (!Number.isInteger(count) || count < 1 || start + count > ds.length) {
    throw new Error(`export: count must be an integer in 1..${ds.length - start} (${ds.name} ${ds.split} has ${ds.length} samples), got ${count}`);
  }
  if (format !== 'jpg' && format !== 'png') throw new Error(`export: format must be 'jpg' or 'png', got '${String(format)}'`);
  if (!(Number.isInteger(quality) && quality >= 1 && quality <= 100)) throw new Error(`export: quality must be an integer in 1..100, got ${quality}`);
  if (!/^[A-Za-z0-9_.-]+$/.test(ds.split)) throw new Error(`export: split name '${ds.split}' cannot be a file name`);
  if (existsSync(dir) && !existsSync(join(dir, 'JPEGImages')) && !existsSync(join(dir, METADATA_FILE))) {
    if (readdirSync(dir).length > 0) throw new Error(`export: ${dir} exists, is not empty and is not a dataset written by export; choose another --out`);
  }

  const metaPath = join(dir, METADATA_FILE);
  const meta = { format: 'atrous-voc/1', name: ds.name, numClasses: ds.numClasses, classNames: [...ds.classNames] };
  if (existsSync(metaPath)) {
    let old: { numClasses?: unknown; classNames?: unknown; labelMap?: unknown } = {};
    try {
      old = JSON.parse(readFileSync(metaPath, 'utf8'));
    } catch {
      throw new Error(`export: ${metaPath} is not valid JSON; remove it or choose another --out`);
    }
    if (old.labelMap !== undefined) {
      // Exported labels are written as class indices; the labels already there are mapped when read.
      throw new Error(`export: ${metaPath} has a "labelMap": exported labels would be mapped a second time; choose another --out`);
    }
    if (JSON.stringify(old.classNames) !== JSON.stringify(meta.classNames)) {
      throw new Error(`export: ${dir} holds a dataset with other classes (${JSON.stringify(old.classNames)}); choose another --out`);
    }
  }
  const listDir = join(dir, 'ImageSets', 'Segmentation');
  const listFile = join(listDir, `${ds.split}.txt`);
  if (existsSync(listFile) && !opts.force) {
    throw new Error(`export: ${listFile} already exists; pass --force to overwrite this split`);
  }
  for (const d of ['JPEGImages', 'SegmentationClass', join('ImageSets', 'Segmentation')]) mkdirSync(join(dir, d), { recursive: true });
  writeAtomic(metaPath, `${JSON.stringify(meta, null, 2)}\n`);

  const ids: string[] = [];
  for (let k = 0; k < count; k++) {
    const s = await ds.get(start + k);
    if (!/^[A-Za-z0-9_.-]+$/.test(s.id)) throw new Error(`export: sample id '${s.id}' cannot be a file name`);
    const rgb = chwToRgb(s.image, s.h, s.w);
    const img = format === 'jpg' ? encodeJpeg(rgb, s.w, s.h, quality) : encodePng(rgb, s.w, s.h);
    writeAtomic(join(dir, 'JPEGImages', `${s.id}.${format}`), img);
    // A re-export in the other format must not leave the old image to shadow the new one.
    rmSync(join(dir, 'JPEGImages', `${s.id}.${format === 'jpg' ? 'png' : 'jpg'}`), { force: true });
    writeAtomic(join(dir, 'SegmentationClass', `${s.id}.png`), encodeIndexedPng(s.label, s.w, s.h, ds.palette));
    ids.push(s.id);
    opts.onProgress?.(k + 1, count);
  }
  writeAtomic(listFile, `${ids.join('\n')}\n`);
  const train = readList(join(listDir, 'train.txt'));
  const val = readList(join(listDir, 'val.txt'));
  if (train.length && val.length && (ds.split === 'train' || ds.split === 'val')) {
    writeAtomic(join(listDir, 'trainval.txt'), `${[...new Set([...train, ...val])].join('\n')}\n`);
  }
  return { dir, count, listFile, ids };
}
