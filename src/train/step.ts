// One SGD step of DeepLabv3 §4.1 on a batch, shared by the run-directory trainer (Node,
// trainer.ts) and the in-memory training session (browser demo, session.ts). Pure TypeScript.

import { engine } from '../gpu/engine.js';
import { tensor, type Tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { backward } from '../autograd.js';
import { crossEntropy } from '../ops/loss.js';
import type { SGD } from '../optim/sgd.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import type { Batch } from '../data/types.js';

/**
 * Records forward, cross entropy (ignoring 255) on logits at the crop size, backward and the SGD
 * update, then copies the loss into float slot `slot` of `lossBuf` (read back later, so the step
 * itself never waits for the GPU). The model must be in training mode; `opt.lr` is used as set.
 */
export function recordTrainStep(model: DeepLabV3, opt: SGD, b: Batch, lossBuf: Tensor, slot: number): void {
  tidy(() => {
    const x = tensor(b.images, [b.n, 3, b.h, b.w]);
    const y = tensor(b.labels, [b.n, b.h, b.w], 'i32');
    const loss = crossEntropy(model.forward(x), y, { ignoreIndex: 255 });
    backward(loss);
    opt.step();
    opt.zeroGrad();
    engine().copy(loss, lossBuf, 4, 0, slot * 4);
  });
}
