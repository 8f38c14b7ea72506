// Segmentation metrics from a confusion matrix, as the paper (and the PASCAL VOC devkit) reports
// them: IoU_c = TP / (TP + FP + FN) per class, mIoU the mean over the classes that occur in the
// labels or the predictions (a class absent from both has no IoU and is left out of the mean, as
// mmseg's nanmean and the VOC and Cityscapes scripts do; a class with no ground truth that was
// predicted has IoU 0 and counts), pixel accuracy = trace / total. Pixels labelled 255 (ignore)
// are not counted. Pure TypeScript: runs in browsers too.

import { IGNORE } from '../data/types.js';

export interface SegMetrics {
  /** Per class: IoU, or null when the class is absent from both labels and predictions. */
  iou: (number | null)[];
  miou: number;
  pixelAccuracy: number;
  /** Labelled (non-ignored) pixels counted. */
  pixels: number;
  /** Labelled pixels of each class. */
  support: number[];
  /** Labelled pixels predicted as each class. */
  predicted: number[];
  /** Classes with no labelled pixel (ascending): their IoU is null, or 0 where they were predicted. */
  noGroundTruth: number[];
  /** Classes the mean was taken over (those with an IoU). */
  miouClasses: number;
}

export class ConfusionMatrix {
  readonly numClasses: number;
  /** counts[label * numClasses + prediction]; float64 so billions of pixels stay exact. */
  readonly counts: Float64Array;

  constructor(numClasses: number) {
    if (!Number.isInteger(numClasses) || numClasses < 1) throw new Error(`ConfusionMatrix: numClasses must be a positive integer, got ${numClasses}`);
    this.numClasses = numClasses;
    this.counts = new Float64Array(numClasses * numClasses);
  }

  /** Adds predictions against labels (same length); labels equal to 255 are skipped. */
  add(pred: ArrayLike<number>, label: ArrayLike<number>): void {
    if (pred.length !== label.length) throw new Error(`ConfusionMatrix.add: ${pred.length} predictions for ${label.length} labels`);
    const c = this.numClasses;
    for (let i = 0; i < label.length; i++) {
      const l = label[i];
      if (l === IGNORE) continue;
      const p = pred[i];
      if (!(l >= 0 && l < c)) throw new Error(`ConfusionMatrix.add: label ${l} at pixel ${i} is outside [0, ${c}) and not ${IGNORE}`);
      if (!(p >= 0 && p < c)) throw new Error(`ConfusionMatrix.add: prediction ${p} at pixel ${i} is outside [0, ${c})`);
      this.counts[l * c + p]++;
    }
  }

  metrics(): SegMetrics {
    const c = this.numClasses;
    const iou: (number | null)[] = [];
    const support: number[] = [];
    const predicted: number[] = [];
    let tp = 0;
    let total = 0;
    for (let k = 0; k < c; k++) {
      let row = 0;
      let col = 0;
      for (let j = 0; j < c; j++) {
        row += this.counts[k * c + j];
        col += this.counts[j * c + k];
      }
      const d = this.counts[k * c + k];
      const union = row + col - d;
      iou.push(union > 0 ? d / union : null);
      support.push(row);
      predicted.push(col);
      tp += d;
      total += row;
    }
    const present = iou.filter((v): v is number => v !== null);
    return {
      iou,
      miou: present.length ? present.reduce((a, b) => a + b, 0) / present.length : 0,
      pixelAccuracy: total > 0 ? tp / total : 0,
      pixels: total,
      support,
      predicted,
      noGroundTruth: support.flatMap((n, k) => (n === 0 ? [k] : [])),
      miouClasses: present.length,
    };
  }
}

/** The mean's scope: "mIoU over 1 of 2 classes (left out, no ground truth and never predicted: 1 'object')". */
export function describeMiouClasses(m: SegMetrics, classNames: readonly string[]): string {
  const name = (k: number) => `${k} '${classNames[k] ?? `class ${k}`}'`;
  const left = m.noGroundTruth.filter((k) => m.iou[k] === null);
  const zero = m.noGroundTruth.filter((k) => m.iou[k] !== null);
  const parts: string[] = [];
  if (left.length) parts.push(`left out, no ground truth and never predicted: ${left.map(name).join(', ')}`);
  if (zero.length) parts.push(`IoU 0, no ground truth but predicted: ${zero.map(name).join(', ')}`);
  return `mIoU over ${m.miouClasses} of ${m.iou.length} classes${parts.length ? ` (${parts.join('; ')})` : ''}`;
}

/**
 * The per-class table (classes without ground truth marked: IoU 'n/a' when also never predicted),
 * pixel accuracy, the classes the mean was taken over, and the closing `mIoU: 0.xxxx` line.
 */
export function formatMetrics(m: SegMetrics, classNames: readonly string[]): string {
  const width = Math.max(5, ...classNames.map((n) => n.length));
  const lines = [`${'class'.padEnd(width)}  ${'IoU'.padStart(7)}  ${'pixels'.padStart(10)}`];
  m.iou.forEach((v, k) => {
    const note = m.support[k] > 0 ? '' : `  no ground truth${m.predicted[k] > 0 ? `, ${m.predicted[k]} pixels predicted as it` : ''}`;
    lines.push(`${(classNames[k] ?? `class ${k}`).padEnd(width)}  ${(v === null ? 'n/a' : v.toFixed(4)).padStart(7)}  ${String(m.support[k]).padStart(10)}${note}`);
  });
  lines.push('', `pixel accuracy: ${m.pixelAccuracy.toFixed(4)} (${m.pixels} labelled pixels)`, describeMiouClasses(m, classNames), `mIoU: ${m.miou.toFixed(4)}`);
  return lines.join('\n');
}
