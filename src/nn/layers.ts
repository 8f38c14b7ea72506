// The building blocks, named and shaped as torch.nn's so that state dicts match torchvision's:
// Conv2d (weight [cout, cin, kh, kw], bias [cout]), BatchNorm2d (weight, bias, running_mean,
// running_var, num_batches_tracked), and the parameter-free ReLU, Dropout, MaxPool2d and
// AdaptiveAvgPool2d, which still take an index in a Sequential as they do in torchvision.

import { Layer, Module, type Ops, type Shaped } from './module.js';
import { constant, kaimingNormalFanOut, uniformFanIn } from './init.js';

export interface Conv2dConfig {
  stride?: number;
  padding?: number;
  dilation?: number;
  bias?: boolean;
  /** Weight init: 'kaiming' (normal, fan_out: torchvision's ResNet) or 'default' (torch.nn.Conv2d's
   * U(±1/sqrt(fan_in)), which torchvision's heads keep). */
  init?: 'kaiming' | 'default';
}

export class Conv2d extends Layer {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: number;
  readonly hasBias: boolean;
  /** Mutable: the network's output stride is changed at run time by rewriting these. */
  stride: number;
  padding: number;
  dilation: number;

  constructor(cin: number, cout: number, kernelSize: number, cfg: Conv2dConfig = {}) {
    super();
    this.inChannels = cin;
    this.outChannels = cout;
    this.kernelSize = kernelSize;
    this.stride = cfg.stride ?? 1;
    this.padding = cfg.padding ?? 0;
    this.dilation = cfg.dilation ?? 1;
    this.hasBias = cfg.bias ?? true;
    const fanIn = cin * kernelSize * kernelSize;
    this.addParameter('weight', [cout, cin, kernelSize, kernelSize], cfg.init === 'default' ? uniformFanIn(fanIn) : kaimingNormalFanOut);
    if (this.hasBias) this.addParameter('bias', [cout], uniformFanIn(fanIn));
  }

  run<T extends Shaped>(x: T, F: Ops<T>): T {
    const b = this.hasBias ? F.param(this, 'bias') : null;
    return F.conv2d(x, F.param(this, 'weight'), b, { stride: this.stride, padding: this.padding, dilation: this.dilation });
  }
}

export interface BatchNormConfig {
  /** Weight of the batch statistic in the running average (torch default 0.1). */
  momentum?: number;
  eps?: number;
}

/**
 * torch.nn.BatchNorm2d. In training mode it normalises with batch statistics and updates the
 * running ones; in eval mode, or while frozen (`freezeBatchNorm`), it uses the running statistics
 * and leaves them alone. num_batches_tracked counts training forwards, as in PyTorch (it only
 * matters there when momentum is None, which this library does not offer).
 * Batch size 1 on a 1×1 map in training (the image-pooling branch of ASPP at batch 1) is defined
 * by the op: the batch variance is 0, so the output is the BN bias, never NaN; running_var is
 * left unchanged. PyTorch raises instead.
 */
export class BatchNorm2d extends Layer {
  readonly numFeatures: number;
  momentum: number;
  eps: number;
  /** Running statistics used and not updated even in training mode. */
  frozen = false;

  constructor(c: number, cfg: BatchNormConfig = {}) {
    super();
    this.numFeatures = c;
    this.momentum = cfg.momentum ?? 0.1;
    this.eps = cfg.eps ?? 1e-5;
    this.addParameter('weight', [c], constant(1));
    this.addParameter('bias', [c], constant(0));
    this.addBuffer('running_mean', [c], constant(0));
    this.addBuffer('running_var', [c], constant(1));
    this.addCounter('num_batches_tracked');
  }

  run<T extends Shaped>(x: T, F: Ops<T>): T {
    const training = this.training && !this.frozen;
    if (training && !F.tracing) this.bumpCounter('num_batches_tracked');
    return F.batchNorm(x, F.param(this, 'weight'), F.param(this, 'bias'), F.param(this, 'running_mean'), F.param(this, 'running_var'), {
      training,
      momentum: this.momentum,
      eps: this.eps,
    });
  }
}

export class ReLU extends Layer {
  run<T extends Shaped>(x: T, F: Ops<T>): T {
    return F.relu(x);
  }
}

/** Dropout with a fresh mask every training forward: seed = hash(base seed, call count). In eval
 * mode or with p = 0 it returns its input unchanged (no copy). */
export class Dropout extends Layer {
  p: number;
  seed: number;
  /** Training forwards so far: part of the RNG state (a resumed run restores it to replay masks). */
  calls = 0;

  constructor(p: number, seed = 0) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`atrous: Dropout: p must be in [0, 1], got ${p}`);
    this.p = p;
    this.seed = seed;
  }

  run<T extends Shaped>(x: T, F: Ops<T>): T {
    if (!this.training || this.p === 0) return x;
    const seed = F.tracing ? 0 : (Math.imul(this.seed ^ 0x5bd1e995, 0x9e3779b1) + Math.imul(++this.calls, 0x85ebca6b)) >>> 0;
    return F.dropout(x, { p: this.p, training: true, seed });
  }
}

export class MaxPool2d extends Layer {
  constructor(
    readonly kernelSize: number,
    readonly stride: number,
    readonly padding = 0,
  ) {
    super();
  }
  run<T extends Shaped>(x: T, F: Ops<T>): T {
    return F.maxPool2d(x, { kernelSize: this.kernelSize, stride: this.stride, padding: this.padding });
  }
}

/** nn.AdaptiveAvgPool2d(1): global average pooling (the only size DeepLab uses). */
export class AdaptiveAvgPool2d extends Layer {
  run<T extends Shaped>(x: T, F: Ops<T>): T {
    return F.globalAvgPool(x);
  }
}

/** nn.Sequential: children named '0', '1', ...; each output feeds the next. */
export class Sequential extends Layer {
  readonly layers: Layer[];

  constructor(...layers: Layer[]) {
    super();
    this.layers = layers;
    layers.forEach((m, i) => this.addModule(String(i), m));
  }

  run<T extends Shaped>(x: T, F: Ops<T>): T {
    return chain(x, F, this.layers);
  }
}

/** Runs layers in order. The caller owns x; each intermediate is freed once the next layer has
 * consumed it (`F.release`: while a graph is recorded its node, and what the node saved, stay). */
export function chain<T extends Shaped>(x: T, F: Ops<T>, layers: readonly Layer[]): T {
  let y = x;
  for (const m of layers) {
    const z = m.run(y, F);
    if (y !== x && z !== y) F.release(y);
    y = z;
  }
  return y;
}

/** Runs a stepwise forward (a generator that pauses between pieces of work) to its end. */
export function runSteps<R>(g: Generator<void, R>): R {
  for (;;) {
    const r = g.next();
    if (r.done) return r.value;
  }
}

/** nn.ModuleList: indexed children without a forward of their own. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.addModule(String(i), m));
  }
}
