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
//
// One process trains into a run at a time: `lock()` creates DIR/train.lock (its holder's PID, host
// and start time) or refuses naming the holder; a lock whose process is gone (same host) is taken
// over. A locked run's start removes the temporaries a killed writer left (`*.tmp-PID`).
// The run's files are checked against each other before use: latest.json names a checkpoint
// directory inside the run with its own step, state.json agrees with it, and a torn last line of
// metrics.jsonl (a full disk or a kill during an append) is dropped with a warning.

import { existsSync, linkSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { appendFileWhole, fsyncDir, writeFileAtomic, writeNewFile, processAlive, removeStaleTemporaries, FileWriteError, HOST } from '../io/files.js';

export { writeFileAtomic } from '../io/files.js';

export const RUN_FILE = 'run.json';
export const LATEST_FILE = 'latest.json';
export const METRICS_FILE = 'metrics.jsonl';
export const CHECKPOINT_DIR = 'checkpoints';
/** Present while a process trains into the run: {"pid", "host", "started", "command"}. */
export const LOCK_FILE = 'train.lock';
const KEEP_CHECKPOINTS = 2;
const CHECKPOINT_NAME = /^step-(\d{7,})$/;

/** Who holds a run directory's lock. */
export interface LockHolder {
  pid: number;
  host: string;
  started: string;
  command?: string;
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

  /**
   * Creates a new run directory; refuses to overwrite one that already holds a run. A run that
   * never completed a step (its start failed or was killed: no metrics, no checkpoint) and that
   * no process trains is replaced, so the same command can simply be run again.
   */
  static create(path: string, runInfo: unknown, opts: { lock?: boolean } = {}): RunDir {
    const r = new RunDir(path);
    const check = () => {
      if (!r.exists) return;
      const holder = r.lockHolder();
      if (holder && holder.pid !== process.pid && (holder.host !== HOST || processAlive(holder.pid))) throw new Error(lockedMessage(r, holder));
      if (existsSync(r.file(LATEST_FILE)) || existsSync(r.file(METRICS_FILE)) || existsSync(r.file(CHECKPOINT_DIR))) {
        throw new Error(`${r.path} already holds a run: continue it with --resume ${path}, or pick another --out`);
      }
    };
    check();
    mkdirSync(r.path, { recursive: true });
    if (opts.lock) {
      r.lock();
      try {
        check(); // another process may have created the run meanwhile
      } catch (e) {
        r.unlock();
        throw e;
      }
    }
    writeFileAtomic(r.file(RUN_FILE), `${JSON.stringify(runInfo, null, 2)}\n`, 'the run description');
    return r;
  }

  private releaseLock: (() => void) | null = null;

  /** Releases the lock taken by `lock()` (nothing when not held). */
  unlock(): void {
    this.releaseLock?.();
    this.releaseLock = null;
  }

  /** The holder recorded in the lock file, or null when the run is not locked (or the file is unreadable). */
  lockHolder(): LockHolder | null {
    const f = this.file(LOCK_FILE);
    if (!existsSync(f)) return null;
    try {
      const h = JSON.parse(readFileSync(f, 'utf8')) as LockHolder;
      return Number.isInteger(h?.pid) && typeof h.host === 'string' ? h : null;
    } catch {
      return null;
    }
  }

  /**
   * Takes the run's lock for this process, or throws naming the process that holds it. A lock left
   * by a process that no longer runs on this host is taken over. The lock file is written whole
   * (a temporary hard-linked into place: the link fails when the lock exists), so a reader never
   * sees half a holder. `unlock()` releases it (so does the process's exit).
   */
  lock(command = process.argv.slice(1).join(' ')): void {
    if (this.releaseLock) return;
    const f = this.file(LOCK_FILE);
    const me: LockHolder = { pid: process.pid, host: HOST, started: new Date().toISOString(), command };
    const tmp = `${f}.tmp-${process.pid}`;
    writeFileAtomic(tmp, `${JSON.stringify(me)}\n`, 'the run lock');
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          linkSync(tmp, f);
          break;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 3) throw e;
        }
        const h = this.lockHolder();
        const stale = h === null
          ? Date.now() - statSync(f).mtimeMs > 10_000 // unreadable and old: no live writer makes it so
          : h.host === HOST && h.pid !== process.pid && !processAlive(h.pid);
        if (!stale) throw new Error(h ? lockedMessage(this, h) : `${this.path} is locked (${f} exists but is unreadable): remove it if no 'atrous train' uses this run`);
        rmSync(f, { force: true });
      }
    } finally {
      rmSync(tmp, { force: true });
    }
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      process.off('exit', release);
      const h = this.lockHolder();
      if (h && h.pid === me.pid && h.started === me.started) rmSync(f, { force: true });
    };
    process.on('exit', release);
    this.releaseLock = release;
  }

  /** Removes what a killed writer of this run left: `*.tmp-PID` files and checkpoint directories
   * whose process no longer runs. Returns the paths removed (relative to the run). */
  removeLeftovers(): string[] {
    return [
      ...removeStaleTemporaries(this.path),
      ...removeStaleTemporaries(this.file(CHECKPOINT_DIR)).map((n) => `${CHECKPOINT_DIR}/${n}`),
    ];
  }

  readRun<T>(): T {
    const f = this.file(RUN_FILE);
    try {
      return JSON.parse(readFileSync(f, 'utf8')) as T;
    } catch (e) {
      throw new Error(`${f}: cannot read the run description: ${(e as Error).message}`);
    }
  }

  /** The last complete checkpoint, or null when none was written yet. The pointer must name a
   * checkpoint directory of this run (checkpoints/step-N, N its step) that exists. */
  latest(): LatestPointer | null {
    const f = this.file(LATEST_FILE);
    if (!existsSync(f)) return null;
    let p: LatestPointer;
    try {
      p = JSON.parse(readFileSync(f, 'utf8')) as LatestPointer;
    } catch (e) {
      throw new Error(`${f}: not valid JSON: ${(e as Error).message}`);
    }
    if (!p || typeof p !== 'object' || !Number.isSafeInteger(p.step) || p.step < 0 || typeof p.dir !== 'string') {
      throw new Error(`${f}: expected {"step": N, "dir": "checkpoints/step-..."} with N >= 0, got ${JSON.stringify(p)}`);
    }
    const parts = p.dir.split('/');
    const m = parts.length === 2 && parts[0] === CHECKPOINT_DIR ? CHECKPOINT_NAME.exec(parts[1]) : null;
    if (isAbsolute(p.dir) || !m) {
      throw new Error(`${f}: 'dir' must name a checkpoint of this run (${CHECKPOINT_DIR}/step-NNNNNNN), got ${JSON.stringify(p.dir)}`);
    }
    if (Number(m[1]) !== p.step) throw new Error(`${f}: 'step' is ${p.step} but 'dir' names ${p.dir}`);
    const dir = join(this.path, p.dir);
    if (!dir.startsWith(this.path + sep)) throw new Error(`${f}: 'dir' ${JSON.stringify(p.dir)} is outside the run directory`);
    if (!existsSync(dir)) throw new Error(`${f}: names checkpoint ${p.dir}, which does not exist`);
    return p;
  }

  /** Path of a file inside the last complete checkpoint (error when there is none). */
  latestFile(name: string): string {
    const p = this.latest();
    if (!p) throw new Error(`run ${this.path} has no checkpoint yet (no ${LATEST_FILE})`);
    return join(this.path, p.dir, name);
  }

  /**
   * Checks a checkpoint's state.json against the run: its step is latest.json's, its seed the
   * run's. Throws naming the file and the field.
   */
  checkState(state: unknown, latest: LatestPointer, seed: number, sfile = join(this.path, latest.dir, 'state.json')): void {
    const s = state as Record<string, unknown>;
    if (!s || typeof s !== 'object' || Array.isArray(s)) throw new Error(`${sfile}: expected a JSON object, got ${JSON.stringify(state)}`);
    if (!Number.isSafeInteger(s.step) || (s.step as number) < 0) throw new Error(`${sfile}: 'step' must be a non-negative integer, got ${JSON.stringify(s.step)}`);
    if (s.step !== latest.step) throw new Error(`${sfile}: 'step' is ${s.step} but ${this.file(LATEST_FILE)} says ${latest.step}`);
    if (s.seed !== seed) throw new Error(`${sfile}: 'seed' is ${JSON.stringify(s.seed)} but the run's (${this.file(RUN_FILE)}) is ${seed}`);
    if (s.elapsed !== undefined && !(typeof s.elapsed === 'number' && Number.isFinite(s.elapsed) && s.elapsed >= 0)) {
      throw new Error(`${sfile}: 'elapsed' must be a number of seconds >= 0, got ${JSON.stringify(s.elapsed)}`);
    }
    const calls = s.dropoutCalls;
    if (calls !== undefined) {
      if (!calls || typeof calls !== 'object' || Array.isArray(calls)) throw new Error(`${sfile}: 'dropoutCalls' must be an object, got ${JSON.stringify(calls)}`);
      for (const [k, v] of Object.entries(calls)) {
        if (!Number.isSafeInteger(v) || (v as number) < 0) throw new Error(`${sfile}: 'dropoutCalls.${k}' must be a non-negative integer, got ${JSON.stringify(v)}`);
      }
    }
  }

  /** Writes one checkpoint (file name -> bytes) atomically, points latest.json at it and prunes old
   * ones. A failed write (a full disk) removes the partial checkpoint and names the file. */
  writeCheckpoint(step: number, files: Record<string, Uint8Array | string>): string {
    const root = this.file(CHECKPOINT_DIR);
    const name = `step-${String(step).padStart(7, '0')}`;
    const tmp = join(root, `${name}.tmp-${process.pid}`);
    try {
      mkdirSync(root, { recursive: true });
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      for (const [f, data] of Object.entries(files)) writeNewFile(join(tmp, f), data, `checkpoint file (step ${step})`);
      fsyncDir(tmp);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      if (e instanceof FileWriteError) throw e;
      throw new FileWriteError(tmp, `checkpoint directory (step ${step})`, (e as NodeJS.ErrnoException).code, e);
    }
    const final = join(root, name);
    // Re-saving the same step (Ctrl-C right after a scheduled save) replaces it; latest.json still
    // names it, so for that instant the pointer dangles: it is the same step's data either way.
    rmSync(final, { recursive: true, force: true });
    renameSync(tmp, final);
    fsyncDir(root);
    const rel = `${CHECKPOINT_DIR}/${name}`;
    writeFileAtomic(this.file(LATEST_FILE), `${JSON.stringify({ step, dir: rel })}\n`, 'the checkpoint pointer');
    const old = readdirSync(root).filter((d) => CHECKPOINT_NAME.test(d)).sort();
    for (const d of old.slice(0, Math.max(0, old.length - KEEP_CHECKPOINTS))) rmSync(join(root, d), { recursive: true, force: true });
    return join(this.path, rel);
  }

  /** Appends metric records (one JSON line each); a failed append leaves the file as it was. */
  appendMetrics(records: object[]): void {
    if (records.length === 0) return;
    appendFileWhole(this.file(METRICS_FILE), records.map((r) => `${JSON.stringify(r)}\n`).join(''), 'training metrics');
  }

  /**
   * Metric records, optionally only those up to `maxStep` (a resumed run drops what came after its
   * checkpoint). A torn last line (no newline at its end: a kill or a full disk during an append)
   * is dropped and reported through `warn`; any other line that is not a JSON object with a numeric
   * step is an error naming the file and the line.
   */
  readMetrics(maxStep = Infinity, warn: (msg: string) => void = (m) => console.warn(m)): Record<string, number>[] {
    const f = this.file(METRICS_FILE);
    if (!existsSync(f)) return [];
    const text = readFileSync(f, 'utf8');
    const lines = text.split('\n');
    const out: Record<string, number>[] = [];
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i];
      if (!l.trim()) continue;
      let r: Record<string, number> | null = null;
      try {
        r = JSON.parse(l) as Record<string, number>;
      } catch {
        r = null;
      }
      const ok = r !== null && typeof r === 'object' && !Array.isArray(r) && Number.isSafeInteger(r.step);
      if (!ok) {
        if (i === lines.length - 1) {
          warn(`warning: ${f}:${i + 1}: the last line is incomplete (a write was cut short); it is ignored`);
          continue;
        }
        throw new Error(`${f}:${i + 1}: not a metrics record (a JSON object with an integer "step"): ${JSON.stringify(l.slice(0, 80))}`);
      }
      if (!(r!.step > maxStep)) out.push(r!);
    }
    return out;
  }

  /** Rewrites metrics.jsonl keeping the steps <= maxStep (atomically); a torn last line is dropped. */
  truncateMetrics(maxStep: number, warn?: (msg: string) => void): void {
    if (!existsSync(this.file(METRICS_FILE))) return;
    const keep = this.readMetrics(maxStep, warn);
    writeFileAtomic(this.file(METRICS_FILE), keep.map((r) => `${JSON.stringify(r)}\n`).join(''), 'training metrics');
  }
}

function lockedMessage(r: RunDir, h: LockHolder): string {
  return `${r.path} is in use: 'atrous train' (pid ${h.pid} on ${h.host}, since ${h.started}) is training into it. ` +
    `Wait for it to finish or stop it (kill ${h.pid}); if that process is gone, remove ${r.file(LOCK_FILE)}`;
}
