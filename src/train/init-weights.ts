// Starting a training run from the weights of a file (`atrous train --init FILE`): fine-tuning.
//
// Four kinds of file, told apart by their contents:
//   atrous checkpoint          __metadata__.config (written by atrous train, the page, saveCheckpoint)
//   torchvision DeepLabv3      __metadata__.config too (tools/export_torchvision.py --model
//                              deeplabv3_resnet50|101); the whole model loads
//   torchvision FCN            tensors `backbone.*`, `classifier.*` (FCNHead), no config
//                              (export_torchvision.py --model fcn_resnet50|101): atrous has no FCN
//                              head, so the backbone loads and the FCN heads are ignored
//   ResNet classification      `conv1.*`, `bn1.*`, `layer1..4.*`, `fc.*`, no config (torchvision's
//                              resnet50/101 ImageNet weights, export_torchvision.py --model
//                              resnet50|101): the paper's starting point; they load as `backbone.*`
//                              and `fc.*` is ignored
//
// A file with a configuration initialises the whole model: every tensor must fit (same name, same
// shape), except the last classifier conv (and the aux head's last conv) when the file predicts
// another number of classes than the run's dataset has: those are re-initialised from the run's
// seed. An aux head in the file but not in the model is ignored; one in the model but not in the
// file is initialised from the seed. A backbone-only file must fit the configuration's backbone
// exactly; the head is initialised from the seed. Anything else that does not fit is an error
// naming the file and the first tensor (in the model's state-dict order) that does not, before
// any weight is written.
//
// Pure TypeScript (bytes in, nothing read or written here): the caller reads the file.

import { fmtShape } from '../tensor.js';
import type { Checkpoint } from '../io/checkpoint.js';
import type { HostTensor, LoadReport } from '../nn/module.js';
import type { DeepLabV3 } from '../nn/deeplabv3.js';

export type InitKind = 'atrous-checkpoint' | 'torchvision-deeplabv3' | 'torchvision-fcn' | 'resnet-classification';

/** The kinds of init file in words, for messages and the README. */
export const INIT_KIND_NAMES: Readonly<Record<InitKind, string>> = {
  'atrous-checkpoint': 'atrous checkpoint',
  'torchvision-deeplabv3': 'torchvision DeepLabv3 export',
  'torchvision-fcn': 'torchvision FCN export',
  'resnet-classification': 'ResNet classification state dict',
};

/** A set of state-dict names: how many, and the fewest `prefix.*` patterns that cover exactly them. */
export interface KeyGroup {
  count: number;
  patterns: string[];
}

/** What an init does with each tensor, as `run.json` records it. */
export interface InitReport {
  kind: InitKind;
  /** Model tensors copied from the file (model names). */
  loaded: KeyGroup;
  /** Model tensors the file has but that are re-initialised from the seed: the last classifier
   * layers when the class count differs (`fromClasses` → `toClasses`). */
  reinitialised: KeyGroup & { fromClasses?: number; toClasses?: number };
  /** Model tensors the file does not have, initialised from the seed (the head, for a backbone file). */
  initialised: KeyGroup;
  /** File tensors not used (file names: `fc.*` of a classification ResNet, an aux head the model lacks). */
  ignored: KeyGroup;
}

/** What to copy: model name → file tensor, and the report. */
export interface InitPlan {
  report: InitReport;
  tensors: Map<string, HostTensor>;
}

const CLASSIFICATION_KEY = /^(conv1|bn1|layer\d+)\./;

