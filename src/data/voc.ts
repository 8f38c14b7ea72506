// Reader for datasets in the PASCAL VOC layout on disk (Node): the checks and the reader are
// voc-core.ts (browser-safe, shared with the page); this module gives them node:fs and the Node
// photo decoders. The layout, the label map and the checks: voc-core.ts.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { decodeImage } from '../io/image.js';
import { openVocFiles, type DatasetFiles, type VocDataset, type VocOptions } from './voc-core.js';

export * from './voc-core.js';

function stat(p: string) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

/** The local file system as DatasetFiles. */
export const nodeFiles: DatasetFiles = {
  resolveRoot: (root) => resolve(root),
  join: (dir, name) => resolve(dir, name),
  exists: (p) => existsSync(p),
  isDir: (p) => stat(p)?.isDirectory() ?? false,
  isFile: (p) => stat(p)?.isFile() ?? false,
  list: (dir) => readdirSync(dir),
  read: (p) => readFileSync(p),
  readAsync: (p) => readFile(p),
  decodeImage: (bytes, name) => decodeImage(bytes, name),
  checkDecode: (bytes, name) => {
    decodeImage(bytes, name);
  },
};

/** Open and check a VOC-layout dataset directory; throws one error listing every problem found. */
export function openVoc(root: string, opts: VocOptions = {}): VocDataset {
  return openVocFiles(nodeFiles, root, opts);
}
