// `--compare torch`: the same training step in PyTorch on the CPU (tools/torch_step.py), run in a
// child process of the same invocation after atrous's own rows, so the two never share the cores.

import { spawnSync } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelConfig } from '../index.js';
import type { BenchRow } from './common.js';
import type { TrainStepCase } from './train-step.js';

// dist/src/bench → the package's tools/
const TOOLS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'tools');

/** The first interpreter that imports torch and torchvision (Debian's /usr/bin/python3 first: a
 * pyenv or venv `python3` on PATH may not see Debian's python3-torch), or null. */
export function findTorchPython(): string | null {
  for (const py of [process.env.ATROUS_PYTHON, '/usr/bin/python3', 'python3'].filter((p): p is string => !!p)) {
    const r = spawnSync(py, ['-c', 'import torch, torchvision'], { stdio: 'ignore', timeout: 120_000 });
    if (r.status === 0) return py;
  }
  return null;
}

export function torchTrainStep(py: string, c: TrainStepCase, opts: { repeats: number; adapter: string; flops: number }): BenchRow {
  const cfg = modelConfig(c.config);
  const r = spawnSync(py, [join(TOOLS, 'torch_step.py'), '--config', JSON.stringify(cfg), '--n', String(c.n), '--size', String(c.size), '--repeats', String(opts.repeats)], {
    encoding: 'utf8',
    timeout: 1_800_000,
  });
  const base = { kernel: 'train-step', pass: 'step', impl: 'torch', config: c.config, n: c.n, h: c.size, w: c.size, adapter: opts.adapter } as const;
  if (r.status !== 0) {
    const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n').slice(-1)[0];
    return { ...base, ms: null, gflops: null, note: `torch_step.py failed: ${why}` };
  }
  const out = JSON.parse(r.stdout.trim().split('\n').slice(-1)[0]) as { ms: number; first_step_ms: number; torch: string; threads: number; parameters: number; peak_bytes?: number };
  return {
    ...base, ms: out.ms, gflops: opts.flops / (out.ms * 1e6), first_step_ms: out.first_step_ms, timing: 'cpu', peak_bytes: out.peak_bytes ?? null,
    note: `PyTorch ${out.torch} CPU, ${out.threads} threads, ${out.parameters} parameters`,
  };
}
