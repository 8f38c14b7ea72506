// Inference with the paper's strategy (§4.2): the image at several scales and left-right flipped,
// class probabilities averaged at the input resolution. Scaling runs on the GPU (bilinear,
// align_corners false, as torchvision); flipping and the softmax average run on the CPU, where
// the logits arrive anyway. No Node built-ins: the browser demo uses this too.

import { tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { noGrad } from '../autograd.js';
import { interpolate } from '../ops/resize.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';

export interface SegmentOptions {
  /** Input scales (1 = as given). Default [1]. */
  scales?: number[];
  /** Also run the left-right flipped image. */
  flip?: boolean;
}

export interface Segmentation {
  height: number;
  width: number;
  numClasses: number;
  /** Class index per pixel (argmax of the averaged probabilities), row-major [h, w]. */
  labels: Uint8Array;
  /** Logits [classes, h, w] at the input resolution: the mean over scales and flips. */
  logits: Float32Array;
}

function flipW(data: Float32Array, planes: number, h: number, w: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let p = 0; p < planes; p++) {
    for (let y = 0; y < h; y++) {
      const row = (p * h + y) * w;
      for (let x = 0; x < w; x++) out[row + x] = data[row + w - 1 - x];
    }
  }
  return out;
}

/** Segments one normalised CHW image (3 × h × w). The model must be in eval mode. */
export async function segment(model: DeepLabV3, image: Float32Array, h: number, w: number, opts: SegmentOptions = {}): Promise<Segmentation> {
  const scales = opts.scales ?? [1];
  if (!scales.length || scales.some((s) => !(s > 0) || !Number.isFinite(s))) throw new Error(`atrous: segment: scales must be positive numbers, got ${JSON.stringify(scales)}`);
  if (image.length !== 3 * h * w) throw new Error(`atrous: segment: image has ${image.length} values, expected 3 × ${h} × ${w}`);
  const c = model.config.numClasses;
  const hw = h * w;
  const probSum = new Float32Array(c * hw);
  const logitSum = new Float32Array(c * hw);
  let runs = 0;
  for (const flipped of opts.flip ? [false, true] : [false]) {
    const input = flipped ? flipW(image, 3, h, w) : image;
    for (const s of scales) {
      const sh = Math.max(1, Math.round(h * s));
      const sw = Math.max(1, Math.round(w * s));
      const out = noGrad(() =>
        tidy(() => {
          let x = tensor(input, [1, 3, h, w]);
          if (sh !== h || sw !== w) x = interpolate(x, { size: [sh, sw], alignCorners: false });
          let y = model.forward(x);
          if (sh !== h || sw !== w) y = interpolate(y, { size: [h, w], alignCorners: false });
          return y;
        }),
      );
      let logits = (await out.data()) as Float32Array;
      out.dispose();
      if (flipped) logits = flipW(logits, c, h, w);
      // Softmax per pixel, accumulated; max-subtracted for stability.
      for (let i = 0; i < hw; i++) {
        let m = -Infinity;
        for (let k = 0; k < c; k++) m = Math.max(m, logits[k * hw + i]);
        let z = 0;
        for (let k = 0; k < c; k++) z += Math.exp(logits[k * hw + i] - m);
        for (let k = 0; k < c; k++) {
          probSum[k * hw + i] += Math.exp(logits[k * hw + i] - m) / z;
          logitSum[k * hw + i] += logits[k * hw + i];
        }
      }
      runs++;
    }
  }
  const labels = new Uint8Array(hw);
  for (let i = 0; i < hw; i++) {
    let best = 0;
    for (let k = 1; k < c; k++) if (probSum[k * hw + i] > probSum[best * hw + i]) best = k;
    labels[i] = best;
  }
  for (let i = 0; i < logitSum.length; i++) logitSum[i] /= runs;
  return { height: h, width: w, numClasses: c, labels, logits: logitSum };
}
