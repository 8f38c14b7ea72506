// DeepLabv3 (Chen et al. 2017) with torchvision's module names: `backbone` (ResNet), `classifier`
// (ASPP head) and the optional `aux_classifier` (FCNHead on layer3). Logits are bilinearly
// upsampled to the input size (§4.1: the labels stay intact), align_corners false.
//
//   classifier, torchvision variant: 0 ASPP, 1 3×3 conv, 2 BN, 3 ReLU, 4 1×1 logits conv
//   classifier, paper variant:       0 ASPP, 1 1×1 logits conv
//   classifier, no ASPP (cascade):   0 1×1 logits conv

import { Tensor } from '../tensor.js';
import { track, trackInto, type Owned } from '../scope.js';
import { noGrad } from '../autograd.js';
import { checkTensor, OpError } from '../ops/check.js';
import { Module, gpuOps, ShapeTracer, type Layer, type Ops, type Shaped, type Shape } from './module.js';
import { BatchNorm2d, Conv2d, Dropout, ReLU, Sequential, runSteps } from './layers.js';
import { ResNet } from './resnet.js';
import { ASPP, FCNHead } from './aspp.js';
import { asppRatesAt, bnConfig, modelConfig, validateConfig, type DeepLabV3Config } from './configs.js';
import { seedFor } from './init.js';
import type { InferenceSettings } from './inference.js';

export interface TraceResult {
  /** Logits shape [n, classes, h, w] (the input size). */
  out: number[];
  /** Backbone output shape: [n, channels, ceil-ish(h / outputStride), ...]. */
  features: number[];
  aux: number[] | null;
  /** 2 × convolution multiply-adds of one forward. */
  flops: number;
  convs: number;
  /** Largest activation tensor, in elements. */
  maxActivation: number;
}

export class DeepLabV3 extends Module {
  readonly config: DeepLabV3Config;
  readonly backbone: ResNet;
  readonly classifier: Sequential;
  readonly aux_classifier: FCNHead | null;
  readonly aspp: ASPP | null;
  /** How these weights are meant to be used (output stride, normalisation, class names, padding),
   * as their checkpoint says: set by `modelFromCheckpoint`, and by the trainers before they save.
   * `segment()` takes its defaults from it. Null for a model that no checkpoint describes. */
  inference: InferenceSettings | null = null;

  /** A meta model (no GPU memory): call materialize(seed) or loadStateDict() before forward. */
  constructor(config: DeepLabV3Config | string) {
    super();
    const cfg = typeof config === 'string' ? modelConfig(config) : validateConfig(structuredClone(config));
    this.config = cfg;
    const bn = bnConfig(cfg);
    this.backbone = this.addModule('backbone', new ResNet({ blocks: cfg.blocks, cascade: cfg.cascade, widthMultiplier: cfg.widthMultiplier, multiGrid: cfg.multiGrid, bn }, cfg.outputStride));
    const cin = this.backbone.channels(this.backbone.stages.length);
    const head: Layer[] = [];
    if (cfg.aspp) {
      const a = cfg.aspp;
      this.aspp = new ASPP(cin, { rates: asppRatesAt(a, cfg.outputStride), imagePooling: a.imagePooling, channels: a.channels, dropout: a.dropout, bn });
      head.push(this.aspp);
      if (cfg.headConv) head.push(new Conv2d(a.channels, a.channels, 3, { padding: 1, bias: false, init: 'default' }), new BatchNorm2d(a.channels, bn), new ReLU());
      head.push(new Conv2d(a.channels, cfg.numClasses, 1, { init: 'default' }));
    } else {
      this.aspp = null;
      head.push(new Conv2d(cin, cfg.numClasses, 1, { init: 'default' }));
    }
    this.classifier = this.addModule('classifier', new Sequential(...head));
    this.aux_classifier = cfg.aux ? this.addModule('aux_classifier', new FCNHead(this.backbone.channels(3), cfg.numClasses, cfg.auxDropout, bn)) : null;
    this.setDropoutSeed(0);
  }

  get numClasses(): number {
    return this.config.numClasses;
  }

