// Datasets as a person would bring them to the page, written to disk: a VOC folder (generated
// `shapes` images whose six shapes the dataset's label map merges into 'round' and 'angular') and
// an images/ + masks/ pairs folder with one mask cut short. Used by dropped.test.ts and the browser test.
import { cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShapesDataset } from '../src/data/shapes.js';
import { exportVoc } from '../src/data/export.js';

/** The merged task: background, round (circle, ellipse), angular (the other four shapes). */
export const MERGED_META = {
  numClasses: 3,
  classNames: ['background', 'round', 'angular'],
  labelMap: { 1: 1, 6: 1, 2: 2, 3: 2, 4: 2, 5: 2 },
};

/** DIR/JPEGImages, SegmentationClass, ImageSets/Segmentation/{train,val}.txt, atrous-dataset.json. */
export async function writeVocFolder(dir: string, train = 24, val = 8): Promise<void> {
  await exportVoc(new ShapesDataset({ split: 'train', seed: 11 }), dir, { count: train });
  await exportVoc(new ShapesDataset({ split: 'val', seed: 11 }), dir, { count: val });
  writeFileSync(join(dir, 'atrous-dataset.json'), `${JSON.stringify(MERGED_META, null, 2)}\n`);
}

/** DIR/images/*.jpg and DIR/masks/*.png from a VOC folder; the mask of the `broken`-th image
 * (sorted) cut to its first 100 bytes when `broken` is given. Returns the broken mask's name. */
export function writePairsFolder(voc: string, dir: string, broken?: number): string | null {
  mkdirSync(dir, { recursive: true });
  cpSync(join(voc, 'JPEGImages'), join(dir, 'images'), { recursive: true });
  cpSync(join(voc, 'SegmentationClass'), join(dir, 'masks'), { recursive: true });
  cpSync(join(voc, 'atrous-dataset.json'), join(dir, 'atrous-dataset.json'));
  if (broken === undefined) return null;
  const name = readdirSync(join(dir, 'masks')).sort()[broken];
  const p = join(dir, 'masks', name);
  writeFileSync(p, readFileSync(p).subarray(0, 100));
  return name;
}

/** Every file under `dir` as [path relative to dir's parent, bytes], as a folder drop gives them. */
export function folderEntries(dir: string, prefix = dir.split('/').pop()!): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...folderEntries(p, `${prefix}/${e.name}`));
    else out.push([`${prefix}/${e.name}`, new Uint8Array(readFileSync(p))]);
  }
  return out;
}
