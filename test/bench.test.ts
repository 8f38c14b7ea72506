// The benchmark suite runs (at a tiny size) and its rows carry the fields the issue lists. Timings
// are never checked: benchmarks do not assert. The run is a child process (as a user runs it), so
// TensorFlow.js's own device (--compare tfjs) does not outlive it inside the test process.

import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fig4Row, fig4Table, prunedTaps } from '../src/bench/fig4.js';
import { validTapPositions, convFlops, type ConvShape } from '../src/bench/conv2d.js';
import { parseBenchArgs } from '../src/bench/run.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

describe('bench', () => {
  it('atrous bench --quick --json --compare tfjs: every row has the fields of the issue, and the files are written', function () {
    const out = mkdtempSync(join(tmpdir(), 'atrous-bench-'));
    try {
      const r = spawnSync(process.execPath, [join(root, 'bin', 'atrous.js'), 'bench', '--quick', '--json', '--compare', 'tfjs', '--repeats', '1', '--out', out], {
        encoding: 'utf8',
        cwd: root,
      });
      expect(r.status, r.stderr).to.equal(0);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('{'));
      const objs = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      const rows = objs.filter((o) => 'kernel' in o);
      const fig4 = objs.filter((o) => o.table === 'fig4');
      expect(new Set(rows.map((o) => o.kernel))).to.deep.equal(new Set(['conv2d', 'batch_norm', 'resize', 'matmul', 'train-step']));
      for (const row of rows) {
        expect(row, JSON.stringify(row)).to.include.keys('kernel', 'pass', 'impl', 'ms', 'gflops', 'adapter');
        expect(['forward', 'backward-data', 'backward-weight', 'backward', 'step']).to.include(row.pass);
        expect(['atrous', 'tfjs', 'torch']).to.include(row.impl);
        expect(row.adapter).to.be.a('string').and.not.equal('');
        if (row.ms !== null) {
          expect(row.ms, JSON.stringify(row)).to.be.a('number').above(0);
          expect(row.gflops, JSON.stringify(row)).to.be.a('number').above(0);
        } else expect(row.note, 'a row without a time says why').to.be.a('string');
        if (row.kernel === 'conv2d') expect(row).to.include.keys('n', 'cin', 'cout', 'h', 'w', 'k', 'stride', 'dilation');
        if (row.kernel === 'train-step') expect(row).to.include.keys('config', 'n', 'h', 'w');
        if (row.kernel === 'train-step' && row.impl === 'atrous') expect(row.peak_bytes).to.be.a('number').above(0);
      }
      const conv = rows.filter((o) => o.kernel === 'conv2d');
      for (const pass of ['forward', 'backward-data', 'backward-weight']) expect(conv.some((o) => o.pass === pass && o.impl === 'atrous')).to.equal(true);
      expect(conv.some((o) => o.impl === 'tfjs' && o.pass === 'forward' && typeof o.ms === 'number')).to.equal(true);
      const tfBack = conv.filter((o) => o.impl === 'tfjs' && o.pass !== 'forward' && (o.dilation as number) > 1);
      expect(tfBack.length).to.be.above(0);
      for (const o of tfBack) {
        expect(o.ms).to.equal(null);
        expect(o.note).to.match(/no dilated conv gradient/);
      }
      expect(fig4.length).to.be.above(0);
      const files = readdirSync(out);
      expect(files.some((f) => f.endsWith('.quick.json'))).to.equal(true);
      const md = files.find((f) => f.endsWith('.quick.md'))!;
      expect(readFileSync(join(out, md), 'utf8')).to.match(/## Fig\. 4/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('Fig. 4: valid-weight counts are exact (brute force) and taps that only read padding are counted as pruned', () => {
    for (const rate of [1, 6, 18, 36, 64, 65, 100]) {
      const row = fig4Row(rate);
      const counts = new Map<number, number>();
      let valid = 0;
      for (let oy = 0; oy < 65; oy++) {
        for (let ox = 0; ox < 65; ox++) {
          let c = 0;
          for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
            const iy = oy - rate + ky * rate;
            const ix = ox - rate + kx * rate;
            if (iy >= 0 && iy < 65 && ix >= 0 && ix < 65) c++;
          }
          counts.set(c, (counts.get(c) ?? 0) + 1);
          valid += c;
        }
      }
      for (const c of [9, 6, 4, 3, 2, 1]) expect(row.positions[c], `rate ${rate}, ${c} valid`).to.be.closeTo((counts.get(c) ?? 0) / 65 ** 2, 1e-12);
      expect(row.validFraction).to.be.closeTo(valid / (9 * 65 ** 2), 1e-12);
    }
    expect(fig4Row(1).positions[9]).to.be.closeTo((63 * 63) / 65 ** 2, 1e-12);
    expect(prunedTaps(64, 65)).to.equal(0);
    expect(prunedTaps(65, 65)).to.equal(8);
    expect(prunedTaps(36, 33)).to.equal(8);
    expect(prunedTaps(24, 33)).to.equal(0);
    expect(fig4Table().map((r) => r.rate)).to.include.members([1, 6, 12, 18, 24, 36]);
  });

  it('useful FLOPs count exactly the multiply-adds whose tap reads inside the input', () => {
    const s: ConvShape = { group: 'aspp', n: 2, cin: 3, cout: 5, h: 11, k: 3, stride: 2, dilation: 3, padding: 4 };
    const o = Math.floor((11 + 8 - 6 - 1) / 2) + 1;
    let brute = 0;
    for (let oy = 0; oy < o; oy++) for (let ox = 0; ox < o; ox++) for (let ky = 0; ky < 3; ky++) for (let kx = 0; kx < 3; kx++) {
      const iy = oy * 2 - 4 + ky * 3;
      const ix = ox * 2 - 4 + kx * 3;
      if (iy >= 0 && iy < 11 && ix >= 0 && ix < 11) brute++;
    }
    expect(validTapPositions(3, 2, 4, 3, 11, o) ** 2).to.equal(brute);
    expect(convFlops(s).useful).to.equal(2 * 2 * 3 * 5 * brute);
    expect(convFlops(s).dense).to.equal(2 * 2 * 3 * 5 * o * o * 9);
  });

  it('parses its options and names a bad one', () => {
    const o = parseBenchArgs(['--quick', '--compare', 'tfjs,torch', '--only', 'conv', '--only', 'train', '--repeats', '3']);
    expect(o.quick).to.equal(true);
    expect(o.compare).to.deep.equal(['tfjs', 'torch']);
    expect(o.only).to.deep.equal(['conv', 'train']);
    expect(o.repeats).to.equal(3);
    expect(() => parseBenchArgs(['--compare', 'onnx'])).to.throw(/--compare: 'onnx'/);
    expect(() => parseBenchArgs(['--only', 'gemm'])).to.throw(/--only: 'gemm'/);
    expect(() => parseBenchArgs(['--repeats', '0'])).to.throw(/--repeats/);
  });
});
