// Checkpoints: safetensors bytes <-> model state with torchvision's names, the config in
// __metadata__, strict key/shape checking that names the first mismatch and writes nothing on
// failure, and the lenient mode (ignore patterns, strict: false).
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  DeepLabV3, createDeepLabV3, modelConfig, saveCheckpoint, loadCheckpoint, readCheckpoint, modelFromCheckpoint,
  stateDictToSafetensors, configFromJSON, CHECKPOINT_FORMAT, engine, type HostTensor,
} from '../src/index.js';
import { editHeader, duplicateEntry } from './helpers.js';
import { parseSafetensors, serializeSafetensors, toFloat32, type STensorInput } from '../src/io/safetensors.js';

const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'model');
const weightsBytes = () => new Uint8Array(readFileSync(join(fixtureDir, 'small_weights.safetensors')));

/** The fixture's state with one entry changed (or removed, for null). */
function edited(state: Map<string, HostTensor>, key: string, value: HostTensor | null, extra?: [string, HostTensor]): Map<string, HostTensor> {
  const out = new Map(state);
  if (value) out.set(key, value);
  else out.delete(key);
  if (extra) out.set(extra[0], extra[1]);
  return out;
}

describe('checkpoints (safetensors, torchvision names)', () => {
  it('reads the fixture written by tools/export_torchvision.py\'s writer, config included', () => {
    const ck = readCheckpoint(weightsBytes(), 'small_weights');
    expect(ck.metadata.format).to.equal(CHECKPOINT_FORMAT);
    expect(ck.config!.name).to.equal('fixture-small');
    expect(ck.config!.aspp!.rates).to.deep.equal([2, 4, 6]);
    const m = new DeepLabV3(ck.config!);
    expect([...ck.state.keys()]).to.deep.equal([...m.stateDictShapes().keys()]);
    const nbt = ck.state.get('backbone.bn1.num_batches_tracked')!;
    expect(nbt.data).to.be.instanceOf(Int32Array);
    expect(nbt.shape).to.deep.equal([]);
  });

  it('round-trips a model: F32 tensors, I64 counters, config in __metadata__', async () => {
    const { model } = modelFromCheckpoint(weightsBytes());
    const bytes = await saveCheckpoint(model, { note: 'test' });
    const st = parseSafetensors(bytes);
    expect(st.metadata.format).to.equal(CHECKPOINT_FORMAT);
    expect(st.metadata.note).to.equal('test');
    expect(JSON.parse(st.metadata.config)).to.deep.equal(model.config);
    expect(st.tensors.get('backbone.layer4.1.bn3.num_batches_tracked')!.dtype).to.equal('I64');
    expect(st.tensors.get('classifier.0.convs.1.0.weight')!.dtype).to.equal('F32');
    // Same bytes per tensor as the torchvision-side file.
    const orig = parseSafetensors(weightsBytes());
    for (const [k, t] of orig.tensors) expect(Buffer.from(st.tensors.get(k)!.data).equals(Buffer.from(t.data)), k).to.equal(true);
    const again = modelFromCheckpoint(bytes).model;
    const a = await again.readStateDict();
    const b = await model.readStateDict();
    for (const [k, v] of b) expect(Array.from(a.get(k)!.data), k).to.deep.equal(Array.from(v.data));
    again.dispose();
    model.dispose();
  });

  it('names the first missing key, unexpected key or shape mismatch, and writes nothing then', async () => {
    const { model } = modelFromCheckpoint(weightsBytes());
    const state = readCheckpoint(weightsBytes()).state;
    const w0 = await model.backbone.conv1.tensorOf('weight').float32();
    const zero = (shape: number[]): HostTensor => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    const bad: [Map<string, HostTensor>, RegExp][] = [
      [edited(state, 'backbone.layer3.1.bn2.running_var', null), /missing key 'backbone.layer3.1.bn2.running_var' \(model expects \[16\]/],
      [edited(state, 'x', null, ['backbone.layer9.0.conv1.weight', zero([2, 2, 1, 1])]), /unexpected key 'backbone.layer9.0.conv1.weight' \[2, 2, 1, 1\]/],
      [edited(state, 'classifier.4.weight', zero([5, 8, 1, 1])), /shape mismatch for 'classifier.4.weight': checkpoint \[5, 8, 1, 1\], model \[4, 8, 1, 1\]/],
    ];
    for (const [s, re] of bad) {
      const bytes = stateDictToSafetensors(s);
      expect(() => loadCheckpoint(model, bytes, { source: 'edited.safetensors' })).to.throw(re);
      expect(() => loadCheckpoint(model, bytes, { source: 'edited.safetensors' })).to.throw(/^edited.safetensors: loadStateDict: /);
    }
    // A valid new value for an early key and a bad shape for a later one: nothing is written.
    const late = edited(edited(state, 'backbone.conv1.weight', zero([4, 3, 7, 7])), 'classifier.4.weight', zero([5, 8, 1, 1]));
    expect(() => model.loadStateDict(late)).to.throw(/shape mismatch/);
    expect(Array.from(await model.backbone.conv1.tensorOf('weight').float32())).to.deep.equal(Array.from(w0));
    model.dispose();
  });

  it('is lenient only when asked: ignore patterns (aux_classifier.*) or strict: false', async () => {
    const bytes = weightsBytes();
    const ck = readCheckpoint(bytes);
    const noAux = { ...ck.config!, aux: false };
    const m = new DeepLabV3(noAux);
    expect(() => loadCheckpoint(m, bytes)).to.throw(/unexpected key 'aux_classifier.0.weight' \[16, 64, 3, 3\] .*8 unexpected in all.*ignore: \['aux_classifier.\*'\]/);
    expect(m.materialized).to.equal(false);
    const report = loadCheckpoint(m, bytes, { ignore: ['aux_classifier.*'] });
    expect(report.unexpected.filter((k) => !k.startsWith('aux_classifier.')).length).to.equal(0);
    expect(report.unexpected.length).to.equal(8);
    expect(report.missing).to.deep.equal([]);
    expect(m.materialized).to.equal(true);
    m.dispose();

    // The other way round: a model with aux from a file without it; missing keys get initialised.
    const withoutAux = new Map([...ck.state].filter(([k]) => !k.startsWith('aux_classifier.')));
    const m2 = new DeepLabV3(ck.config!);
    expect(() => m2.loadStateDict(withoutAux)).to.throw(/missing key 'aux_classifier.0.weight'/);
    const r2 = m2.loadStateDict(withoutAux, { strict: false, seed: 3 });
    expect(r2.missing.length).to.equal(8);
    expect(m2.materialized).to.equal(true);
    expect((await m2.aux_classifier!.layers[0].tensorOf('weight').float32()).some((v) => v !== 0)).to.equal(true);
    // Shapes are checked even when lenient.
    const wrong = new Map(ck.state);
    wrong.set('classifier.4.bias', { shape: [7], data: new Float32Array(7) });
    expect(() => m2.loadStateDict(wrong, { strict: false })).to.throw(/shape mismatch for 'classifier.4.bias'/);
    m2.dispose();
  });

  it('builds models from the metadata, a named config, or fails asking for one', async () => {
    const state = readCheckpoint(weightsBytes()).state;
    const plain = stateDictToSafetensors(state);
    expect(() => modelFromCheckpoint(plain, { source: 'plain.safetensors' })).to.throw(/plain.safetensors: no __metadata__.config in the file: name a configuration/);
    // A partial config naming a known configuration fills the rest in.
    const cfg = configFromJSON({ name: 'mini', numClasses: 3 });
    expect(cfg.numClasses).to.equal(3);
    expect(cfg.blocks).to.deep.equal(modelConfig('mini').blocks);
    expect(() => configFromJSON({ name: 'custom', numClasses: 3 })).to.throw(/'blocks' must be four integers/);
    const mini = createDeepLabV3(modelConfig('mini', { numClasses: 3 }));
    const bytes = stateDictToSafetensors(await mini.readStateDict(), { config: JSON.stringify({ name: 'mini', numClasses: 3 }) });
    const { model, config } = modelFromCheckpoint(bytes, { outputStride: 8 });
    expect(config.numClasses).to.equal(3);
    expect(model.outputStride).to.equal(8);
    expect(model.aspp!.rates).to.deep.equal([2, 4, 6]);
    // A config option overrides the file's; a mismatching one fails on the first shape.
    expect(() => modelFromCheckpoint(bytes, { config: 'mini' })).to.throw(/shape mismatch for 'classifier.1.weight': checkpoint \[3, 64, 1, 1\], model \[21, 64, 1, 1\]/);
    const broken = serializeSafetensors(new Map<string, STensorInput>(), { config: '{nope' });
    expect(() => readCheckpoint(broken, 'broken')).to.throw(/broken: __metadata__.config is not valid JSON/);
    model.dispose();
    mini.dispose();
  });

  it('refuses a doctored header (a tensor or a metadata key given twice) before any model is built', () => {
    const cases: [Uint8Array, string][] = [
      [editHeader(weightsBytes(), (h) => duplicateEntry(h, 'classifier.4.weight')), 'the header names tensor "classifier.4.weight" twice'],
      [editHeader(weightsBytes(), (h) => h.replace('"format":"atrous-deeplabv3"', '"format":"atrous-deeplabv3","format":"other"')),
        '"__metadata__": duplicate key "format"'],
      [editHeader(weightsBytes(), (h) => h.replace('{"__metadata__":{', '{"__metadata__":{"config":"{\\"name\\": \\"mini\\"}",')),
        '"__metadata__": duplicate key "config"'],
    ];
    for (const [bytes, msg] of cases) {
      const before = engine().stats();
      expect(() => readCheckpoint(bytes, 'doctored.safetensors')).to.throw(`doctored.safetensors: ${msg}`);
      expect(() => modelFromCheckpoint(bytes, { source: 'doctored.safetensors' })).to.throw(`doctored.safetensors: ${msg}`);
      const after = engine().stats();
      expect(after.liveBuffers, 'no GPU buffer allocated').to.equal(before.liveBuffers);
      expect(after.dispatches, 'no GPU work').to.equal(before.dispatches);
    }
  });

  it('converts F64 weights and I32 counters on load', async () => {
    const ck = readCheckpoint(weightsBytes());
    const tensors = new Map<string, STensorInput>();
    for (const [k, v] of ck.state) {
      if (v.data instanceof Int32Array) tensors.set(k, { dtype: 'I32', shape: v.shape, data: v.data });
      else tensors.set(k, { dtype: 'F64', shape: v.shape, data: Float64Array.from(v.data) });
    }
    const { model } = modelFromCheckpoint(serializeSafetensors(tensors, { config: JSON.stringify(ck.config) }));
    const w = await model.classifier.layers[4].tensorOf('weight').float32();
    expect(Array.from(w)).to.deep.equal(Array.from(toFloat32(parseSafetensors(weightsBytes()).tensors.get('classifier.4.weight')!)));
    model.dispose();
  });
});
