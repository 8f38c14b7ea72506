#!/usr/bin/env node
// Writes, as an atrous checkpoint, the initial weights that `atrous train --config C --seed S` starts
// from on a dataset of N classes (the trainer builds the model of its config with numClasses = N
// and calls materialize(S): src/train/trainer.ts). PyTorch (tools/torch_ddp_train.py) can then start
// from exactly the weights an atrous run starts from.
//
//   npm run build
//   node tools/atrous_init.mjs --config mini --classes 7 --seed 0 --out /tmp/init.safetensors
//
// --config takes a configuration name or a JSON file holding a model config (or a training config
// whose "model" is a name or a model config). Output: F32 tensors (num_batches_tracked I64) with
// __metadata__ {format, config, seed}.
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { init, createDeepLabV3, modelConfig, configFromJSON, saveCheckpoint } from '../dist/src/index.js';

const { values: v } = parseArgs({ options: { config: { type: 'string', default: 'mini' }, classes: { type: 'string' }, seed: { type: 'string', default: '0' }, out: { type: 'string' } } });
if (!v.out) {
  console.error('usage: node tools/atrous_init.mjs --config NAME|FILE --classes N --seed S --out FILE');
  process.exit(2);
}
let cfg;
if (v.config.endsWith('.json')) {
  const j = JSON.parse(readFileSync(v.config, 'utf8'));
  const model = j.model ?? j;
  cfg = typeof model === 'string' ? modelConfig(model) : configFromJSON(model);
} else cfg = modelConfig(v.config);
if (v.classes !== undefined) cfg = configFromJSON({ ...cfg, numClasses: Number(v.classes) });
const seed = Number(v.seed);
if (!Number.isInteger(seed) || seed < 0) throw new Error(`atrous_init: --seed must be an integer >= 0, got '${v.seed}'`);
await init();
const model = createDeepLabV3(cfg, { seed });
writeFileSync(v.out, await saveCheckpoint(model, { seed: String(seed), source: `tools/atrous_init.mjs, the init of atrous train --seed ${seed}` }));
console.log(`${v.out}: ${cfg.name}, ${cfg.numClasses} classes, seed ${seed}, ${model.numParameters().toLocaleString('en')} parameters`);
process.exit(0);
