// Node loader for Debian's `dataset-fashion-mnist` package: gunzips and parses the IDX files and
// builds `fashion-scenes` datasets from them. The train split only ever sees train-*, val only t10k-*.
import { existsSync, readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { join } from 'node:path';
import { FashionScenesDataset, makePool, parseIdx, type FashionPool, type FashionScenesOptions } from './fashion-scenes.js';

/** Where Debian's package puts the files; ATROUS_FASHION_MNIST_DIR overrides it. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export function fashionMnistDir(): string {
  return process.env.ATROUS_FASHION_MNIST_DIR || FASHION_MNIST_DIR;
}

const cache = new Map<string, FashionPool>();

function readIdxGz(path: string) {
  let raw: Buffer;
  try {
    raw = gunzipSync(readFileSync(path));
  } catch (e) {
    throw new Error(`${path}: cannot read or gunzip (${(e as Error).message}); reinstall the Debian package dataset-fashion-mnist`);
  }
  return parseIdx(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), path);
}

/** Files of one part: 'train' (60,000 items) or 't10k' (10,000 test items). */
export function fashionMnistFiles(part: 'train' | 't10k', dir = fashionMnistDir()): { images: string; labels: string } {
  return { images: join(dir, `${part}-images-idx3-ubyte.gz`), labels: join(dir, `${part}-labels-idx1-ubyte.gz`) };
}

/** Whether the files of both parts are present (tests skip fashion-scenes without them). */
export function haveFashionMnist(dir = fashionMnistDir()): boolean {
  return (['train', 't10k'] as const).every((p) => Object.values(fashionMnistFiles(p, dir)).every((f) => existsSync(f)));
}

/** Load (once per process) one part of Fashion-MNIST, with an error naming the package when missing. */
export function loadFashionMnist(part: 'train' | 't10k', dir = fashionMnistDir()): FashionPool {
  const files = fashionMnistFiles(part, dir);
  const key = `${files.images}\n${files.labels}`;
  const hit = cache.get(key);
  if (hit) return hit;
  for (const f of Object.values(files)) {
    if (!existsSync(f)) {
      throw new Error(`fashion-scenes needs Fashion-MNIST, but ${f} does not exist: install the Debian package `
        + `dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or point ATROUS_FASHION_MNIST_DIR at a copy of its files`);
    }
  }
  const pool = makePool(readIdxGz(files.images), readIdxGz(files.labels), files.images);
  cache.set(key, pool);
  return pool;
}

/** The fashion-scenes dataset of a split, from Debian's files (train items for train, test items for val). */
export function openFashionScenes(opts: FashionScenesOptions & { dir?: string } = {}): FashionScenesDataset {
  const split = opts.split ?? 'train';
  if (split !== 'train' && split !== 'val') throw new Error(`fashion-scenes: split must be 'train' or 'val', got '${String(split)}'`);
  return new FashionScenesDataset(loadFashionMnist(split === 'train' ? 'train' : 't10k', opts.dir), opts);
}
