// The named DeepLabv3 configurations. A configuration is plain JSON: it is what a checkpoint's
// __metadata__ stores, so a file says how to rebuild the network that reads it.

import type { BatchNormConfig } from './layers.js';

export interface AsppConfig {
  /** Atrous rates of the 3×3 branches at `ratesOutputStride`. */
  rates: number[];
  /** The output stride the rates are given for; at another one they scale by ratesOutputStride /
   * outputStride (the paper doubles them at 8), rounded, at least 1. */
  ratesOutputStride: number;
  /** The image-level (global average pooling) branch. */
  imagePooling: boolean;
  /** Filters of every branch and of the projection (256 in the paper and torchvision). */
  channels: number;
  /** Dropout after the projection (torchvision 0.5; the paper does not use one). */
  dropout: number;
}

export interface DeepLabV3Config {
  name: string;
  numClasses: number;
  /** Bottleneck units in layer1..layer4 (ResNet-50 [3, 4, 6, 3], ResNet-101 [3, 4, 23, 3]). */
  blocks: number[];
  /** Copies of layer4 appended as layer5..layer7: the paper's block5..block7 (§3.2). */
  cascade: number;
  /** Widths are round(64·m)·(1, 2, 4, 8) (×4 at the bottleneck outputs). */
  widthMultiplier: number;
  /** Multi-Grid unit rates of layer4 and the cascaded blocks (one per unit), or null (§3.2.1). */
  multiGrid: number[] | null;
  /** 8, 16, 32, ... (up to 256 with three cascaded blocks); changeable at run time. */
  outputStride: number;
  /** ASPP head, or null for a bare 1×1 logits conv on the backbone (the cascade experiments). */
  aspp: AsppConfig | null;
  /** torchvision's DeepLabHead: an extra 3×3 conv + BN + ReLU between ASPP and the logits. */
  headConv: boolean;
  /** torchvision's auxiliary FCNHead on layer3 (`aux_classifier.*`). */
  aux: boolean;
  auxDropout: number;
  /** Batch-norm momentum (torch convention: weight of the new batch) and epsilon. */
  bnMomentum: number;
  bnEps: number;
  /** The crop size the configuration is meant to train at (informational; any size runs). */
  cropSize: number;
}

const PAPER_ASPP: AsppConfig = { rates: [6, 12, 18], ratesOutputStride: 16, imagePooling: true, channels: 256, dropout: 0 };

// The paper's BN decay 0.9997 (§4.1) is torch momentum 0.0003; TF-slim's epsilon is 1e-5 too.
const PAPER_BN = { bnMomentum: 0.0003, bnEps: 1e-5 };

const torchvision = (name: string, blocks: number[]): DeepLabV3Config => ({
  name,
  numClasses: 21,
  blocks,
  cascade: 0,
  widthMultiplier: 1,
  multiGrid: null,
  outputStride: 8,
  aspp: { rates: [12, 24, 36], ratesOutputStride: 8, imagePooling: true, channels: 256, dropout: 0.5 },
  headConv: true,
  aux: false,
  auxDropout: 0.1,
  bnMomentum: 0.1,
  bnEps: 1e-5,
  cropSize: 513,
});

