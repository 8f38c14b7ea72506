// Reader for datasets in the PASCAL VOC layout, over any file access (browser-safe): the CLI reads
// a directory (voc.ts, node:fs), the page a dropped folder or zip held in memory (MemoryFiles).
// Both run these checks, so a problem gets the same message in `atrous data check` and in the page.
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
import { decodeLabelPng, imageInfo, type ImageInfo, type RawImage } from '../io/image-core.js';
import { rgbToChw } from './pixels.js';
import { VOC_CLASSES, vocPalette, cityscapesLabelToTrainId, cityscapesPalette, CITYSCAPES_CLASSES } from './palette.js';
import { checkIndex, IGNORE, type Dataset, type Sample } from './types.js';
import { addLabelCounts, emptyLabelCounts, labelMapTable, type LabelCounts } from './labels.js';

/** The file access a VOC reader needs: a directory tree and an image decoder. Paths are strings
 * as `join` makes them; `resolveRoot` turns the root given by the user into the first of them. */
export interface DatasetFiles {
  resolveRoot(root: string): string;
  join(dir: string, name: string): string;
  exists(path: string): boolean;
  isDir(path: string): boolean;
  isFile(path: string): boolean;
  /** Names in a directory. */
  list(dir: string): string[];
  read(path: string): Uint8Array;
  readAsync(path: string): Promise<Uint8Array>;
  /** A photo as 8-bit RGB, upright. */
  decodeImage(bytes: Uint8Array, name: string): RawImage | Promise<RawImage>;
  /** validate 'full': decodes a photo up front (synchronous decoders only; absent: not done). */
  checkDecode?(bytes: Uint8Array, name: string): void;
}

/** The part of a path after its last '/'; without `ext` when it ends with it. */
export function basename(p: string, ext = ''): string {
  const b = p.slice(p.lastIndexOf('/') + 1);
  return ext && b.endsWith(ext) && b !== ext ? b.slice(0, -ext.length) : b;
}

/** '.png' of 'a/b.png'; '' without a dot after the last '/' (a leading dot does not count). */
export function extname(p: string): string {
  const b = basename(p);
  const i = b.lastIndexOf('.');
  return i > 0 ? b.slice(i) : '';
}