  get outputStride(): number {
    return this.backbone.outputStride;
  }

  /**
   * Runs the same weights at another output stride (paper: train at 16, evaluate at 8). The
   * backbone swaps striding for atrous rate (resnet.ts, planStages) and the ASPP rates scale with
   * it (config.aspp.ratesOutputStride / os) unless `asppRates` gives them explicitly.
   */
  setOutputStride(os: number, asppRates?: number[]): this {
    this.backbone.setOutputStride(os);
    if (this.aspp) this.aspp.rates = asppRates ?? asppRatesAt(this.config.aspp!, os);
    else if (asppRates) throw new Error(`atrous: setOutputStride: configuration '${this.config.name}' has no ASPP to take rates ${JSON.stringify(asppRates)}`);
    return this;
  }

  /**
   * Batch norm with frozen statistics (paper §4.1, second stage): every BN normalises with its
   * running statistics and stops updating them, even in training mode. With affine: true the BN
   * weight and bias stop requiring gradients too (they drop out of trainableParameters()).
   */
  freezeBatchNorm(freeze = true, opts: { affine?: boolean } = {}): this {
    if (opts.affine && !this.materialized) throw new Error('atrous: freezeBatchNorm({ affine: true }) needs weights: call materialize() or loadStateDict() first');
    for (const [, m] of this.namedModules()) {
      if (!(m instanceof BatchNorm2d)) continue;
      m.frozen = freeze;
      if (opts.affine !== undefined) for (const p of ['weight', 'bias']) m.tensorOf(p).requiresGrad = !(freeze && opts.affine);
    }
    return this;
  }

  /**
   * What trains, set as a whole (fine-tuning): with `backbone`, every `backbone.*` parameter stops
   * requiring a gradient and the backbone's batch norm uses and keeps its running statistics
   * (mmseg's frozen_stages); with `batchNorm`, every batch norm does, its weight and bias frozen too
   * (freezeBatchNorm(true, { affine: true })). Everything else requires a gradient. Frozen
   * parameters drop out of trainableParameters(); autograd records no work for them. Needs weights.
   */
  setFrozen(o: { backbone?: boolean; batchNorm?: boolean }): this {
    if (!this.materialized) throw new Error('atrous: setFrozen() needs weights: call materialize() or loadStateDict() first');
    const backbone = o.backbone ?? false;
    const bnAll = o.batchNorm ?? false;
    for (const [name, m] of this.namedModules()) {
      const inBackbone = name === 'backbone' || name.startsWith('backbone.');
      if (m instanceof BatchNorm2d) m.frozen = bnAll || (backbone && inBackbone);
    }
    const bnParams = new Set<string>();
    for (const [name, m] of this.namedModules()) if (m instanceof BatchNorm2d) for (const p of ['weight', 'bias']) bnParams.add(`${name}.${p}`);
    for (const [name, p] of this.namedParameters()) {
      p.requiresGrad = !((backbone && name.startsWith('backbone.')) || (bnAll && bnParams.has(name)));
    }
    return this;
  }

  /** Base seed of every Dropout's masks (each layer derives its own from its name). */
  setDropoutSeed(seed: number): this {
    for (const [name, m] of this.namedModules()) if (m instanceof Dropout) m.seed = seedFor(seed, name);
    return this;
  }

  run<T extends Shaped>(x: T, F: Ops<T>, wantAux: boolean): { out: T; aux: T | null; features: T } {
    return runSteps(this.steps(x, F, wantAux));
  }

  /** run() one piece at a time: pauses after the backbone's stem, after each of its bottleneck
   * units and after the classifier (see forwardAsync). */
  *steps<T extends Shaped>(x: T, F: Ops<T>, wantAux: boolean): Generator<void, { out: T; aux: T | null; features: T }> {
    const size: [number, number] = [x.shape[2], x.shape[3]];
    const f = yield* this.backbone.steps(x, F, wantAux && this.aux_classifier !== null);
    const logits = this.classifier.run(f.out, F);
    yield;
    const out = F.resize(logits, size);
    F.release(logits);
    let aux: T | null = null;
    if (f.aux && this.aux_classifier) {
      const a = this.aux_classifier.run(f.aux, F);
      F.release(f.aux);
      aux = F.resize(a, size);
      F.release(a);
    }
    return { out, aux, features: f.out };
  }

