// One SGD step of DeepLabv3 §4.1, shared by the run-directory trainer (Node, trainer.ts) and the
// in-memory training session (browser demo, session.ts). Pure TypeScript.

import { tensor, type Tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { backward } from '../autograd.js';
import { crossEntropy } from '../ops/loss.js';
import { full } from '../ops/elementwise.js';
import type { SGD } from '../optim/sgd.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import type { Batch } from '../data/types.js';

/**
 * Records forward, cross entropy (ignoring 255) on logits at the crop size, backward and the SGD
 * update, then copies the loss into float slot `slot` of `lossBuf` (read back later, so the step
 * itself never waits for the GPU). The model must be in training mode; `opt.lr` is used as set.
 *
 * Gradient accumulation: with K batches, each one's forward and backward run on their own (only
 * one batch's activations are alive at a time) with the loss weighted 1/K, the gradients add up in
 * the parameters' .grad, and one update follows; batch k's loss goes to slot `slot * K + k`.
 */
export function recordTrainStep(model: DeepLabV3, opt: SGD, batches: Batch | Batch[], lossBuf: Tensor, slot: number): void {
  const list = Array.isArray(batches) ? batches : [batches];
  const k = list.length;
  list.forEach((b, j) => {
    tidy(() => {
      const x = tensor(b.images, [b.n, 3, b.h, b.w]);
      const y = tensor(b.labels, [b.n, b.h, b.w], 'i32');
      const logits = model.forward(x);
      const loss = crossEntropy(logits, y, { ignoreIndex: 255 });
      // Freed as consumed (the graph's nodes hold what backward reads): the batch once the first
      // convolution's backward has run, the logits and labels once the loss's has.
      for (const t of [x, y, logits]) t.freeStorage();
      backward(loss, k > 1 ? full(loss.shape, 1 / k) : undefined);
      loss.copyTo(lossBuf, 1, 0, slot * k + j);
    });
  });
  opt.step();
  opt.zeroGrad();
}
