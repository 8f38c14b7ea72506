// Checkpoints: a model's state dict as safetensors bytes, with torchvision's names
// (`backbone.layer4.2.conv2.weight`, `classifier.0.convs.1.0.weight`, `*.running_mean`,
// `*.num_batches_tracked`), so a file written by tools/export_torchvision.py loads here and one
// written here loads into torchvision (`model.load_state_dict(safetensors.torch.load_file(f))`).
//
// __metadata__: {"format": "atrous-deeplabv3", "config": <JSON of the DeepLabV3Config, or a
// partial one naming a known configuration: {"name": "torchvision-deeplabv3-resnet50", "aux": true}>}.
// Tensors are F32 (F16, BF16, F64 are converted on load); num_batches_tracked is I64 as in PyTorch.
// Bytes in, bytes out: reading and writing files is the caller's business (the CLI's), so this
// module runs in browsers too.

import { parseSafetensors, serializeSafetensors, toFloat32, toInt32, type STensorInput } from './safetensors.js';
import type { HostTensor, LoadOptions, LoadReport, Module } from '../nn/module.js';
import { DeepLabV3 } from '../nn/deeplabv3.js';
import { CONFIGS, modelConfig, validateConfig, type DeepLabV3Config } from '../nn/configs.js';

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
}

/** A config object from JSON: a known name fills in whatever fields are missing. */
export function configFromJSON(obj: unknown): DeepLabV3Config {
  if (!obj || typeof obj !== 'object') throw new Error(`atrous: checkpoint config must be a JSON object, got ${JSON.stringify(obj)}`);
  const o = obj as Partial<DeepLabV3Config> & { name?: string };
  if (typeof o.name === 'string' && CONFIGS[o.name]) {
    const { name, ...rest } = o;
    return modelConfig(name, rest);
  }
  return validateConfig(o as DeepLabV3Config);
}

/** Parses a checkpoint (any safetensors state dict; the metadata is optional). */
export function readCheckpoint(bytes: Uint8Array | ArrayBuffer, source = 'checkpoint'): Checkpoint {
  const st = parseSafetensors(bytes, source);
  const state = new Map<string, HostTensor>();
  for (const [k, t] of st.tensors) {
    const data = INTEGER_DTYPES.has(t.dtype) ? toInt32(t, k) : toFloat32(t, k);
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
    config = configFromJSON(json);
  }
  return { state, config, metadata: st.metadata };
}

/** The model's full state (read back from the GPU) as checkpoint bytes, its config in the metadata. */
export async function saveCheckpoint(model: DeepLabV3, extra: Record<string, string> = {}): Promise<Uint8Array> {
  const state = await model.readStateDict();
  return stateDictToSafetensors(state, { ...extra, format: CHECKPOINT_FORMAT, config: JSON.stringify(model.config) });
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
 * overrides it; `outputStride` picks the run-time output stride.
 */
export function modelFromCheckpoint(
  bytes: Uint8Array | ArrayBuffer,
  opts: LoadOptions & { source?: string; config?: DeepLabV3Config | string; outputStride?: number } = {},
): { model: DeepLabV3; report: LoadReport; config: DeepLabV3Config } {
  const ck = readCheckpoint(bytes, opts.source);
  const cfg = opts.config !== undefined ? (typeof opts.config === 'string' ? modelConfig(opts.config) : validateConfig(opts.config)) : ck.config;
  if (!cfg) {
    throw new Error(`${opts.source ?? 'checkpoint'}: no __metadata__.config in the file: name a configuration (e.g. torchvision-deeplabv3-resnet50)`);
  }
  const model = new DeepLabV3(cfg);
  if (opts.outputStride !== undefined) model.setOutputStride(opts.outputStride);
  let report: LoadReport;
  try {
    report = model.loadStateDict(ck.state, opts);
  } catch (e) {
    model.dispose();
    throw new Error(`${opts.source ?? 'checkpoint'}: ${(e as Error).message.replace(/^atrous: /, '')}`);
  }
  return { model, report, config: cfg };
}