export const CONFIGS: Readonly<Record<string, DeepLabV3Config>> = {
  // §4.3 / Table 6: ResNet, Multi-Grid (1, 2, 4), ASPP (6, 12, 18) + image pooling at output stride 16.
  'paper-r50-os16': {
    name: 'paper-r50-os16', numClasses: 21, blocks: [3, 4, 6, 3], cascade: 0, widthMultiplier: 1, multiGrid: [1, 2, 4],
    outputStride: 16, aspp: PAPER_ASPP, headConv: false, aux: false, auxDropout: 0.1, ...PAPER_BN, cropSize: 513,
  },
  'paper-r101-os16': {
    name: 'paper-r101-os16', numClasses: 21, blocks: [3, 4, 23, 3], cascade: 0, widthMultiplier: 1, multiGrid: [1, 2, 4],
    outputStride: 16, aspp: PAPER_ASPP, headConv: false, aux: false, auxDropout: 0.1, ...PAPER_BN, cropSize: 513,
  },
  // §4.2 / Table 3's best cascaded model: ResNet-101 with block5..block7, Multi-Grid (1, 2, 1), no ASPP.
  'paper-r101-cascade': {
    name: 'paper-r101-cascade', numClasses: 21, blocks: [3, 4, 23, 3], cascade: 3, widthMultiplier: 1, multiGrid: [1, 2, 1],
    outputStride: 16, aspp: null, headConv: false, aux: false, auxDropout: 0.1, ...PAPER_BN, cropSize: 513,
  },
  'torchvision-deeplabv3-resnet50': torchvision('torchvision-deeplabv3-resnet50', [3, 4, 6, 3]),
  'torchvision-deeplabv3-resnet101': torchvision('torchvision-deeplabv3-resnet101', [3, 4, 23, 3]),
  // The paper's head on a small ResNet that trains in minutes on a software GPU (step times: README,
  // "Performance"). Width 1/8 (stem 8, stage outputs 32..256) and one unit per stage except the
  // three of layer4 that Multi-Grid (1, 2, 4) needs; ASPP with 64 filters. At a 65×65 crop and
  // output stride 16 the forward is ~0.04 GFLOP per image (`model.trace`), so a batch-8 SGD step
  // (forward + backward ≈ 3×) is ~1 GFLOP. 65 = 16·4 + 1 gives 5×5 features at OS 16 (9×9 at OS 8); the rates
  // (1, 2, 3) keep the paper's ratio of rate to feature size ((6, 12, 18) on 33×33 at 513), so
  // the atrous branches still see context instead of degenerating to their centre tap (Fig. 4).
  mini: {
    name: 'mini', numClasses: 21, blocks: [1, 1, 1, 3], cascade: 0, widthMultiplier: 0.125, multiGrid: [1, 2, 4],
    outputStride: 16, aspp: { rates: [1, 2, 3], ratesOutputStride: 16, imagePooling: true, channels: 64, dropout: 0 },
    headConv: false, aux: false, auxDropout: 0.1, bnMomentum: 0.1, bnEps: 1e-5, cropSize: 65,
  },
};

export const CONFIG_NAMES = Object.keys(CONFIGS);

/** A named configuration, optionally overridden (e.g. numClasses, outputStride, aux); `aspp`
 * overrides merge into the named ASPP settings. The result is validated. */
export function modelConfig(name: string, overrides: Partial<Omit<DeepLabV3Config, 'aspp'>> & { aspp?: Partial<AsppConfig> | null } = {}): DeepLabV3Config {
  const base = CONFIGS[name];
  if (!base) throw new Error(`atrous: unknown model configuration '${name}' (known: ${CONFIG_NAMES.join(', ')})`);
  const { aspp, ...rest } = overrides;
  const cfg: DeepLabV3Config = structuredClone({ ...base, ...rest, aspp: aspp === null ? null : aspp ? { ...base.aspp!, ...aspp } : base.aspp });
  return validateConfig(cfg);
}

