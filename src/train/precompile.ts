// Compiles every pipeline of a training step before the first step, asynchronously
// (Engine.precompile → createComputePipelineAsync, all in flight together), so the first step
// records dispatches instead of waiting for shader compilation one pipeline at a time.
//
// The pipelines are found by tracing one step: forward, loss and backward run with the engine in
// trace mode (Engine.trace), which notes each dispatch's pipeline and records no GPU work. The
// CPU-side state a forward advances (num_batches_tracked counters, dropout mask positions) is put
// back, so the traced step leaves no trace; the optimizer's update pipeline is added by name (a
// traced SGD step would mark momentum buffers as initialised).

import { engine, type PipelineSpec } from '../gpu/engine.js';
import { empty } from '../tensor.js';
import { tidy } from '../scope.js';
import { backward } from '../autograd.js';
import { crossEntropy } from '../ops/loss.js';
import { Dropout } from '../nn/layers.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';
import type { SGD } from '../optim/sgd.js';

/** The pipelines of one training step of `model` on a batch [n, 3, h, w] (nothing recorded). */
export function traceTrainStep(model: DeepLabV3, opt: SGD, n: number, h: number, w: number): PipelineSpec[] {
  const e = engine();
  const counters = model.counters();
  const dropout = [...model.namedModules()].filter((m): m is [string, Dropout] => m[1] instanceof Dropout).map(([, m]) => [m, m.calls] as const);
  // Gradients that exist before the trace are the caller's; the traced ones are dropped after.
  const hadGrad = new Set(opt.params.filter((p) => p.grad));
  try {
    const specs = e.trace(() =>
      tidy(() => {
        const x = empty([n, 3, h, w]);
        const y = empty([n, h, w], 'i32');
        backward(crossEntropy(model.forward(x), y, { ignoreIndex: 255 }));
      }),
    );
    specs.push({ shader: 'sgd', entry: opt.momentum > 0 ? 'momentum' : 'plain' });
    return specs;
  } finally {
    for (const p of opt.params) {
      if (!hadGrad.has(p) && p.grad) {
        p.grad.dispose();
        p.grad = null;
      }
    }
    model.setCounters(counters);
    for (const [m, calls] of dropout) m.calls = calls;
  }
}

/** Traces one training step and compiles its pipelines asynchronously; resolves with the number
 * of pipelines compiled (0 when all were cached already). */
export async function precompileTrainStep(model: DeepLabV3, opt: SGD, n: number, h: number, w: number): Promise<number> {
  return engine().precompile(traceTrainStep(model, opt, n, h, w));
}
