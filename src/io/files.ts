// Writing files so that a failure names the file and what was being written, and leaves no partial
// output behind. Node only (the browser bundle never imports this module).
//
// Every write goes to a temporary sibling `NAME.tmp-PID`, is fsynced and renamed into place; when
// any step fails (a full disk: ENOSPC, a quota, a read-only mount), the temporary is removed and
// the error says which file and what it held: "cannot write checkpoint file /runs/a/...: no space
// left on device (ENOSPC)". Leftover temporaries of a killed writer carry its PID, so the next
// start can tell them from its own (`removeStaleTemporaries`).
//
// For tests, ATROUS_FAULT_ENOSPC=SUBSTRING makes every write to a path containing SUBSTRING fail
// half-way with ENOSPC, as a full disk does (a child process can be given it too).

import { closeSync, fsyncSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeSync, ftruncateSync, fstatSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** What the system calls an error code, in words (the rest keep Node's message). */
const CODES: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EIO: 'input/output error',
  ENOENT: 'no such file or directory',
  EISDIR: 'is a directory',
  ENOTDIR: 'a path component is not a directory',
  EMFILE: 'too many open files',
};

/** An I/O error that names the path and what was being written. `code` is the system's (ENOSPC...). */
export class FileWriteError extends Error {
  constructor(
    readonly path: string,
    readonly what: string,
    readonly code: string | undefined,
    cause: unknown,
  ) {
    const c = (cause as NodeJS.ErrnoException)?.code;
    const reason = c && CODES[c] ? `${CODES[c]} (${c})` : ((cause as Error)?.message ?? String(cause));
    super(`cannot write ${what} ${path}: ${reason}`);
  }
}

function faultFor(path: string): string | null {
  const f = process.env.ATROUS_FAULT_ENOSPC;
  return f && path.includes(f) ? f : null;
}

function enospc(syscall: string): NodeJS.ErrnoException {
  const e = new Error(`ENOSPC: no space left on device, ${syscall}`) as NodeJS.ErrnoException;
  e.code = 'ENOSPC';
  e.syscall = syscall;
  return e;
}

/** Writes all of `data` to `path` (created or truncated) and fsyncs it; raw errors. */
function writeAllSynced(path: string, data: Uint8Array | string): void {
  const fd = openSync(path, 'w');
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    if (faultFor(path)) {
      writeSync(fd, bytes, 0, bytes.byteLength >> 1);
      throw enospc('write');
    }
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Writes a file that does not exist yet (inside a temporary directory): fsynced; on failure the
 * partial file is removed and the error names it. */
export function writeNewFile(path: string, data: Uint8Array | string, what: string): void {
  try {
    writeAllSynced(path, data);
  } catch (e) {
    rmSync(path, { force: true });
    throw new FileWriteError(path, what, (e as NodeJS.ErrnoException).code, e);
  }
}

/** Writes bytes to `path` atomically: a temporary sibling, fsync, rename, fsync of the directory.
 * On failure nothing is left but what was there before, and the error names the file. */
export function writeFileAtomic(path: string, data: Uint8Array | string, what = 'file'): void {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    writeAllSynced(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new FileWriteError(path, what, (e as NodeJS.ErrnoException).code, e);
  }
  fsyncDir(join(path, '..'));
}

/** Appends text to a file; a failed append is cut back to the file's previous length, so a full
 * disk never leaves a torn last line. */
export function appendFileWhole(path: string, text: string, what: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'a');
  } catch (e) {
    throw new FileWriteError(path, what, (e as NodeJS.ErrnoException).code, e);
  }
  let size = 0;
  try {
    size = fstatSync(fd).size;
    const bytes = Buffer.from(text);
    if (faultFor(path)) {
      writeSync(fd, bytes, 0, bytes.byteLength >> 1);
      throw enospc('write');
    }
    let off = 0;
    while (off < bytes.byteLength) off += writeSync(fd, bytes, off, bytes.byteLength - off);
  } catch (e) {
    try {
      ftruncateSync(fd, size);
    } catch {
      /* the torn tail is then repaired when the file is next read */
    }
    throw new FileWriteError(path, what, (e as NodeJS.ErrnoException).code, e);
  } finally {
    closeSync(fd);
  }
}

/** fsync of a directory makes a rename in it durable; some filesystems refuse it, which is harmless. */
export function fsyncDir(dir: string): void {
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

/** Whether a process with this PID runs on this machine (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process stays a zombie until its parent reaps it, and signal 0 still reaches a zombie:
  // on Linux its state in /proc/PID/stat is 'Z' (the field after the parenthesised command name).
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // no /proc (macOS): signal 0 is all there is
  }
}

export const HOST = hostname();

/**
 * Removes the `*.tmp-PID` files and directories in `dir` left by writers that no longer run (a
 * kill during a write). Returns the names removed. Temporaries of this process and of live
 * processes are kept.
 */
export function removeStaleTemporaries(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = /\.tmp-(\d+)$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    rmSync(join(dir, n), { recursive: true, force: true });
    removed.push(n);
  }
  return removed;
}