const isInt = (v: unknown, min: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;

/** Checks every field, naming the first bad one; returns the config. */
export function validateConfig(cfg: DeepLabV3Config): DeepLabV3Config {
  const bad = (field: string, want: string, got: unknown) => {
    throw new Error(`atrous: model config '${cfg?.name ?? '?'}': '${field}' must be ${want}, got ${JSON.stringify(got)}`);
  };
  if (!cfg || typeof cfg !== 'object') throw new Error(`atrous: model config must be an object, got ${JSON.stringify(cfg)}`);
  if (!isInt(cfg.numClasses, 1)) bad('numClasses', 'an integer >= 1', cfg.numClasses);
  if (!Array.isArray(cfg.blocks) || cfg.blocks.length !== 4 || !cfg.blocks.every((b) => isInt(b, 1))) bad('blocks', 'four integers >= 1 (units of layer1..layer4)', cfg.blocks);
  if (!isInt(cfg.cascade, 0) || cfg.cascade > 3) bad('cascade', 'an integer in [0, 3] (block5..block7)', cfg.cascade);
  if (typeof cfg.widthMultiplier !== 'number' || !(cfg.widthMultiplier > 0) || !Number.isFinite(cfg.widthMultiplier)) bad('widthMultiplier', 'a number > 0', cfg.widthMultiplier);
  if (cfg.multiGrid !== null) {
    if (!Array.isArray(cfg.multiGrid) || !cfg.multiGrid.every((r) => isInt(r, 1))) bad('multiGrid', 'null or integers >= 1', cfg.multiGrid);
    if (cfg.multiGrid.length !== cfg.blocks[3]) bad('multiGrid', `one unit rate per unit of layer4 (${cfg.blocks[3]})`, cfg.multiGrid);
  }
  const maxOs = 32 * 2 ** cfg.cascade;
  if (!isInt(cfg.outputStride, 4) || cfg.outputStride > maxOs || (cfg.outputStride & (cfg.outputStride - 1)) !== 0) {
    bad('outputStride', `a power of 2 in [4, ${maxOs}]`, cfg.outputStride);
  }
  if (cfg.aspp !== null) {
    const a = cfg.aspp;
    if (!a || typeof a !== 'object') bad('aspp', 'an object or null', a);
    if (!Array.isArray(a.rates) || !a.rates.every((r) => isInt(r, 1))) bad('aspp.rates', 'integers >= 1', a.rates);
    if (!isInt(a.ratesOutputStride, 1)) bad('aspp.ratesOutputStride', 'an integer >= 1', a.ratesOutputStride);
    if (typeof a.imagePooling !== 'boolean') bad('aspp.imagePooling', 'a boolean', a.imagePooling);
    if (!isInt(a.channels, 1)) bad('aspp.channels', 'an integer >= 1', a.channels);
    if (typeof a.dropout !== 'number' || !(a.dropout >= 0 && a.dropout < 1)) bad('aspp.dropout', 'a number in [0, 1)', a.dropout);
  } else if (cfg.headConv) bad('headConv', 'false without ASPP', cfg.headConv);
  if (typeof cfg.headConv !== 'boolean') bad('headConv', 'a boolean', cfg.headConv);
  if (typeof cfg.aux !== 'boolean') bad('aux', 'a boolean', cfg.aux);
  if (typeof cfg.auxDropout !== 'number' || !(cfg.auxDropout >= 0 && cfg.auxDropout < 1)) bad('auxDropout', 'a number in [0, 1)', cfg.auxDropout);
  if (typeof cfg.bnMomentum !== 'number' || !(cfg.bnMomentum >= 0 && cfg.bnMomentum <= 1)) bad('bnMomentum', 'a number in [0, 1]', cfg.bnMomentum);
  if (typeof cfg.bnEps !== 'number' || !(cfg.bnEps > 0)) bad('bnEps', 'a number > 0', cfg.bnEps);
  if (!isInt(cfg.cropSize, 1)) bad('cropSize', 'an integer >= 1', cfg.cropSize);
  return cfg;
}

/** ASPP rates at an output stride: rates × ratesOutputStride / outputStride, rounded, >= 1. */
export function asppRatesAt(aspp: AsppConfig, outputStride: number): number[] {
  return aspp.rates.map((r) => Math.max(1, Math.round((r * aspp.ratesOutputStride) / outputStride)));
}

export const bnConfig = (cfg: DeepLabV3Config): BatchNormConfig => ({ momentum: cfg.bnMomentum, eps: cfg.bnEps });

/** A model config from JSON (a checkpoint's __metadata__.config, a config file): a known name
 * fills in whatever fields are missing; the result is validated (validateConfig's errors). */
export function configFromJSON(obj: unknown): DeepLabV3Config {
  if (!obj || typeof obj !== 'object') throw new Error(`atrous: checkpoint config must be a JSON object, got ${JSON.stringify(obj)}`);
  const o = obj as Partial<DeepLabV3Config> & { name?: string };
  if (typeof o.name === 'string' && CONFIGS[o.name]) {
    const { name, ...rest } = o;
    return modelConfig(name, rest);
  }
  return validateConfig(o as DeepLabV3Config);
}
