// Checkpoints: a model's state dict as safetensors bytes, with torchvision's names
// (`backbone.layer4.2.conv2.weight`, `classifier.0.convs.1.0.weight`, `*.running_mean`,
// `*.num_batches_tracked`), so a file written by tools/export_torchvision.py loads here and one
// written here loads into torchvision (`model.load_state_dict(safetensors.torch.load_file(f))`).
//
// __metadata__: {"format": "atrous-deeplabv3", "config": <JSON of the DeepLabV3Config, or a
// partial one naming a known configuration: {"name": "torchvision-deeplabv3-resnet50", "aux": true}>,
// "inference": <JSON {"outputStride": 8, "mean": [r, g, b], "std": [r, g, b], "padding": "stride+1"}>,
// "classes": <JSON list of class names>} (all optional; the last two say how the weights were
// trained to be used, see src/nn/inference.ts; the trainers write them, and eval, predict,
// segment() and the page take them as defaults).
// Tensors are F32 (F16, BF16, F64 are converted on load); num_batches_tracked is I64 as in PyTorch.
// Bytes in, bytes out: reading and writing files is the caller's business (the CLI's), so this
// module runs in browsers too.

import { parseSafetensors, serializeSafetensors, toFloat32, toInt32, type STensorInput } from './safetensors.js';
import type { HostTensor, LoadOptions, LoadReport, Module } from '../nn/module.js';
import { DeepLabV3 } from '../nn/deeplabv3.js';
import { configFromJSON, modelConfig, validateConfig, type DeepLabV3Config } from '../nn/configs.js';
import { checkInferenceSettings, type InferenceSettings } from '../nn/inference.js';
import { IMAGENET } from '../data/augment.js';
import { VOC_CLASSES } from '../data/palette.js';
import { SHAPE_KINDS } from '../data/shapes.js';

export const CHECKPOINT_FORMAT = 'atrous-deeplabv3';

const INTEGER_DTYPES = new Set(['I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL']);

/** A state dict as safetensors bytes: Float32Array entries as F32, Int32Array ones as I64. */
export function stateDictToSafetensors(state: Map<string, HostTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const tensors = new Map<string, STensorInput>();
  for (const [k, v] of state) {
    if (v.data instanceof Int32Array) tensors.set(k, { dtype: 'I64', shape: v.shape, data: BigInt64Array.from(v.data, (x) => BigInt(x)) });
    else tensors.set(k, { dtype: 'F32', shape: v.shape, data: v.data });
  }
  return serializeSafetensors(tensors, metadata);
}

export interface Checkpoint {
  state: Map<string, HostTensor>;
  /** The configuration from __metadata__.config, resolved and validated; null when absent. */
  config: DeepLabV3Config | null;
  metadata: Record<string, string>;
  /** The inference settings the file states (__metadata__.inference and .classes), checked; a
   * field the file does not state is absent. */
  inference: Partial<InferenceSettings>;
}

/** Where a setting's value came from: an explicit option (a flag, a page control), the
 * checkpoint's metadata, or atrous's default for checkpoints that do not say. */
export type SettingSource = 'option' | 'checkpoint' | 'default';

/** Inference settings with the source of each. */
export interface ResolvedInference {
  values: InferenceSettings;
  sources: Record<keyof InferenceSettings, SettingSource>;
  /** What the default class names are (e.g. 'shapes classes, assumed from the class count'), when defaulted. */
  classesNote?: string;
}

/** Parses a checkpoint (any safetensors state dict; the metadata is optional). */
export function readCheckpoint(bytes: Uint8Array | ArrayBuffer, source = 'checkpoint'): Checkpoint {
  const st = parseSafetensors(bytes, source);
  const state = new Map<string, HostTensor>();
  for (const [k, t] of st.tensors) {
    let data: Float32Array | Int32Array;
    try {
      data = INTEGER_DTYPES.has(t.dtype) ? toInt32(t, `tensor '${k}'`) : toFloat32(t, `tensor '${k}'`);
    } catch (e) {
      throw new Error(`${source}: ${(e as Error).message.replace(/^to(Int32|Float32): /, '')}`);
    }
    checkValues(k, data, source);
    state.set(k, { shape: t.shape, data });
  }
  let config: DeepLabV3Config | null = null;
  if (st.metadata.config !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(st.metadata.config);
    } catch (e) {
      throw new Error(`${source}: __metadata__.config is not valid JSON: ${(e as Error).message}`);
    }
    try {
      config = configFromJSON(json);
    } catch (e) {
      throw new Error(`${source}: __metadata__.config: ${(e as Error).message.replace(/^atrous: /, '')}`);
    }
  }
  return { state, config, metadata: st.metadata, inference: inferenceFromMetadata(st.metadata, config, source) };
}

