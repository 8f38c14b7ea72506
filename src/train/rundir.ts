// The run directory of a training run, and crash-safe writes into it. Node only.
//
//   DIR/run.json            what was asked for (model config, dataset, schedule, seed): written once
//   DIR/metrics.jsonl       one JSON object per training step (step, loss, lr, seconds since start)
//   DIR/checkpoints/step-<k>/model.safetensors   the model's state dict (loads anywhere, e.g. eval)
//                           optimizer.safetensors the SGD momentum buffers, named like the parameters
//                           state.json            step, seed, loader position (its only RNG state)
//   DIR/latest.json         {"step": k, "dir": "checkpoints/step-<k>"}: the last complete checkpoint
//
// A checkpoint is written into a temporary directory, every file fsynced, then renamed into place
// (a directory rename is atomic) before latest.json is replaced the same way: a kill at any moment
// leaves latest.json naming a complete checkpoint. The two newest checkpoints are kept.

import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const RUN_FILE = 'run.json';
export const LATEST_FILE = 'latest.json';
export const METRICS_FILE = 'metrics.jsonl';
export const CHECKPOINT_DIR = 'checkpoints';
const KEEP_CHECKPOINTS = 2;

/** Writes bytes to `path` atomically: a temporary sibling, fsync, rename, fsync of the directory. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeSynced(tmp, data);
  renameSync(tmp, path);
  fsyncDir(join(path, '..'));
}

function writeSynced(path: string, data: Uint8Array | string): void {
  const fd = openSync(path, 'w');
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  // Makes the rename itself durable; some filesystems refuse fsync on directories, which is harmless.
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not supported here */
  }
}

export interface LatestPointer {
  step: number;
  dir: string;
}

/** A run directory on disk. */
export class RunDir {
  readonly path: string;

  constructor(path: string) {
    this.path = resolve(path);
  }

  file(name: string): string {
    return join(this.path, name);
  }

  /** True when DIR has a run.json. */
  get exists(): boolean {
    return existsSync(this.file(RUN_FILE));
  }

  /** Opens an existing run; a clear error when DIR is missing or is not a run directory. */
  static open(path: string): RunDir {
    const r = new RunDir(path);
    if (!existsSync(r.path)) throw new Error(`run directory ${r.path} does not exist`);
    if (!r.exists) throw new Error(`${r.path} is not an atrous run directory (no ${RUN_FILE}; runs are made by 'atrous train --out DIR')`);
    return r;
  }

  /** Creates a new run directory; refuses to overwrite one that already holds a run. */
  static create(path: string, runInfo: unknown): RunDir {
    const r = new RunDir(path);
    if (r.exists) throw new Error(`${r.path} already holds a run: continue it with --resume ${path}, or pick another --out`);
    mkdirSync(r.path, { recursive: true });
    writeFileAtomic(r.file(RUN_FILE), `${JSON.stringify(runInfo, null, 2)}\n`);
    return r;
  }

  readRun<T>(): T {
    const f = this.file(RUN_FILE);
    try {
      return JSON.parse(readFileSync(f, 'utf8')) as T;
    } catch (e) {
      throw new Error(`${f}: cannot read the run description: ${(e as Error).message}`);
    }
  }

  /** The last complete checkpoint, or null when none was written yet. */
  latest(): LatestPointer | null {
    const f = this.file(LATEST_FILE);
    if (!existsSync(f)) return null;
    let p: LatestPointer;
    try {
      p = JSON.parse(readFileSync(f, 'utf8')) as LatestPointer;
    } catch (e) {
      throw new Error(`${f}: not valid JSON: ${(e as Error).message}`);
    }
    if (!Number.isInteger(p?.step) || typeof p.dir !== 'string') throw new Error(`${f}: expected {"step": N, "dir": "..."}, got ${JSON.stringify(p)}`);
    if (!existsSync(join(this.path, p.dir))) throw new Error(`${f}: names checkpoint ${p.dir}, which does not exist`);
    return p;
  }

  /** Path of a file inside the last complete checkpoint (error when there is none). */
  latestFile(name: string): string {
    const p = this.latest();
    if (!p) throw new Error(`run ${this.path} has no checkpoint yet (no ${LATEST_FILE})`);
    return join(this.path, p.dir, name);
  }

  /** Writes one checkpoint (file name -> bytes) atomically, points latest.json at it and prunes old ones. */
  writeCheckpoint(step: number, files: Record<string, Uint8Array | string>): string {
    const root = this.file(CHECKPOINT_DIR);
    mkdirSync(root, { recursive: true });
    const name = `step-${String(step).padStart(7, '0')}`;
    const tmp = join(root, `${name}.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    for (const [f, data] of Object.entries(files)) writeSynced(join(tmp, f), data);
    fsyncDir(tmp);
    const final = join(root, name);
    // Re-saving the same step (Ctrl-C right after a scheduled save) replaces it; latest.json still
    // names it, so for that instant the pointer dangles: it is the same step's data either way.
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    fsyncDir(root);
    const rel = `${CHECKPOINT_DIR}/${name}`;
    writeFileAtomic(this.file(LATEST_FILE), `${JSON.stringify({ step, dir: rel })}\n`);
    const old = readdirSync(root).filter((d) => /^step-\d+$/.test(d)).sort();
    for (const d of old.slice(0, Math.max(0, old.length - KEEP_CHECKPOINTS))) rmSync(join(root, d), { recursive: true, force: true });
    return join(this.path, rel);
  }

  /** Appends metric records (one JSON line each). */
  appendMetrics(records: object[]): void {
    if (records.length === 0) return;
    writeFileSync(this.file(METRICS_FILE), records.map((r) => `${JSON.stringify(r)}\n`).join(''), { flag: 'a' });
  }

  /** Metric records, optionally only those up to `maxStep` (a resumed run drops what came after its checkpoint). */
  readMetrics(maxStep = Infinity): Record<string, number>[] {
    const f = this.file(METRICS_FILE);
    if (!existsSync(f)) return [];
    return readFileSync(f, 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, number>)
      .filter((r) => !(r.step > maxStep));
  }

  /** Rewrites metrics.jsonl keeping the steps <= maxStep (atomically). */
  truncateMetrics(maxStep: number): void {
    const keep = this.readMetrics(maxStep);
    writeFileAtomic(this.file(METRICS_FILE), keep.map((r) => `${JSON.stringify(r)}\n`).join(''));
  }
}
