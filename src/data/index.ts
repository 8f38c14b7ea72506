// The data pipeline. Pure modules (usable in browsers): types, labels, rng, palette, textures, shapes,
// fashion-scenes, augment, loader, voc-core (the VOC reader and its checks over any file access),
// dropped (a dataset brought as files). Node-only: fashion-mnist (Debian's files), voc (the reader on
// node:fs), export.
export * from './types.js';
export * from './labels.js';
export * from './rng.js';
export * from './palette.js';
export * from './textures.js';
export * from './shapes.js';
export * from './fashion-scenes.js';
export * from './augment.js';
export * from './loader.js';
export * from './fashion-mnist.js';
export * from './voc.js';
export * from './dropped.js';
export * from './export.js';

import { ShapesDataset } from './shapes.js';
import { openFashionScenes } from './fashion-mnist.js';
import { openVoc, type VocOptions } from './voc.js';
import type { Dataset } from './types.js';

export interface OpenDatasetOptions {
  split?: string;
  seed?: number;
  /** Embedded datasets: number of samples and image size. */
  length?: number;
  h?: number;
  w?: number;
  /** VOC directories: reader options. */
  voc?: Omit<VocOptions, 'split'>;
}

/**
 * A dataset from its command-line name: 'shapes', 'fashion-scenes' or 'voc:DIR' (a directory in
 * the PASCAL VOC layout). Embedded datasets have the splits 'train' and 'val'.
 */
export function openDataset(spec: string, opts: OpenDatasetOptions = {}): Dataset {
  const split = opts.split ?? 'train';
  if (spec.startsWith('voc:')) {
    const dir = spec.slice(4);
    if (!dir) throw new Error("dataset 'voc:' needs a directory: voc:DIR");
    return openVoc(dir, { ...opts.voc, split });
  }
  if (spec === 'shapes' || spec === 'fashion-scenes') {
    if (split !== 'train' && split !== 'val') throw new Error(`dataset ${spec}: split must be 'train' or 'val', got '${split}'`);
    const o = { split, seed: opts.seed, length: opts.length, h: opts.h, w: opts.w } as const;
    return spec === 'shapes' ? new ShapesDataset(o) : openFashionScenes(o);
  }
  throw new Error(`unknown dataset '${spec}': use shapes, fashion-scenes or voc:DIR`);
}
