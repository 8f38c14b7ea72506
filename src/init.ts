// The library's init(): opens the engine (src/gpu/engine.ts), then prepares the ops' kernels
// (prepareKernels, src/ops/variants.ts: the conv2d variant autotune, cached in memory and, in
// Node, in a cache file). The engine itself knows nothing of the ops.

import { initEngine, reinitEngine, type Engine } from './gpu/engine.js';
import type { DeviceOptions } from './gpu/device.js';
// Every op module, so that every op's kernel variants are declared before they are prepared.
import './ops/index.js';
import { prepareKernels } from './ops/variants.js';

const prepared = new WeakMap<Engine, Promise<Engine>>();

/** Opens the device, makes it the engine every op uses and settles the per-adapter kernel
 * choices (once per engine; concurrent calls share the work). Safe to call more than once. */
export async function init(opts: DeviceOptions = {}): Promise<Engine> {
  const e = await initEngine(opts);
  let ready = prepared.get(e);
  if (!ready) {
    ready = prepareKernels(e).then(() => e);
    prepared.set(e, ready);
    ready.catch(() => prepared.delete(e));
  }
  return ready;
}

/** Replaces the current engine (tests use this to lower limits). The old one is destroyed. */
export async function reinit(opts: DeviceOptions = {}): Promise<Engine> {
  await reinitEngine(opts);
  return init(opts);
}