/** Refuses values no trained model has: NaN or Inf anywhere, a negative batch-norm variance, a
 * negative batch count. The error names the file, the tensor and the first bad element. */
function checkValues(name: string, data: Float32Array | Int32Array, source: string): void {
  const variance = /(^|\.)running_var$/.test(name);
  const count = /(^|\.)num_batches_tracked$/.test(name);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (!Number.isFinite(v)) throw new Error(`${source}: tensor '${name}' holds ${v} at flat index ${i}: a model's weights and statistics are finite (was it saved after training diverged?)`);
    if (variance && v < 0) throw new Error(`${source}: tensor '${name}' holds the variance ${v} at flat index ${i}: a batch-norm running variance is >= 0`);
    if (count && v < 0) throw new Error(`${source}: tensor '${name}' holds ${v}: a batch count is >= 0`);
  }
}

function metadataJson(metadata: Record<string, string>, key: string, source: string): unknown {
  try {
    return JSON.parse(metadata[key]);
  } catch (e) {
    throw new Error(`${source}: __metadata__.${key} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The inference settings stated by a checkpoint's metadata, checked against its config. */
function inferenceFromMetadata(metadata: Record<string, string>, config: DeepLabV3Config | null, source: string): Partial<InferenceSettings> {
  const out: Partial<InferenceSettings> = {};
  if (metadata.inference !== undefined) {
    const j = metadataJson(metadata, 'inference', source);
    if (!j || typeof j !== 'object' || Array.isArray(j)) throw new Error(`${source}: __metadata__.inference must be a JSON object, got ${metadata.inference}`);
    const o = j as Record<string, unknown>;
    const unknown = Object.keys(o).filter((k) => !['outputStride', 'mean', 'std', 'padding'].includes(k));
    if (unknown.length) throw new Error(`${source}: __metadata__.inference: unknown field '${unknown[0]}' (known: outputStride, mean, std, padding)`);
    if ((o.mean === undefined) !== (o.std === undefined)) throw new Error(`${source}: __metadata__.inference: mean and std go together`);
    if (o.outputStride !== undefined) out.outputStride = o.outputStride as number;
    if (o.mean !== undefined) out.normalization = { mean: o.mean as InferenceSettings['normalization']['mean'], std: o.std as InferenceSettings['normalization']['std'] };
    if (o.padding !== undefined) out.padding = o.padding as InferenceSettings['padding'];
  }
  if (metadata.classes !== undefined) out.classes = metadataJson(metadata, 'classes', source) as string[];
  checkInferenceSettings(out, config?.numClasses ?? null, `${source}: __metadata__`);
  return out;
}

/** Checkpoint metadata entries for inference settings (the inverse of what readCheckpoint reads). */
export function inferenceMetadata(s: InferenceSettings): Record<string, string> {
  return {
    inference: JSON.stringify({ outputStride: s.outputStride, mean: s.normalization.mean, std: s.normalization.std, padding: s.padding }),
    classes: JSON.stringify(s.classes),
  };
}

/** Class names for a model of `numClasses` classes whose checkpoint names none. */
function defaultClasses(numClasses: number): { names: string[]; note: string } {
  if (numClasses === SHAPE_KINDS.length + 1) return { names: ['background', ...SHAPE_KINDS], note: 'shapes classes, assumed from the class count' };
  if (numClasses === VOC_CLASSES.length) return { names: [...VOC_CLASSES], note: 'PASCAL VOC classes, assumed from the class count' };
  return { names: Array.from({ length: numClasses }, (_, k) => `class ${k}`), note: 'unnamed' };
}

/**
 * The settings to use a checkpoint with: each field from `options` when given, else from the
 * checkpoint, else the default (the configuration's output stride, ImageNet normalisation, no
 * padding — what torchvision does with its own weights —, class names guessed from the class
 * count). Throws when an option is invalid.
 */
export function resolveInference(stated: Partial<InferenceSettings>, config: DeepLabV3Config, options: Partial<InferenceSettings> = {}): ResolvedInference {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as Partial<InferenceSettings>;
  checkInferenceSettings(defined, config.numClasses, 'inference settings');
  const guess = defaultClasses(config.numClasses);
  const defaults: InferenceSettings = {
    outputStride: config.outputStride, normalization: { mean: [...IMAGENET.mean], std: [...IMAGENET.std] }, classes: guess.names, padding: 'none',
  };
  const values = {} as Record<keyof InferenceSettings, unknown>;
  const sources = {} as Record<keyof InferenceSettings, SettingSource>;
  for (const k of Object.keys(defaults) as (keyof InferenceSettings)[]) {
    if (defined[k] !== undefined) [values[k], sources[k]] = [defined[k], 'option'];
    else if (stated[k] !== undefined) [values[k], sources[k]] = [stated[k], 'checkpoint'];
    else [values[k], sources[k]] = [defaults[k], 'default'];
  }
  return { values: values as unknown as InferenceSettings, sources, ...(sources.classes === 'default' ? { classesNote: guess.note } : {}) };
}

/** One line naming each setting and where it came from, e.g. "output stride 8 (from the
 * checkpoint); inputs padded to k×8+1 (from the checkpoint); ImageNet mean/std (default); 7 classes
 * (from the checkpoint)". */
export function describeInference(r: ResolvedInference): string {
  const v = r.values;
  const s = r.sources;
  const src = (k: keyof InferenceSettings) => (s[k] === 'option' ? 'given' : s[k] === 'default' ? 'default' : 'from the checkpoint');
  const n = v.normalization;
  const imagenet = n.mean.every((x, i) => x === IMAGENET.mean[i]) && n.std.every((x, i) => x === IMAGENET.std[i]);
  const norm = imagenet ? 'ImageNet mean/std' : `mean ${n.mean.join(',')} std ${n.std.join(',')}`;
  const pad = v.padding === 'stride+1' ? `inputs padded to k×${v.outputStride}+1` : 'no padding';
  const classes = `${v.classes.length} classes (${src('classes')}${r.classesNote ? `: ${r.classesNote}` : ''})`;
  return `output stride ${v.outputStride} (${src('outputStride')}); ${pad} (${src('padding')}); ${norm} (${src('normalization')}); ${classes}`;
}

/** The model's full state (read back from the GPU) as checkpoint bytes, its config in the metadata. */
export async function saveCheckpoint(model: DeepLabV3, extra: Record<string, string> = {}): Promise<Uint8Array> {
  const state = await model.readStateDict();
  const inference = model.inference ? inferenceMetadata(model.inference) : {};
  return stateDictToSafetensors(state, { ...extra, ...inference, format: CHECKPOINT_FORMAT, config: JSON.stringify(model.config) });
}

/** Loads checkpoint bytes into a model; strict key/shape checking as Module.loadStateDict
 * (the first unexpected or missing key, or the first shape mismatch, is named in the error). */
export function loadCheckpoint(model: Module, bytes: Uint8Array | ArrayBuffer, opts: LoadOptions & { source?: string } = {}): LoadReport {
  const { state } = readCheckpoint(bytes, opts.source);
  try {
    return model.loadStateDict(state, opts);
  } catch (e) {
    throw new Error(`${opts.source ?? 'checkpoint'}: ${(e as Error).message.replace(/^atrous: /, '')}`);
  }
}

/**
 * Builds the model a checkpoint describes and loads it. `config` (a name or object) is required
 * when the file has no __metadata__.config (e.g. a plain torchvision state dict) and otherwise
 * overrides it. The model's output stride and `model.inference` are the checkpoint's inference
 * settings (`resolveInference`), each overridden by `settings` (or `outputStride`) where given.
 * Throws an Error naming the file (`source`) and the first tensor or field that does not fit.
 */
export function modelFromCheckpoint(
  bytes: Uint8Array | ArrayBuffer,
  opts: LoadOptions & { source?: string; config?: DeepLabV3Config | string; outputStride?: number; settings?: Partial<InferenceSettings> } = {},
): { model: DeepLabV3; report: LoadReport; config: DeepLabV3Config; inference: ResolvedInference; metadata: Record<string, string> } {
  const ck = readCheckpoint(bytes, opts.source);
  const cfg = opts.config !== undefined ? (typeof opts.config === 'string' ? modelConfig(opts.config) : validateConfig(opts.config)) : ck.config;
  if (!cfg) {
    throw new Error(`${opts.source ?? 'checkpoint'}: no __metadata__.config in the file: name a configuration (e.g. torchvision-deeplabv3-resnet50)`);
  }
  if (opts.config !== undefined && ck.inference.classes && ck.inference.classes.length !== cfg.numClasses) delete ck.inference.classes;
  const inference = resolveInference(ck.inference, cfg, { ...opts.settings, ...(opts.outputStride !== undefined ? { outputStride: opts.outputStride } : {}) });
  const model = new DeepLabV3(cfg);
  model.inference = inference.values;
  if (inference.values.outputStride !== model.outputStride) model.setOutputStride(inference.values.outputStride);
  let report: LoadReport;
  try {
    report = model.loadStateDict(ck.state, opts);
  } catch (e) {
    model.dispose();
    throw new Error(`${opts.source ?? 'checkpoint'}: ${(e as Error).message.replace(/^atrous: /, '')}`);
  }
  return { model, report, config: cfg, inference, metadata: ck.metadata };
}
