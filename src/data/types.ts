// The data pipeline's shared types. Pure TypeScript: runs in browsers too.
import type { LabelCounts } from './labels.js';

/** The label value that losses and metrics skip (PASCAL VOC's object borders, crop padding). */
export const IGNORE = 255;

/**
 * One image with its per-pixel labels, as every dataset returns it, before augmentation.
 *
 * image: planar CHW RGB (3 × h × w floats) with values in 0..255, NOT normalised: augmentation
 *        pads with the mean in this range, and normalisation happens when a batch is assembled
 *        (see `normalize` in augment.ts).
 * label: row-major h × w class indices in [0, numClasses) or IGNORE (255).
 */
export interface Sample {
  image: Float32Array;
  label: Uint8Array;
  h: number;
  w: number;
  /** Stable name of the sample: the file stem for directory datasets, `<split>_<index>` for embedded ones. */
  id: string;
}

export interface Dataset {
  /** What it is: 'shapes', 'fashion-scenes', 'voc:/path/to/dir'. */
  readonly name: string;
  /** Which part: 'train', 'val', 'trainval', ... */
  readonly split: string;
  readonly length: number;
  /** Number of classes including background; labels lie in [0, numClasses) ∪ {255}. */
  readonly numClasses: number;
  /** numClasses names, index 0 first (background for VOC-like sets). */
  readonly classNames: readonly string[];
  /** 256 RGB triples (768 bytes) that colour label index k: VOC's colour map unless the set has its own. */
  readonly palette: Uint8Array;
  /**
   * Pixel counts of the whole split's labels when the reader made them while opening it (a VOC
   * directory checks every label then); absent otherwise (countLabels() then reads samples).
   */
  readonly labelCounts?: LabelCounts | null;
  /** Sample i, 0 <= i < length; generated or read on demand. Errors name the file and the problem. */
  get(i: number): Promise<Sample>;
}

/**
 * A batch ready for the GPU: images NCHW (n × 3 × h × w, normalised as the loader was told) and
 * labels NHW as int32 (255 stays 255 = ignore).
 */
export interface Batch {
  images: Float32Array;
  labels: Int32Array;
  n: number;
  h: number;
  w: number;
  ids: string[];
  /** Index of this batch in the loader's stream (the training step it feeds). */
  step: number;
}

/** Throws a RangeError naming the dataset when i is not a valid index. */
export function checkIndex(ds: { name: string; split: string; length: number }, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= ds.length) {
    throw new RangeError(`${ds.name} (${ds.split}): sample index ${i} is out of range [0, ${ds.length})`);
  }
}