  private checkInput(x: Tensor, op: string): void {
    checkTensor(op, 'x', x, { rank: 4 });
    if (x.shape[1] !== 3) throw new OpError(op, `argument 'x' must be RGB images [n, 3, h, w], got shape [${x.shape.join(', ')}]`);
    if (x.shape[0] < 1 || x.shape[2] < 1 || x.shape[3] < 1) throw new OpError(op, `argument 'x' is empty: shape [${x.shape.join(', ')}]`);
  }

  /** Logits [n, classes, h, w] at the input size, before softmax. Every intermediate is freed as
   * soon as the next op has used it; in training its graph node (with what backward reads) stays
   * until backward() runs. For inference call eval() and wrap in noGrad(). */
  forward(x: Tensor): Tensor {
    this.checkInput(x, 'DeepLabV3.forward');
    const r = this.run(x, gpuOps, false);
    gpuOps.release(r.features);
    return r.out;
  }

  /**
   * forward(), awaiting `between()` after the stem, after each bottleneck unit and after the
   * classifier: with `between = () => engine().sync()` the GPU catches up at each of those points.
   * WebGPU records work without waiting for it, so a forward over a large photo on a slow adapter
   * otherwise records the whole network while the GPU is still on its first layers, and every
   * buffer it frees and creates meanwhile stays allocated until the GPU gets there (segment()
   * does this for whole images). For inference: records no graph (each piece runs under noGrad;
   * call eval() first). Same result as forward(); the caller owns x and the logits.
   */
  async forwardAsync(x: Tensor, between: () => Promise<void>): Promise<Tensor> {
    this.checkInput(x, 'DeepLabV3.forwardAsync');
    // The tensors each piece makes are collected here (a scope cannot span an await); what is
    // left of them when the forward ends or fails, the logits excepted, is disposed.
    const made = new Set<Owned>();
    let out: Tensor | null = null;
    const g = this.steps(x, gpuOps, false);
    try {
      for (;;) {
        const r = trackInto(made, () => noGrad(() => g.next()));
        if (r.done) {
          gpuOps.release(r.value.features);
          out = r.value.out;
          break;
        }
        await between();
      }
    } finally {
      for (const t of made) if (t !== out && !t.disposed) t.dispose();
    }
    track(out!);
    return out!;
  }

  /** Logits and, with the aux head, its logits too (both at the input size), as torchvision's
   * forward returns {out, aux}. */
  forwardWithAux(x: Tensor): { out: Tensor; aux: Tensor | null } {
    this.checkInput(x, 'DeepLabV3.forwardWithAux');
    const r = this.run(x, gpuOps, true);
    gpuOps.release(r.features);
    return { out: r.out, aux: r.aux };
  }

  /** Shapes and FLOPs of a forward on an input of shape [n, 3, h, w], without the GPU. */
  trace(inputShape: number[], opts: { aux?: boolean } = {}): TraceResult {
    const t = new ShapeTracer();
    const r = this.run<Shape>({ shape: [...inputShape] }, t, opts.aux ?? this.aux_classifier !== null);
    return { out: r.out.shape, features: r.features.shape, aux: r.aux?.shape ?? null, flops: t.flops, convs: t.convs, maxActivation: t.maxActivation };
  }
}

/** Builds a model from a named configuration or a config object and initialises its weights
 * (pass materialize: false for a meta model, e.g. to count parameters or load a checkpoint). */
export function createDeepLabV3(config: DeepLabV3Config | string, opts: { seed?: number; materialize?: boolean } = {}): DeepLabV3 {
  const m = new DeepLabV3(config);
  if (opts.materialize ?? true) m.materialize(opts.seed ?? 0);
  m.setDropoutSeed(opts.seed ?? 0);
  return m;
}
