// Evaluation as in the paper (§4.2, Tables 4 and 6): whole images (no crop, no augmentation)
// through the model in eval mode, optionally at several scales and left-right flipped with the
// class probabilities averaged (src/infer/segment.ts), each input padded to k × output stride + 1
// (the paper's 513 × 513 convention, the geometry of the 16k+1 training crops); the class maps are
// counted into a confusion matrix.
//
// The plain case (one scale, no flip, sizes already a multiple of the padding) runs batches with
// the argmax on the GPU; the others run image by image through segment().

import { tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import { argmax } from '../ops/argmax.js';
import { DataLoader } from '../data/loader.js';
import { normalize, IMAGENET, type Normalization } from '../data/augment.js';
import type { Dataset } from '../data/types.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import { segment, defaultPadMultiple } from '../infer/segment.js';
import { ConfusionMatrix, type SegMetrics } from './metrics.js';

export interface EvaluateOptions {
  /** Evaluate samples 0..count-1 only (default: the whole split). */
  count?: number;
  /** Images per forward in the plain case (default 4; images of different sizes need 1). */
  batchSize?: number;
  /** Input scales whose probabilities are averaged (default [1]; the paper's MS: 0.5 … 1.75). */
  scales?: number[];
  /** Also average the left-right flipped image. */
  flip?: boolean;
  /** Pad inputs to a multiple of this plus one (default: the model's padding convention from its
   * checkpoint, `model.inference`, at its output stride; none for a model without one). */
  padMultiple?: number;
  /** Input normalisation (default: the model's, `model.inference`, else ImageNet's). */
  normalization?: Normalization;
  /** Keep the first N samples with their predictions (for overlays). Default 0. */
  keep?: number;
  /** Called after each batch with (images done, images in all). */
  onProgress?: (done: number, total: number) => void;
}

/** A kept sample: its 0..255 CHW image, ground truth and predicted class map. */
export interface KeptPrediction {
  id: string;
  h: number;
  w: number;
  image: Float32Array;
  label: Uint8Array;
  pred: Uint8Array;
}

export interface EvaluateResult extends SegMetrics {
  images: number;
  seconds: number;
  scales: number[];
  flip: boolean;
  /** The first `keep` samples with predictions (absent when keep is 0). */
  kept?: KeptPrediction[];
}

/** Confusion-matrix metrics of `model` on `dataset`. The model is left in eval mode. */
export async function evaluate(model: DeepLabV3, dataset: Dataset, opts: EvaluateOptions = {}): Promise<EvaluateResult> {
  if (model.numClasses !== dataset.numClasses) {
    throw new Error(`evaluate: the model predicts ${model.numClasses} classes but ${dataset.name} (${dataset.split}) has ${dataset.numClasses}`);
  }
  const total = Math.min(opts.count ?? dataset.length, dataset.length);
  if (!Number.isInteger(total) || total < 1) throw new Error(`evaluate: count must be a positive integer, got ${opts.count}`);
  const scales = opts.scales ?? [1];
  if (!scales.length || scales.some((s) => !(s > 0) || !Number.isFinite(s))) throw new Error(`evaluate: scales must be positive numbers, got ${JSON.stringify(scales)}`);
  const flip = opts.flip ?? false;
  const pad = opts.padMultiple ?? defaultPadMultiple(model);
  const norm = opts.normalization ?? model.inference?.normalization ?? IMAGENET;
  const keep = opts.keep ?? 0;
  const kept: KeptPrediction[] = [];
  const cm = new ConfusionMatrix(dataset.numClasses);
  model.eval();
  const t0 = performance.now();
  let done = 0;
  const first = await dataset.get(0);
  const aligned = pad <= 1 || ((first.h - 1) % pad === 0 && (first.w - 1) % pad === 0);
  if (scales.length === 1 && scales[0] === 1 && !flip && aligned && !dataset.name.startsWith('voc:')) {
    const batchSize = Math.min(opts.batchSize ?? 4, total);
    // A view of the first `total` samples, so the loader's one pass stops there.
    const view: Dataset = {
      name: dataset.name, split: dataset.split, length: total, numClasses: dataset.numClasses,
      classNames: dataset.classNames, palette: dataset.palette, get: (i) => dataset.get(i),
    };
    const loader = new DataLoader(view, { batchSize, shuffle: false, augment: false, normalize: norm });
    for await (const b of loader) {
      const pred = noGrad(() => tidy(() => argmax(model.forward(tensor(b.images, [b.n, 3, b.h, b.w])), 1)));
      const classes = await pred.data();
      pred.dispose();
      cm.add(classes, b.labels);
      const hw = b.h * b.w;
      for (let j = 0; j < b.n && kept.length < keep; j++) {
        const s = await dataset.get(done + j);
        kept.push({ id: s.id, h: s.h, w: s.w, image: s.image, label: s.label, pred: Uint8Array.from(classes.subarray(j * hw, (j + 1) * hw)) });
      }
      done += b.n;
      opts.onProgress?.(done, total);
    }
  } else {
    for (let i = 0; i < total; i++) {
      const s = await dataset.get(i);
      const hw = s.h * s.w;
      const seg = await segment(model, normalize(s.image, hw, norm), s.h, s.w, { scales, flip, padMultiple: pad });
      cm.add(seg.labels, s.label);
      if (kept.length < keep) kept.push({ id: s.id, h: s.h, w: s.w, image: s.image, label: s.label, pred: seg.labels });
      done++;
      opts.onProgress?.(done, total);
    }
  }
  return { ...cm.metrics(), images: done, seconds: (performance.now() - t0) / 1000, scales, flip, ...(keep > 0 ? { kept } : {}) };
}
