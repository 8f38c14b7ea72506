// Evaluation: whole images (no crop, no augmentation) through the model in eval mode, argmax on
// the GPU, class maps read back and counted into a confusion matrix.

import { tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import { argmax } from '../ops/argmax.js';
import { DataLoader } from '../data/loader.js';
import type { Dataset } from '../data/types.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import { ConfusionMatrix, type SegMetrics } from './metrics.js';

export interface EvaluateOptions {
  /** Evaluate samples 0..count-1 only (default: the whole split). */
  count?: number;
  /** Images per forward (default 4; images of different sizes need 1). */
  batchSize?: number;
  /** Called after each batch with (images done, images in all). */
  onProgress?: (done: number, total: number) => void;
}

export interface EvaluateResult extends SegMetrics {
  images: number;
  seconds: number;
}

/** Confusion-matrix metrics of `model` on `dataset`. The model is left in eval mode. */
export async function evaluate(model: DeepLabV3, dataset: Dataset, opts: EvaluateOptions = {}): Promise<EvaluateResult> {
  if (model.numClasses !== dataset.numClasses) {
    throw new Error(`evaluate: the model predicts ${model.numClasses} classes but ${dataset.name} (${dataset.split}) has ${dataset.numClasses}`);
  }
  const total = Math.min(opts.count ?? dataset.length, dataset.length);
  if (!Number.isInteger(total) || total < 1) throw new Error(`evaluate: count must be a positive integer, got ${opts.count}`);
  const batchSize = Math.min(opts.batchSize ?? 4, total);
  // A view of the first `total` samples, so the loader's one pass stops there.
  const view: Dataset = {
    name: dataset.name, split: dataset.split, length: total, numClasses: dataset.numClasses,
    classNames: dataset.classNames, palette: dataset.palette, get: (i) => dataset.get(i),
  };
  const loader = new DataLoader(view, { batchSize, shuffle: false, augment: false });
  const cm = new ConfusionMatrix(dataset.numClasses);
  model.eval();
  const t0 = performance.now();
  let done = 0;
  for await (const b of loader) {
    const pred = noGrad(() => tidy(() => argmax(model.forward(tensor(b.images, [b.n, 3, b.h, b.w])), 1)));
    const classes = await pred.data();
    pred.dispose();
    cm.add(classes, b.labels);
    done += b.n;
    opts.onProgress?.(done, total);
  }
  return { ...cm.metrics(), images: done, seconds: (performance.now() - t0) / 1000 };
}
