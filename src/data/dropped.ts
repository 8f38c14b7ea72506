// A dataset brought as files (the page: a dropped folder or a zip, held in memory as MemoryFiles):
// its layout found, opened and checked by the VOC reader (voc-core.ts, the checks and messages of
// `atrous data check`), and split into training and held-out images. Browser-safe.
//
// Layouts:
//   VOC    JPEGImages/, SegmentationClass/ (or SegmentationClassAug/), ImageSets/Segmentation/*.txt
//          (train.txt and val.txt when both exist; else one list, or every pair by name)
//   pairs  images/ and masks/ (or labels/): every image with the mask of the same name
// A folder or zip whose only entry is one folder is opened inside it.

import { unzipSync } from 'fflate';
import { openVocFiles, MemoryFiles, joinPath, type VocDataset, type VocOptions } from './voc-core.js';
import { labelReport, labelMapEntries } from './labels.js';
import { checkIndex, type Dataset, type Sample } from './types.js';
import type { RawImage } from '../io/image-core.js';

/** Some of a dataset's samples, in the given order (a held-out split of a dropped set). */
export class SubsetDataset implements Dataset {
  readonly labelCounts = null;
  constructor(readonly base: Dataset, readonly indices: readonly number[], readonly split: string) {}
  get name(): string {
    return this.base.name;
  }
  get length(): number {
    return this.indices.length;
  }
  get numClasses(): number {
    return this.base.numClasses;
  }
  get classNames(): readonly string[] {
    return this.base.classNames;
  }
  get palette(): Uint8Array {
    return this.base.palette;
  }
  get(i: number): Promise<Sample> {
    checkIndex(this, i);
    return this.base.get(this.indices[i]);
  }
}

export interface DroppedDataset {
  layout: 'voc' | 'pairs';
  /** The folder opened (relative to what was dropped; '' for its top). */
  root: string;
  /** The reader's options: the equivalent `atrous data check --dataset voc:DIR` split. */
  voc: VocOptions;
  train: Dataset;
  val: Dataset;
  /** How the held-out images were chosen. */
  heldOutFrom: string;
  /** `atrous data check`'s report of the training images: the label map, the per-class pixel table, the warnings. */
  lines: string[];
  warnings: string[];
  numClasses: number;
  classNames: readonly string[];
  /** The dataset's label map as {"stored value": class index}, null for none. */
  labelMap: Record<string, number> | null;
}

/** The files of a zip archive, by path (folders dropped; macOS's __MACOSX/ metadata skipped). */
export function unzipFiles(bytes: Uint8Array, name: string): [string, Uint8Array][] {
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(bytes);
  } catch (e) {
    throw new Error(`${name}: not a readable zip archive (${(e as Error).message})`);
  }
  return Object.entries(entries).filter(([p]) => !p.endsWith('/') && !p.startsWith('__MACOSX/'));
}

/** Files that carry no data (system metadata) and are left out before the layout is read. */
const IGNORED = /(^|\/)(\.DS_Store|Thumbs\.db|desktop\.ini)$/;

function descend(fs: MemoryFiles, root: string): string {
  for (;;) {
    const names = fs.list(root);
    if (names.length !== 1 || !fs.isDir(joinPath(root, names[0]))) return root;
    root = joinPath(root, names[0]);
  }
}

/**
 * Finds the layout of `entries` (path → bytes), opens and checks it with the VOC reader, and
 * splits it: VOC's val list when it has one, else every `heldOutEvery`-th image (at least one)
 * held out. Throws the reader's error (every problem, each naming its file) or one naming the
 * layout expected.
 */
export async function openDropped(
  entries: Iterable<[string, Uint8Array]>, decode: (bytes: Uint8Array, name: string) => RawImage | Promise<RawImage>,
  opts: { heldOutEvery?: number } = {},
): Promise<DroppedDataset> {
  const every = opts.heldOutEvery ?? 5;
  if (!Number.isInteger(every) || every < 2) throw new Error(`the held-out share must be one image in N with N an integer >= 2, got ${every}`);
  const fs = new MemoryFiles([...entries].filter(([p]) => !IGNORED.test(p)), decode);
  if (fs.size === 0) throw new Error('no files: drop a folder (or a zip) with JPEGImages/ and SegmentationClass/, or images/ and masks/');
  const root = descend(fs, '');
  const has = (d: string) => fs.isDir(joinPath(root, d));
  let layout: DroppedDataset['layout'];
  let trainOpts: VocOptions;
  let valOpts: VocOptions | null = null;
  const lists = has('ImageSets/Segmentation') ? fs.list(joinPath(root, 'ImageSets/Segmentation')).filter((f) => f.endsWith('.txt')) : [];
  if (has('JPEGImages')) {
    layout = 'voc';
    if (lists.includes('train.txt') && lists.includes('val.txt')) {
      trainOpts = { split: 'train' };
      valOpts = { split: 'val' };
    } else if (lists.includes('train.txt')) trainOpts = { split: 'train' };
    else if (lists.length === 1) trainOpts = { split: lists[0].slice(0, -4) };
    else trainOpts = { split: 'all' };
  } else if (has('images') && (has('masks') || has('labels'))) {
    layout = 'pairs';
    trainOpts = { split: 'all', imageDir: 'images', labelDir: has('masks') ? 'masks' : 'labels' };
  } else {
    const top = fs.list(root).sort().slice(0, 8).join(', ');
    throw new Error(`${root || 'the dropped files'}: no dataset layout found (it holds ${top}): expected JPEGImages/ and SegmentationClass/ `
      + '(VOC, with ImageSets/Segmentation/train.txt and val.txt, or pairs by name), or images/ and masks/ (pairs by name)');
  }
  const all: VocDataset = openVocFiles(fs, root, { ...trainOpts, validate: 'labels' });
  let train: Dataset = all;
  let val: Dataset;
  let heldOutFrom: string;
  if (valOpts) {
    val = openVocFiles(fs, root, { ...valOpts, validate: 'labels' });
    heldOutFrom = 'the val list';
  } else {
    if (all.length < 2) throw new Error(`${root || 'the dataset'}: ${all.length} image/label pair; training with held-out images needs at least 2`);
    const held: number[] = [];
    const kept: number[] = [];
    for (let i = 0; i < all.length; i++) ((i % every) === every - 1 ? held : kept).push(i);
    if (held.length === 0) held.push(kept.pop()!);
    train = new SubsetDataset(all, kept, trainOpts.split ?? 'train');
    val = new SubsetDataset(all, held, 'held-out');
    heldOutFrom = `one image in ${every} of ${all.length}`;
  }
  const report = await labelReport(all);
  return {
    layout, root, voc: trainOpts, train, val, heldOutFrom, lines: report.lines, warnings: report.warnings,
    numClasses: all.numClasses, classNames: all.classNames, labelMap: labelMapEntries(all.labelMap),
  };
}
