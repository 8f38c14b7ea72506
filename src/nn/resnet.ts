// ResNet-50/101 backbones with torchvision's structure and names (stem conv1/bn1/maxpool, layer1..4
// of Bottleneck units, stride in conv2 — "ResNet v1.5"), a width multiplier, per-stage unit counts,
// the cascaded copies of block4 of the paper (§3.2; here layer5..layer7), Multi-Grid unit rates
// (§3.2.1), and an output stride that is a run-time choice (§3.1): striding is replaced by atrous
// rate without changing a single weight.

import { Layer, Module, type Ops, type Shaped } from './module.js';
import { BatchNorm2d, Conv2d, MaxPool2d, ReLU, Sequential, chain, runSteps, type BatchNormConfig } from './layers.js';

const RELU = new ReLU();

/** Per-stage stride and per-unit dilation of the 3×3 convolutions. */
export interface StagePlan {
  stride: number;
  dilations: number[];
}

/**
 * Where each stage strides or dilates for a given output stride. Stage 0 (layer1) never strides
 * (the stem's max-pool already did); every later stage halves the resolution nominally. Walking
 * from the stem (stride 4): while the target is not reached a stage strides by 2; after that its
 * stride becomes 1 and the rate doubles instead (paper §3.1). As in torchvision's
 * replace_stride_with_dilation, the unit whose stride was removed keeps the previous rate in its
 * 3×3 conv and the later units use the new one. With Multi-Grid (stages 3.., i.e. block4 and the
 * cascaded blocks), unit i uses rate × multiGrid[i] instead (paper: OS 16, MG (1, 2, 4) → block4
 * rates (2, 4, 8)).
 */
export function planStages(units: readonly number[], outputStride: number, multiGrid: readonly number[] | null): StagePlan[] {
  let current = 4;
  let rate = 1;
  return units.map((n, s) => {
    let stride = 1;
    const first = rate;
    if (s > 0) {
      if (current < outputStride) {
        stride = 2;
        current *= 2;
      } else {
        rate *= 2;
      }
    }
    let dilations = Array.from({ length: n }, (_, i) => (i === 0 ? first : rate));
    if (multiGrid && s >= 3) dilations = dilations.map((_, i) => rate * multiGrid[i]);
    return { stride, dilations };
  });
}

export class Bottleneck extends Layer {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly conv2: Conv2d;
  readonly bn2: BatchNorm2d;
  readonly conv3: Conv2d;
  readonly bn3: BatchNorm2d;
  /** torchvision's projection shortcut (1×1 conv + BN) where the channel count changes. */
  readonly downsample: Sequential | null;
  private stride = 1;

  constructor(inplanes: number, planes: number, projection: boolean, bn: BatchNormConfig) {
    super();
    const outplanes = planes * 4;
    this.conv1 = this.addModule('conv1', new Conv2d(inplanes, planes, 1, { bias: false }));
    this.bn1 = this.addModule('bn1', new BatchNorm2d(planes, bn));
    this.conv2 = this.addModule('conv2', new Conv2d(planes, planes, 3, { padding: 1, bias: false }));
    this.bn2 = this.addModule('bn2', new BatchNorm2d(planes, bn));
    this.conv3 = this.addModule('conv3', new Conv2d(planes, outplanes, 1, { bias: false }));
    this.bn3 = this.addModule('bn3', new BatchNorm2d(outplanes, bn));
    this.downsample = projection ? this.addModule('downsample', new Sequential(new Conv2d(inplanes, outplanes, 1, { bias: false }), new BatchNorm2d(outplanes, bn))) : null;
  }

  /** Stride of the 3×3 conv (and of the shortcut) and its atrous rate (padding = rate keeps the size). */
  setGeometry(stride: number, dilation: number): void {
    this.stride = stride;
    this.conv2.stride = stride;
    this.conv2.dilation = dilation;
    this.conv2.padding = dilation;
    if (this.downsample) (this.downsample.layers[0] as Conv2d).stride = stride;
  }

  run<T extends Shaped>(x: T, F: Ops<T>): T {
    const out = chain(x, F, [this.conv1, this.bn1, RELU, this.conv2, this.bn2, RELU, this.conv3, this.bn3]);
    // Without a projection a strided unit subsamples its identity (a 1×1 max-pool with stride s),
    // as TF-slim's ResNet does; only the cascaded blocks at output stride > 32 need it.
    let identity = x;
    if (this.downsample) identity = this.downsample.run(x, F);
    else if (this.stride > 1) identity = F.maxPool2d(x, { kernelSize: 1, stride: this.stride, padding: 0 });
    const sum = F.add(out, identity);
    F.release(out);
    if (identity !== x) F.release(identity);
    const y = F.relu(sum);
    F.release(sum);
    return y;
  }
}

