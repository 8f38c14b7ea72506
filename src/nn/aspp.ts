// Atrous Spatial Pyramid Pooling (paper §3.3) and the heads, with torchvision's module layout so
// the state-dict names match (`classifier.0.convs.1.0.weight`, `classifier.0.project.0.weight`):
//   convs.0            1×1 conv + BN + ReLU
//   convs.1..k         3×3 atrous conv (rate r_i, padding r_i) + BN + ReLU
//   convs.k+1          image pooling: global average pool → 1×1 conv + BN + ReLU → bilinear
//                      upsample to the feature size (optional: Table 5 ablation)
//   project            concat → 1×1 conv + BN + ReLU + Dropout
// Rates are an option of any length (the paper's (6, 12, 18), + 24 for the Table 5 row,
// torchvision's (12, 24, 36)) and can be changed at run time with the output stride.

import { Layer, type Ops, type Shaped } from './module.js';
import { AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, ModuleList, ReLU, Sequential, chain, type BatchNormConfig } from './layers.js';

/** 3×3 atrous conv + BN + ReLU (torchvision's ASPPConv). */
export class ASPPConv extends Sequential {
  constructor(cin: number, cout: number, rate: number, bn: BatchNormConfig) {
    super(new Conv2d(cin, cout, 3, { padding: rate, dilation: rate, bias: false, init: 'default' }), new BatchNorm2d(cout, bn), new ReLU());
  }
  get rate(): number {
    return (this.layers[0] as Conv2d).dilation;
  }
  set rate(r: number) {
    const conv = this.layers[0] as Conv2d;
    conv.dilation = r;
    conv.padding = r;
  }
}

/** Image-level features (torchvision's ASPPPooling): one value per channel and image, broadcast
 * back by bilinear upsampling of a 1×1 map (align_corners false), i.e. a constant plane. Its BN
 * sees n values per channel: at batch 1 in training that is M = 1, where the op gives the BN bias
 * (documented in layers.ts); PyTorch raises there. */
export class ASPPPooling extends Sequential {
  constructor(cin: number, cout: number, bn: BatchNormConfig) {
    super(new AdaptiveAvgPool2d(), new Conv2d(cin, cout, 1, { bias: false, init: 'default' }), new BatchNorm2d(cout, bn), new ReLU());
  }
  override run<T extends Shaped>(x: T, F: Ops<T>): T {
    const y = chain(x, F, this.layers);
    const up = F.resize(y, [x.shape[2], x.shape[3]]);
    F.release(y);
    return up;
  }
}

export interface ASPPOptions {
  rates: number[];
  imagePooling: boolean;
  channels: number;
  dropout: number;
  bn: BatchNormConfig;
}

export class ASPP extends Layer {
  readonly convs: ModuleList<Sequential>;
  readonly project: Sequential;
  readonly atrous: ASPPConv[];

  constructor(cin: number, o: ASPPOptions) {
    super();
    const c = o.channels;
    const branches: Sequential[] = [new Sequential(new Conv2d(cin, c, 1, { bias: false, init: 'default' }), new BatchNorm2d(c, o.bn), new ReLU())];
    this.atrous = o.rates.map((r) => new ASPPConv(cin, c, r, o.bn));
    branches.push(...this.atrous);
    if (o.imagePooling) branches.push(new ASPPPooling(cin, c, o.bn));
    this.convs = this.addModule('convs', new ModuleList(branches));
    this.project = this.addModule(
      'project',
      new Sequential(new Conv2d(branches.length * c, c, 1, { bias: false, init: 'default' }), new BatchNorm2d(c, o.bn), new ReLU(), new Dropout(o.dropout)),
    );
  }

  get rates(): number[] {
    return this.atrous.map((b) => b.rate);
  }
  set rates(rates: number[]) {
    if (rates.length !== this.atrous.length) throw new Error(`atrous: ASPP has ${this.atrous.length} atrous branches, got ${rates.length} rates`);
    rates.forEach((r, i) => (this.atrous[i].rate = r));
  }

  run<T extends Shaped>(x: T, F: Ops<T>): T {
    const branches = this.convs.items.map((b) => b.run(x, F));
    const cat = F.cat(branches);
    for (const b of branches) F.release(b);
    const y = this.project.run(cat, F);
    F.release(cat);
    return y;
  }
}

/** torchvision's FCNHead (the auxiliary classifier on layer3): 3×3 conv to cin/4 + BN + ReLU +
 * Dropout(0.1) + 1×1 conv to the classes. */
export class FCNHead extends Sequential {
  constructor(cin: number, classes: number, dropout: number, bn: BatchNormConfig) {
    const inter = Math.floor(cin / 4);
    super(
      new Conv2d(cin, inter, 3, { padding: 1, bias: false, init: 'default' }),
      new BatchNorm2d(inter, bn),
      new ReLU(),
      new Dropout(dropout),
      new Conv2d(inter, classes, 1, { init: 'default' }),
    );
  }
}