/** Joins and normalises '/'-separated relative paths ('.' and '..' resolved; '..' never above the top). */
export function joinPath(dir: string, name: string): string {
  const out: string[] = [];
  for (const part of `${dir}/${name}`.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

/**
 * Files held in memory (a dropped folder or a zip), by '/'-separated path; directories are the
 * paths' prefixes. Photos are decoded by `decode` (the page: the browser's decoder).
 */
export class MemoryFiles implements DatasetFiles {
  private readonly files = new Map<string, Uint8Array>();
  private readonly dirs = new Map<string, Set<string>>();

  constructor(entries: Iterable<[string, Uint8Array]>, readonly decode: (bytes: Uint8Array, name: string) => RawImage | Promise<RawImage>) {
    for (const [p, bytes] of entries) {
      const path = joinPath('', p);
      if (!path) continue;
      this.files.set(path, bytes);
      const parts = path.split('/');
      for (let i = 0; i < parts.length; i++) {
        const dir = parts.slice(0, i).join('/');
        if (!this.dirs.has(dir)) this.dirs.set(dir, new Set());
        this.dirs.get(dir)!.add(parts[i]);
      }
    }
  }

  get size(): number {
    return this.files.size;
  }

  paths(): string[] {
    return [...this.files.keys()];
  }

  resolveRoot(root: string): string {
    return joinPath('', root);
  }

  join(dir: string, name: string): string {
    return joinPath(dir, name);
  }

  exists(p: string): boolean {
    return this.isFile(p) || this.isDir(p);
  }

  isDir(p: string): boolean {
    return this.dirs.has(joinPath('', p));
  }

  isFile(p: string): boolean {
    return this.files.has(joinPath('', p));
  }

  list(dir: string): string[] {
    return [...(this.dirs.get(joinPath('', dir)) ?? [])];
  }

  read(p: string): Uint8Array {
    const b = this.files.get(joinPath('', p));
    if (!b) throw new Error(`${p}: no such file`);
    return b;
  }

  async readAsync(p: string): Promise<Uint8Array> {
    return this.read(p);
  }

  decodeImage(bytes: Uint8Array, name: string): RawImage | Promise<RawImage> {
    return this.decode(bytes, name);
  }
}

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

/** Keys of atrous-dataset.json ('format' and 'name' are written by export and not read). */
const METADATA_KEYS = ['format', 'name', 'numClasses', 'classNames', 'labelMap'];

interface Metadata {
  file: string;
  numClasses?: number;
  classNames?: string[];
  /** Checked against the number of classes once that is known. */
  labelMap?: unknown;
}

function readMetadata(fs: DatasetFiles, root: string): Metadata | null {
  const p = fs.join(root, METADATA_FILE);
  if (!fs.exists(p)) return null;
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder().decode(fs.read(p)));
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

function findImage(fs: DatasetFiles, dir: string, id: string): string | null {
  for (const ext of IMAGE_EXTS) {
    const p = fs.join(dir, id + ext);
    if (fs.isFile(p)) return p;
  }
  return null;
}

/** Parse a list file into entries, reporting missing images/labels. */
function entriesFromList(fs: DatasetFiles, root: string, listPath: string, imageDir: string, labelDir: string, problems: Problems): VocEntry[] {
  const text = new TextDecoder().decode(fs.read(listPath));
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
      const image = findImage(fs, imageDir, id);
      const label = fs.join(labelDir, `${id}.png`);
      const hasLabel = fs.isFile(label);
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
      const image = fs.join(root, parts[0].replace(/^\/+/, ''));
      const label = fs.join(root, parts[1].replace(/^\/+/, ''));
      const hasImage = fs.isFile(image);
      const hasLabel = fs.isFile(label);
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
function entriesByStem(fs: DatasetFiles, imageDir: string, labelDir: string, problems: Problems): VocEntry[] {
  const images = new Map<string, string>();
  for (const f of fs.list(imageDir).sort()) {
    if (IMAGE_EXTS.includes(extname(f)) && fs.isFile(fs.join(imageDir, f))) images.set(basename(f, extname(f)), fs.join(imageDir, f));
  }
  const labels = new Map<string, string>();
  for (const f of fs.list(labelDir).sort()) {
    if (extname(f).toLowerCase() === '.png' && fs.isFile(fs.join(labelDir, f))) labels.set(basename(f, extname(f)), fs.join(labelDir, f));
  }
  const entries: VocEntry[] = [];
  for (const [id, image] of images) {
    const label = labels.get(id);
    if (label) entries.push({ id, image, label });
    else problems.add(`${image}: image without a label (expected ${fs.join(labelDir, `${id}.png`)})`);
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

  readonly files: DatasetFiles;

  constructor(files: DatasetFiles, root: string, entries: VocEntry[], split: string, numClasses: number, classNames: readonly string[],
    palette: Uint8Array, labelMap: Uint8Array | null, labelMapSource: string | null = null, labelCounts: LabelCounts | null = null) {
    this.files = files;
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
    const [imgBytes, lblBytes] = await Promise.all([this.files.readAsync(e.image), this.files.readAsync(e.label)]);
    const img = await this.files.decodeImage(imgBytes, e.image);
    const lbl = decodeLabelPng(lblBytes, e.label);
    if (img.width !== lbl.width || img.height !== lbl.height) throw new Error(sizeMismatch(e, lbl, imageInfo(imgBytes, e.image)));
    const label = applyMap(lbl.data, this.labelMap);
    const bad = checkLabelValues(label, lbl.width, this.numClasses, e.label);
    if (bad) throw new Error(bad);
    return { image: rgbToChw(img.data, img.height, img.width), label, h: img.height, w: img.width, id: e.id };
  }
}

/** Open and check a VOC-layout dataset; throws one error listing every problem found. */
export function openVocFiles(fs: DatasetFiles, rootArg: string, opts: VocOptions = {}): VocDataset {
  const root = fs.resolveRoot(rootArg);
  const split = opts.split ?? 'train';
  if (!fs.exists(root)) throw new Error(`dataset ${root}: the directory does not exist`);
  if (!fs.isDir(root)) throw new Error(`dataset ${root}: not a directory`);
  if (fs.list(root).length === 0) throw new Error(`dataset ${root}: the directory is empty (expected JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)`);
  const imageDir = fs.join(root, opts.imageDir ?? 'JPEGImages');
  let labelDir: string;
  if (opts.labelDir) labelDir = fs.join(root, opts.labelDir);
  else labelDir = !fs.isDir(fs.join(root, 'SegmentationClass')) && fs.isDir(fs.join(root, 'SegmentationClassAug'))
    ? fs.join(root, 'SegmentationClassAug') : fs.join(root, 'SegmentationClass');
  const customList = opts.listFile !== undefined;
  for (const [dir, what] of [[imageDir, 'images'], [labelDir, 'labels']] as const) {
    // A list file with explicit paths may point anywhere: the default folders are then optional.
    if (customList && !fs.exists(dir)) continue;
    if (!fs.isDir(dir)) throw new Error(`dataset ${root}: ${dir} is missing (expected the ${what} of a VOC-layout dataset)`);
    if (fs.list(dir).length === 0) throw new Error(`dataset ${root}: ${dir} is empty (expected the ${what})`);
  }

  const meta = readMetadata(fs, root);
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
  const listPath = opts.listFile ? fs.join(root, opts.listFile) : fs.join(root, `ImageSets/Segmentation/${split}.txt`);
  if (fs.isFile(listPath)) {
    entries = entriesFromList(fs, root, listPath, imageDir, labelDir, problems);
    if (entries.length === 0 && problems.list.length === 0) throw new Error(`${listPath}: the list is empty`);
  } else if (split === 'all' && !opts.listFile) {
    entries = entriesByStem(fs, imageDir, labelDir, problems);
    if (entries.length === 0 && problems.list.length === 0) throw new Error(`dataset ${root}: no image/label pairs in ${imageDir} and ${labelDir}`);
  } else {
    const listDir = fs.join(root, 'ImageSets/Segmentation');
    const have = fs.isDir(listDir) ? fs.list(listDir).filter((f) => f.endsWith('.txt')).map((f) => f.slice(0, -4)) : [];
    throw new Error(`dataset ${root}: no list file ${listPath} for split '${split}'`
      + (have.length ? ` (lists found: ${have.join(', ')})` : " (write one id per line, or use split 'all' to take every image/label pair)"));
  }

  const mode = opts.validate ?? 'labels';
  const counts = mode === 'none' ? null : emptyLabelCounts(numClasses, entries.length);
  if (counts) {
    for (const e of entries) {
      try {
        const imageBytes = fs.read(e.image);
        const info = imageInfo(imageBytes, e.image);
        if (mode === 'full') fs.checkDecode?.(imageBytes, e.image);
        const lbl = decodeLabelPng(fs.read(e.label), e.label);
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
  return new VocDataset(fs, root, entries, split, numClasses, classNames, palette, labelMap, labelMapSource, counts);
}
