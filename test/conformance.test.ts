// Every committed PyTorch fixture, forward and backward, on the GPU path (lavapipe in CI).
import { expect } from 'chai';
import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyFixture } from '../src/verify.js';
import { setConv2dVariant, CONV2D_VARIANTS } from '../src/ops/conv2d/index.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures');
const files = readdirSync(dir).filter((f) => f.endsWith('.safetensors')).sort();

describe('PyTorch conformance fixtures', () => {
  it('has fixtures for every op of the format', () => {
    const ops = new Set(files.map((f) => f.split('__')[0]));
    for (const op of ['conv2d', 'batch_norm', 'adaptive_avg_pool2d', 'interpolate', 'relu', 'max_pool2d', 'add', 'cat', 'cross_entropy']) {
      expect(ops.has(op), op).to.equal(true);
    }
  });
  const check = async (f: string) => {
    const r = await verifyFixture(new Uint8Array(readFileSync(join(dir, f))), f);
    const bad = r.checks.filter((c) => !c.pass).map((c) => `${c.tensor}: rel ${c.rel.toExponential(2)} > ${c.tol}`);
    expect(r.error, r.error).to.equal(undefined);
    expect(bad, bad.join('; ')).to.deep.equal([]);
    expect(r.checks.length).to.be.greaterThan(1);
  };
  for (const f of files) it(f.replace('.safetensors', ''), () => check(f));
  // The conv2d fixtures again on each kernel variant, forced (forward and backward).
  for (const variant of CONV2D_VARIANTS) {
    describe(`conv2d with the ${variant} kernel variant`, () => {
      before(() => setConv2dVariant(variant));
      after(() => setConv2dVariant(null));
      for (const f of files.filter((f) => f.startsWith('conv2d__'))) it(f.replace('.safetensors', ''), () => check(f));
    });
  }
});
