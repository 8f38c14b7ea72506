// Reader for datasets in the PASCAL VOC layout (Node):
//
//   DIR/JPEGImages/<id>.jpg            photos (.jpeg and .png accepted too), read upright (EXIF orientation applied)
//   DIR/SegmentationClass/<id>.png     labels: palette PNG whose raw indices are the classes, 255 = ignore
//   DIR/SegmentationClassAug/<id>.png  the augmented set's labels (gray PNG), used when SegmentationClass is absent
//   DIR/ImageSets/Segmentation/<split>.txt   one id per line, or "image-path label-path" per line
//                                            (paths relative to DIR, as in the augmented set's train_aug.txt)
//   DIR/atrous-dataset.json            optional: {numClasses, classNames, labelMap}; `atrous data export`
//                                      writes numClasses and classNames
//
// Without list files, split 'all' pairs every image with the label of the same stem. A label map
// is applied to label values when read, before they are checked: the dataset's own ("labelMap" in
// atrous-dataset.json, {"stored value": class index} as mmseg's label_map, e.g. {"255": 1} for
// binary masks saved as 0/255; values not in it stay as they are), or Cityscapes label ID → train
// ID, or any 256-entry table, given as an option.
//
// Everything that can be checked is checked when the dataset is opened, before any training:
// the directory, the list, every image's and label's presence, structure and size, and every label
// value (in [0, numClasses) or 255). Problems are reported together, each naming its file. The
// labels decoded for the check are also counted per class (VocDataset.labelCounts).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { decodeImage, decodeLabelPng, imageInfo, rgbToChw, type ImageInfo } from '../io/image.js';
import { VOC_CLASSES, vocPalette, cityscapesLabelToTrainId, cityscapesPalette, CITYSCAPES_CLASSES } from './palette.js';
import { checkIndex, IGNORE, type Dataset, type Sample } from './types.js';
import { addLabelCounts, emptyLabelCounts, labelMapTable, type LabelCounts } from './labels.js';

export const METADATA_FILE = 'atrous-dataset.json';
const IMAGE_EXTS = ['.jpg', '.jpeg', '.png', '.JPG', '.JPEG', '.PNG'];

export interface VocOptions {
  /** List to read: ImageSets/Segmentation/<split>.txt; 'all' without list files pairs files by stem. Default 'train'. */
  split?: string;
  /** Image folder relative to the root; default 'JPEGImages'. */
  imageDir?: string;
  /** Label folder relative to the root; default 'SegmentationClass', else 'SegmentationClassAug' if only that exists. */
  labelDir?: string;
  /** List file (relative to the root or absolute) instead of ImageSets/Segmentation/<split>.txt. */
  listFile?: string;
  /** Number of classes; default from atrous-dataset.json, else 19 with the Cityscapes map, else 21 (VOC). */
  numClasses?: number;
  classNames?: readonly string[];
  /**
   * Label values are mapped through this 256-entry table when read ('cityscapes': label IDs → train
   * IDs). Default: the "labelMap" of atrous-dataset.json, if any; giving both is an error.
   */
  labelMap?: 'cityscapes' | Uint8Array;
  /**
   * Up-front checks: 'labels' (default) checks every image's structure and size and decodes every
   * label; 'full' also decodes every image; 'none' only checks that the files exist.
   */
  validate?: 'full' | 'labels' | 'none';
}

export interface VocEntry {
  id: string;
  image: string;
  label: string;
}

