// `atrous verify <file-or-dir>...`: runs PyTorch fixtures forward and backward on the GPU.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { init } from '../init.js';
import { verifyFixture, DEFAULT_TOLERANCES } from '../verify.js';
import { parse } from './args.js';
import type { Command } from './main.js';

function collect(paths: string[]): string[] {
  const files: string[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      throw new Error(`atrous verify: no such file or directory: ${p}`);
    }
    if (st.isDirectory()) {
      const inDir = readdirSync(p).filter((f) => f.endsWith('.safetensors')).sort();
      if (!inDir.length) throw new Error(`atrous verify: no .safetensors files in ${p}`);
      files.push(...inDir.map((f) => join(p, f)));
    } else files.push(p);
  }
  return files;
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toExponential(2) : String(x));

export const verifyCommand: Command = {
  summary: 'check ops against PyTorch fixtures (forward and backward on the GPU)',
  usage: [
    'usage: atrous verify <file-or-dir>... [--tol-out 1e-4] [--tol-grad 1e-3] [--json] [--adapter NAME]',
    '',
    'Each fixture is a .safetensors file written by tools/gen_fixtures.py (format in README.md).',
    "Prints one line per tensor (max abs error, normwise relative error, PASS/FAIL) and a closing line 'N passed, M failed'.",
    'Exit status 1 when any fixture fails.',
  ].join('\n'),
  async run(argv) {
    const { values, positionals } = parse('verify', argv, { 'tol-out': { type: 'string' }, 'tol-grad': { type: 'string' }, json: { type: 'boolean' } }, true);
    if (!positionals.length) throw new Error("atrous verify: give at least one fixture file or directory (e.g. 'atrous verify test/fixtures')");
    const tol = { ...DEFAULT_TOLERANCES };
    for (const [k, key] of [['tol-out', 'out'], ['tol-grad', 'grad']] as const) {
      const v = values[k] as string | undefined;
      if (v !== undefined) {
        const x = Number(v);
        if (!(x > 0)) throw new Error(`atrous verify: --${k} must be a positive number, got '${v}'`);
        tol[key] = x;
      }
    }
    const files = collect(positionals);
    await init({ adapter: values.adapter as string | undefined });
    let passed = 0;
    let failed = 0;
    for (const file of files) {
      const r = await verifyFixture(new Uint8Array(readFileSync(file)), file, tol);
      if (r.pass) passed++;
      else failed++;
      if (values.json) {
        console.log(JSON.stringify(r));
        continue;
      }
      if (r.error) console.log(`${file}  ERROR  ${r.error}`);
      for (const c of r.checks) {
        console.log(`${file}  ${c.tensor.padEnd(18)} max_abs ${fmt(c.maxAbs).padStart(9)}  rel ${fmt(c.rel).padStart(9)}  ${c.pass ? 'PASS' : `FAIL (tol ${c.tol})`}`);
      }
    }
    console.log(`${passed} passed, ${failed} failed`);
    return failed ? 1 : 0;
  },
};