/** The kind of an init file from its contents; throws an Error naming the file when it is none. */
export function initKind(ck: Checkpoint, source: string): InitKind {
  if (ck.config) return /torchvision/i.test(ck.metadata.source ?? '') ? 'torchvision-deeplabv3' : 'atrous-checkpoint';
  const keys = [...ck.state.keys()];
  if (keys.some((k) => k.startsWith('backbone.'))) return 'torchvision-fcn';
  if (ck.state.has('conv1.weight') && keys.some((k) => k.startsWith('layer1.'))) return 'resnet-classification';
  throw new Error(
    `${source}: not a weights file to start from: no __metadata__.config (not an atrous checkpoint or a torchvision DeepLabv3 export), ` +
    `no backbone.* tensor (not a segmentation state dict) and no conv1.weight with layer1.* (not a ResNet classification state dict)` +
    `${keys.length ? `; its first tensor is '${keys[0]}'` : '; it holds no tensor'}`,
  );
}

/**
 * The fewest patterns `p.*` (p a dotted prefix of the names) or full names that cover exactly
 * `keys` within `universe` (every name of the state dict they are taken from), in order.
 */
export function keyPatterns(keys: readonly string[], universe: readonly string[]): string[] {
  const inSet = new Set(keys);
  const out: string[] = [];
  for (const k of keys) {
    const parts = k.split('.');
    let pattern = k;
    for (let n = 1; n < parts.length; n++) {
      const prefix = `${parts.slice(0, n).join('.')}.`;
      if (universe.every((u) => !u.startsWith(prefix) || inSet.has(u))) {
        pattern = `${prefix}*`;
        break;
      }
    }
    if (!out.includes(pattern)) out.push(pattern);
  }
  return out;
}

const group = (keys: string[], universe: string[]): KeyGroup => ({ count: keys.length, patterns: keyPatterns(keys, universe) });

/** Names of the last classifier conv and of the aux head's last conv: what a class-count change re-initialises. */
function classifierLayers(model: DeepLabV3): string[] {
  const last = model.classifier.layers.length - 1;
  const out = [`classifier.${last}.weight`, `classifier.${last}.bias`];
  if (model.aux_classifier) {
    const a = model.aux_classifier.layers.length - 1;
    out.push(`aux_classifier.${a}.weight`, `aux_classifier.${a}.bias`);
  }
  return out;
}

/**
 * Checks a file against a model (meta or not: only names and shapes are used) and plans the init.
 * Throws an Error naming `source` and the first tensor that does not fit; nothing is written.
 */