/** Collects problems so that one error can list them all (the first 20, then a count). */
class Problems {
  list: string[] = [];
  add(msg: string): void {
    this.list.push(msg);
  }
  throwIfAny(root: string): void {
    if (this.list.length === 0) return;
    const shown = this.list.slice(0, 20).map((m) => `  ${m}`);
    if (this.list.length > 20) shown.push(`  ... and ${this.list.length - 20} more`);
    throw new Error(`dataset ${root}: ${this.list.length} problem${this.list.length > 1 ? 's' : ''}:\n${shown.join('\n')}`);
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Keys of atrous-dataset.json ('format' and 'name' are written by export and not read). */
const METADATA_KEYS = ['format', 'name', 'numClasses', 'classNames', 'labelMap'];

interface Metadata {
  file: string;
  numClasses?: number;
  classNames?: string[];
  /** Checked against the number of classes once that is known. */
  labelMap?: unknown;
}

function readMetadata(root: string): Metadata | null {
  const p = join(root, METADATA_FILE);
  if (!existsSync(p)) return null;
  let meta: unknown;
  try {
    meta = JSON.parse(readFileSync(p, 'utf8'));
  } catch (e) {
    throw new Error(`${p}: not valid JSON (${(e as Error).message})`);
  }
  const usage = '{"numClasses": N, "classNames": [N names], "labelMap": {"stored value": class index}}, each optional';
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw new Error(`${p}: expected an object ${usage}`);
  const m = meta as { numClasses?: unknown; classNames?: unknown; labelMap?: unknown };
  const unknown = Object.keys(m).filter((k) => !METADATA_KEYS.includes(k));
  if (unknown.length) throw new Error(`${p}: unknown key "${unknown[0]}" (known: ${METADATA_KEYS.join(', ')})`);
  if (m.numClasses !== undefined && !Number.isInteger(m.numClasses)) throw new Error(`${p}: "numClasses" must be an integer, got ${JSON.stringify(m.numClasses)}`);
  if (m.classNames !== undefined) {
    if (!Array.isArray(m.classNames) || !m.classNames.every((c) => typeof c === 'string')) throw new Error(`${p}: "classNames" must be an array of strings`);
    if (m.numClasses !== undefined && m.classNames.length !== m.numClasses) {
      throw new Error(`${p}: ${m.classNames.length} "classNames" for "numClasses" ${m.numClasses as number}`);
    }
  }
  return {
    file: p,
    numClasses: (m.numClasses as number | undefined) ?? (m.classNames as string[] | undefined)?.length,
    classNames: m.classNames as string[] | undefined,
    labelMap: m.labelMap,
  };
}

function findImage(dir: string, id: string): string | null {
  for (const ext of IMAGE_EXTS) {
    const p = join(dir, id + ext);
    if (isFile(p)) return p;
  }
  return null;
}

/** Parse a list file into entries, reporting missing images/labels. */
function entriesFromList(root: string, listPath: string, imageDir: string, labelDir: string, problems: Problems): VocEntry[] {
  const text = readFileSync(listPath, 'utf8');
  const entries: VocEntry[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, n) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const where = `${listPath}:${n + 1}`;
    const parts = line.split(/\s+/);
    let entry: VocEntry;
    if (parts.length === 1) {
      const id = parts[0];
      const image = findImage(imageDir, id);
      const label = join(labelDir, `${id}.png`);
      const hasLabel = isFile(label);
      if (!image && !hasLabel) {
        problems.add(`${where}: '${id}' has neither an image in ${imageDir} nor a label ${label}`);
        return;
      }
      if (!image) {
        problems.add(`${label}: label without an image (no ${id}.jpg, .jpeg or .png in ${imageDir})`);
        return;
      }
      if (!hasLabel) {
        problems.add(`${image}: image without a label (expected ${label})`);
        return;
      }
      entry = { id, image, label };
    } else if (parts.length === 2) {
      // Paths in the augmented set's lists start with '/' but are relative to the dataset root.
      const image = resolve(root, parts[0].replace(/^\/+/, ''));
      const label = resolve(root, parts[1].replace(/^\/+/, ''));
      const hasImage = isFile(image);
      const hasLabel = isFile(label);
      if (!hasImage && !hasLabel) {
        problems.add(`${where}: neither ${image} nor ${label} exists`);
        return;
      }
      if (!hasImage) {
        problems.add(`${label}: label without an image (${image} does not exist; listed at ${where})`);
        return;
      }
      if (!hasLabel) {
        problems.add(`${image}: image without a label (${label} does not exist; listed at ${where})`);
        return;
      }
      entry = { id: basename(image, extname(image)), image, label };
    } else {
      problems.add(`${where}: expected an id or "image-path label-path", got ${parts.length} fields`);
      return;
    }
    const prev = seen.get(entry.image);
    if (prev !== undefined) {
      problems.add(`${where}: ${entry.image} is listed twice (first at line ${prev})`);
      return;
    }
    seen.set(entry.image, n + 1);
    entries.push(entry);
  });
  return entries;
}

/** Pair every image with the label of the same stem; both orphans are problems. */
function entriesByStem(imageDir: string, labelDir: string, problems: Problems): VocEntry[] {
  const images = new Map<string, string>();
  for (const f of readdirSync(imageDir).sort()) {
    if (IMAGE_EXTS.includes(extname(f)) && isFile(join(imageDir, f))) images.set(basename(f, extname(f)), join(imageDir, f));
  }
  const labels = new Map<string, string>();
  for (const f of readdirSync(labelDir).sort()) {
    if (extname(f).toLowerCase() === '.png' && isFile(join(labelDir, f))) labels.set(basename(f, extname(f)), join(labelDir, f));
  }
  const entries: VocEntry[] = [];
  for (const [id, image] of images) {
    const label = labels.get(id);
    if (label) entries.push({ id, image, label });
    else problems.add(`${image}: image without a label (expected ${join(labelDir, `${id}.png`)})`);
  }
  for (const [id, label] of labels) {
    if (!images.has(id)) problems.add(`${label}: label without an image (no ${id}.jpg, .jpeg or .png in ${imageDir})`);
  }
  return entries;
}