export interface ResNetConfig {
  /** Bottleneck units in layer1..layer4: [3, 4, 6, 3] ResNet-50, [3, 4, 23, 3] ResNet-101. */
  blocks: number[];
  /** Copies of layer4 appended as layer5..layer7 (the paper's block5..block7). */
  cascade: number;
  /** Stem and stage widths are round(64·m)·(1, 2, 4, 8); 1 for the standard networks. */
  widthMultiplier: number;
  /** Unit rates (r1, r2, ...) in layer4 and the cascaded blocks, one per unit; null for none. */
  multiGrid: number[] | null;
  bn: BatchNormConfig;
}

/** Base width of a width multiplier: round(64·m), at least 1. */
export const baseWidth = (m: number): number => Math.max(1, Math.round(64 * m));

/** The backbone as torchvision's IntermediateLayerGetter holds it (no avgpool/fc). */
export class ResNet extends Module {
  readonly conv1: Conv2d;
  readonly bn1: BatchNorm2d;
  readonly maxpool = new MaxPool2d(3, 2, 1);
  readonly stages: Sequential[] = [];
  readonly units: number[];
  readonly multiGrid: number[] | null;
  private _outputStride = 0;

  constructor(cfg: ResNetConfig, outputStride: number) {
    super();
    const base = baseWidth(cfg.widthMultiplier);
    this.conv1 = this.addModule('conv1', new Conv2d(3, base, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.addModule('bn1', new BatchNorm2d(base, cfg.bn));
    this.units = [...cfg.blocks, ...Array.from({ length: cfg.cascade }, () => cfg.blocks[3])];
    this.multiGrid = cfg.multiGrid;
    let inplanes = base;
    this.units.forEach((n, s) => {
      const planes = base * 2 ** Math.min(s, 3);
      const blocks: Bottleneck[] = [];
      for (let i = 0; i < n; i++) {
        // torchvision adds the projection where the channels change; every nominally strided
        // stage changes them except the cascaded copies of layer4 (2048 → 2048).
        blocks.push(new Bottleneck(inplanes, planes, i === 0 && inplanes !== planes * 4, cfg.bn));
        inplanes = planes * 4;
      }
      this.stages.push(this.addModule(`layer${s + 1}`, new Sequential(...blocks)));
    });
    this.setOutputStride(outputStride);
  }

  /** Output channels of layerN (1-based). */
  channels(layer: number): number {
    return (this.stages[layer - 1].layers.at(-1) as Bottleneck).conv3.outChannels;
  }

  /** The largest output stride this depth can have: 4 · 2^(strided stages). */
  get maxOutputStride(): number {
    return 4 * 2 ** (this.units.length - 1);
  }

  get outputStride(): number {
    return this._outputStride;
  }

  setOutputStride(os: number): void {
    if (!Number.isInteger(os) || os < 4 || os > this.maxOutputStride || (os & (os - 1)) !== 0) {
      throw new Error(`atrous: output stride must be a power of 2 in [4, ${this.maxOutputStride}] for ${this.units.length} stages, got ${os}`);
    }
    planStages(this.units, os, this.multiGrid).forEach((p, s) => {
      (this.stages[s].layers as Bottleneck[]).forEach((b, i) => b.setGeometry(i === 0 ? p.stride : 1, p.dilations[i]));
    });
    this._outputStride = os;
  }

  /** Features of the last stage ('out') and, when asked, of layer3 ('aux'). */
  run<T extends Shaped>(x: T, F: Ops<T>, wantAux = false): { out: T; aux: T | null } {
    return runSteps(this.steps(x, F, wantAux));
  }

  /** run() one piece at a time: pauses after the stem and after each bottleneck unit, so that a
   * driver can wait there for the GPU to catch up (DeepLabV3.forwardAsync). */
  *steps<T extends Shaped>(x: T, F: Ops<T>, wantAux = false): Generator<void, { out: T; aux: T | null }> {
    let y = chain(x, F, [this.conv1, this.bn1, RELU, this.maxpool]);
    yield;
    let aux: T | null = null;
    for (let s = 0; s < this.stages.length; s++) {
      // chain() over the stage's units, pausing after each; a unit's input is freed once it has
      // run, except the caller's x and the aux features, which layer3's output becomes.
      for (const unit of this.stages[s].layers) {
        const z = unit.run(y, F);
        if (y !== x && y !== aux && z !== y) F.release(y);
        y = z;
        yield;
      }
      if (s === 2 && wantAux) aux = y;
    }
    return { out: y, aux };
  }
}