export function planInit(ck: Checkpoint, model: DeepLabV3, source: string): InitPlan {
  const kind = initKind(ck, source);
  const shapes = model.stateDictShapes();
  const modelKeys = [...shapes.keys()];
  const fileKeys = [...ck.state.keys()];
  const cfgName = model.config.name;
  const kindName = INIT_KIND_NAMES[kind];
  const misfit = (what: string) => new Error(`${source}: does not fit configuration '${cfgName}' (read as ${/^[aeiou]/i.test(kindName) ? 'an' : 'a'} ${kindName}): ${what}`);
  const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);
  const tensors = new Map<string, HostTensor>();
  const loaded: string[] = [];
  const reinit: string[] = [];
  const initialised: string[] = [];
  const used = new Set<string>();
  let classes: { from: number; to: number } | undefined;

  if (kind === 'atrous-checkpoint' || kind === 'torchvision-deeplabv3') {
    const heads = new Set(classifierLayers(model));
    for (const k of modelKeys) {
      const want = shapes.get(k)!;
      const t = ck.state.get(k);
      if (!t) {
        if (k.startsWith('aux_classifier.')) {
          initialised.push(k);
          continue;
        }
        throw misfit(`no tensor '${k}' in the file (the model expects ${fmtShape(want)})`);
      }
      used.add(k);
      if (sameShape(t.shape, want)) {
        tensors.set(k, t);
        loaded.push(k);
      } else if (heads.has(k) && t.shape.length === want.length && t.shape.slice(1).every((d, i) => d === want[i + 1])) {
        // The last classifier layer of another class count: re-initialised from the seed.
        reinit.push(k);
        if (!k.startsWith('aux_') && k.endsWith('.weight')) classes = { from: t.shape[0], to: want[0] };
      } else throw misfit(`'${k}' is ${fmtShape(t.shape)} in the file, ${fmtShape(want)} in the model`);
    }
    const extra = fileKeys.find((k) => !shapes.has(k) && !k.startsWith('aux_classifier.'));
    if (extra !== undefined) throw misfit(`the file has '${extra}' ${fmtShape(ck.state.get(extra)!.shape)}, which the model has not`);
  } else {
    // Backbone only: file name → model name.
    const toModel = (k: string): string | null => {
      if (kind === 'resnet-classification') return CLASSIFICATION_KEY.test(k) ? `backbone.${k}` : null;
      return k.startsWith('backbone.') ? k : null;
    };
    const ignorable = (k: string) => (kind === 'resnet-classification' ? k.startsWith('fc.') : k.startsWith('classifier.') || k.startsWith('aux_classifier.'));
    const byModel = new Map<string, string>();
    for (const k of fileKeys) {
      const m = toModel(k);
      if (m !== null) byModel.set(m, k);
      else if (!ignorable(k)) {
        const known = kind === 'resnet-classification' ? 'conv1.*, bn1.*, layer1.* .. and fc.*' : 'backbone.*, classifier.* and aux_classifier.*';
        throw misfit(`the file has '${k}' ${fmtShape(ck.state.get(k)!.shape)}, which is none of ${known}`);
      }
    }
    for (const k of modelKeys) {
      const want = shapes.get(k)!;
      if (!k.startsWith('backbone.')) {
        initialised.push(k);
        continue;
      }
      const fk = byModel.get(k);
      if (fk === undefined) throw misfit(`no tensor '${kind === 'resnet-classification' ? k.slice('backbone.'.length) : k}' in the file for '${k}' (the model expects ${fmtShape(want)})`);
      const t = ck.state.get(fk)!;
      if (!sameShape(t.shape, want)) throw misfit(`'${fk}' is ${fmtShape(t.shape)} in the file, '${k}' is ${fmtShape(want)} in the model`);
      used.add(fk);
      tensors.set(k, t);
      loaded.push(k);
    }
    const extra = [...byModel.entries()].find(([m]) => !shapes.has(m));
    if (extra) throw misfit(`the file has '${extra[1]}' ${fmtShape(ck.state.get(extra[1])!.shape)}, but the configuration's backbone has no '${extra[0]}'`);
  }
  const ignored = fileKeys.filter((k) => !used.has(k));
  const report: InitReport = {
    kind,
    loaded: group(loaded, modelKeys),
    reinitialised: { ...group(reinit, modelKeys), ...(classes ? { fromClasses: classes.from, toClasses: classes.to } : {}) },
    initialised: group(initialised, modelKeys),
    ignored: group(ignored, fileKeys),
  };
  return { report, tensors };
}

/**
 * Gives a meta model its weights: the plan's tensors from the file, every other tensor from
 * `seed` (the values `materialize(seed)` gives it). Returns the load report.
 */
export function applyInit(model: DeepLabV3, plan: InitPlan, seed: number): LoadReport {
  return model.loadStateDict(plan.tensors, { strict: false, seed });
}

/** The report in one line: "52 tensors loaded (backbone.*, classifier.0.*); 2 re-initialised ..." */
export function describeInitReport(r: InitReport): string {
  const part = (g: KeyGroup, what: string) => `${g.count} ${what}${g.count ? ` (${g.patterns.join(', ')})` : ''}`;
  const why = r.reinitialised.fromClasses !== undefined ? ` for ${r.reinitialised.toClasses} classes instead of ${r.reinitialised.fromClasses}` : '';
  return [
    part(r.loaded, 'tensors loaded'),
    `${part(r.reinitialised, 're-initialised')}${why}`,
    part(r.initialised, 'initialised from the seed'),
    part(r.ignored, 'ignored'),
  ].join('; ');
}