/** Label values outside [0, numClasses) ∪ {255}: a problem naming the file, the first value and where. */
function checkLabelValues(label: Uint8Array, width: number, numClasses: number, file: string): string | null {
  let bad = 0;
  let first = -1;
  for (let i = 0; i < label.length; i++) {
    const v = label[i];
    if (v >= numClasses && v !== IGNORE) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad === 0) return null;
  return `${file}: label value ${label[first]} at (x ${first % width}, y ${Math.floor(first / width)}) is outside 0..${numClasses - 1} `
    + `and not 255 (ignore); ${bad} pixel${bad > 1 ? 's' : ''} like that`;
}

/** Labels are checked against the upright image (its EXIF orientation applied, as every decode does). */
function sizeMismatch(e: VocEntry, lbl: { width: number; height: number }, info: ImageInfo): string {
  const turned = info.orientation !== 1 ? ` upright (stored ${info.storedWidth}×${info.storedHeight} with EXIF orientation ${info.orientation})` : '';
  return `${e.label}: label is ${lbl.width}×${lbl.height} but its image ${e.image} is ${info.width}×${info.height}${turned}`;
}

function applyMap(label: Uint8Array, map: Uint8Array | null): Uint8Array {
  if (!map) return label;
  for (let i = 0; i < label.length; i++) label[i] = map[label[i]];
  return label;
}

export class VocDataset implements Dataset {
  readonly name: string;
  readonly split: string;
  readonly root: string;
  readonly entries: readonly VocEntry[];
  readonly numClasses: number;
  readonly classNames: readonly string[];
  readonly palette: Uint8Array;
  readonly labelMap: Uint8Array | null;
  /** Where the label map came from: the metadata file's path, 'cityscapes' or 'option'; null without one. */
  readonly labelMapSource: string | null;
  /** Pixel counts of the split's labels, made by the up-front check (null with validate 'none'). */
  readonly labelCounts: LabelCounts | null;

  constructor(root: string, entries: VocEntry[], split: string, numClasses: number, classNames: readonly string[],
    palette: Uint8Array, labelMap: Uint8Array | null, labelMapSource: string | null = null, labelCounts: LabelCounts | null = null) {
    this.root = root;
    this.name = `voc:${root}`;
    this.split = split;
    this.entries = entries;
    this.numClasses = numClasses;
    this.classNames = classNames;
    this.palette = palette;
    this.labelMap = labelMap;
    this.labelMapSource = labelMap ? labelMapSource : null;
    this.labelCounts = labelCounts;
  }

  get length(): number {
    return this.entries.length;
  }

  async get(i: number): Promise<Sample> {
    checkIndex(this, i);
    const e = this.entries[i];
    const [imgBytes, lblBytes] = await Promise.all([readFile(e.image), readFile(e.label)]);
    const img = decodeImage(imgBytes, e.image);
    const lbl = decodeLabelPng(lblBytes, e.label);
    if (img.width !== lbl.width || img.height !== lbl.height) throw new Error(sizeMismatch(e, lbl, imageInfo(imgBytes, e.image)));
    const label = applyMap(lbl.data, this.labelMap);
    const bad = checkLabelValues(label, lbl.width, this.numClasses, e.label);
    if (bad) throw new Error(bad);
    return { image: rgbToChw(img.data, img.height, img.width), label, h: img.height, w: img.width, id: e.id };
  }
}

/** Open and check a VOC-layout dataset; throws one error listing every problem found. */
export function openVoc(rootArg: string, opts: VocOptions = {}): VocDataset {
  const root = resolve(rootArg);
  const split = opts.split ?? 'train';
  if (!existsSync(root)) throw new Error(`dataset ${root}: the directory does not exist`);
  if (!isDir(root)) throw new Error(`dataset ${root}: not a directory`);
  if (readdirSync(root).length === 0) throw new Error(`dataset ${root}: the directory is empty (expected JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)`);
  const imageDir = join(root, opts.imageDir ?? 'JPEGImages');
  let labelDir: string;
  if (opts.labelDir) labelDir = join(root, opts.labelDir);
  else labelDir = !isDir(join(root, 'SegmentationClass')) && isDir(join(root, 'SegmentationClassAug'))
    ? join(root, 'SegmentationClassAug') : join(root, 'SegmentationClass');
  const customList = opts.listFile !== undefined;
  for (const [dir, what] of [[imageDir, 'images'], [labelDir, 'labels']] as const) {
    // A list file with explicit paths may point anywhere: the default folders are then optional.
    if (customList && !existsSync(dir)) continue;
    if (!isDir(dir)) throw new Error(`dataset ${root}: ${dir} is missing (expected the ${what} of a VOC-layout dataset)`);
    if (readdirSync(dir).length === 0) throw new Error(`dataset ${root}: ${dir} is empty (expected the ${what})`);
  }

  const meta = readMetadata(root);
  let labelMap: Uint8Array | null = null;
  let labelMapSource: string | null = null;
  let palette = vocPalette();
  // Class names from the metadata; a bare numClasses there names them 'class k' (VOC's names only for 21).
  let defaultClasses: readonly string[] = meta?.classNames
    ?? (meta?.numClasses !== undefined && meta.numClasses !== VOC_CLASSES.length
      ? Array.from({ length: Math.max(0, meta.numClasses) }, (_, k) => `class ${k}`) : VOC_CLASSES);
  if (opts.labelMap !== undefined && meta?.labelMap !== undefined) {
    throw new Error(`dataset ${root}: ${meta.file} has a "labelMap" and a label map was given as well${opts.labelMap === 'cityscapes' ? ' (--cityscapes)' : ''}; use one`);
  }
  if (opts.labelMap === 'cityscapes') {
    labelMap = cityscapesLabelToTrainId();
    labelMapSource = 'cityscapes';
    palette = cityscapesPalette();
    defaultClasses = CITYSCAPES_CLASSES;
  } else if (opts.labelMap) {
    if (opts.labelMap.length !== 256) throw new Error(`dataset ${root}: labelMap must have 256 entries, got ${opts.labelMap.length}`);
    labelMap = opts.labelMap;
    labelMapSource = 'option';
  }
  const numClasses = opts.numClasses ?? (opts.classNames?.length ?? defaultClasses.length);
  if (!Number.isInteger(numClasses) || numClasses < 1 || numClasses > 255) {
    throw new Error(`dataset ${root}: numClasses must be an integer in 1..255, got ${numClasses}`);
  }
  let classNames = opts.classNames ?? (defaultClasses.length === numClasses ? defaultClasses
    : Array.from({ length: numClasses }, (_, k) => defaultClasses[k] ?? `class ${k}`));
  if (classNames.length !== numClasses) {
    throw new Error(`dataset ${root}: ${classNames.length} class names for ${numClasses} classes`);
  }
  classNames = Object.freeze([...classNames]);
  if (meta?.labelMap !== undefined) {
    labelMap = labelMapTable(meta.labelMap, numClasses, meta.file);
    labelMapSource = meta.file;
  }

  const problems = new Problems();
  let entries: VocEntry[];
  const listPath = opts.listFile ? resolve(root, opts.listFile) : join(root, 'ImageSets', 'Segmentation', `${split}.txt`);
  if (isFile(listPath)) {
    entries = entriesFromList(root, listPath, imageDir, labelDir, problems);
    if (entries.length === 0 && problems.list.length === 0) throw new Error(`${listPath}: the list is empty`);
  } else if (split === 'all' && !opts.listFile) {
    entries = entriesByStem(imageDir, labelDir, problems);
    if (entries.length === 0 && problems.list.length === 0) throw new Error(`dataset ${root}: no image/label pairs in ${imageDir} and ${labelDir}`);
  } else {
    const listDir = join(root, 'ImageSets', 'Segmentation');
    const have = isDir(listDir) ? readdirSync(listDir).filter((f) => f.endsWith('.txt')).map((f) => f.slice(0, -4)) : [];
    throw new Error(`dataset ${root}: no list file ${listPath} for split '${split}'`
      + (have.length ? ` (lists found: ${have.join(', ')})` : " (write one id per line, or use split 'all' to take every image/label pair)"));
  }

  const mode = opts.validate ?? 'labels';
  const counts = mode === 'none' ? null : emptyLabelCounts(numClasses, entries.length);
  if (counts) {
    for (const e of entries) {
      try {
        const info = imageInfo(readFileSync(e.image), e.image);
        if (mode === 'full') decodeImage(readFileSync(e.image), e.image);
        const lbl = decodeLabelPng(readFileSync(e.label), e.label);
        if (lbl.width !== info.width || lbl.height !== info.height) {
          problems.add(sizeMismatch(e, lbl, info));
          continue;
        }
        const bad = checkLabelValues(applyMap(lbl.data, labelMap), lbl.width, numClasses, e.label);
        if (bad) problems.add(bad);
        else addLabelCounts(counts, lbl.data);
      } catch (err) {
        problems.add((err as Error).message);
      }
    }
  }
  problems.throwIfAny(root);
  return new VocDataset(root, entries, split, numClasses, classNames, palette, labelMap, labelMapSource, counts);
}
