// Argument checks shared by the ops. Every check runs before any GPU work is recorded and throws
// a message naming the op, the argument and the shapes involved.

import { Tensor, fmtShape, type DType } from '../tensor.js';

export class OpError extends Error {
  constructor(op: string, msg: string) {
    super(`atrous: ${op}: ${msg}`);
    this.name = 'OpError';
  }
}

export function checkTensor(op: string, arg: string, t: unknown, opts: { rank?: number; dtype?: DType } = {}): Tensor {
  if (!(t instanceof Tensor)) throw new OpError(op, `argument '${arg}' must be a Tensor, got ${t === null ? 'null' : typeof t}`);
  if (t.disposed) throw new OpError(op, `argument '${arg}' (shape ${fmtShape(t.shape)}) was disposed`);
  // Refused before the op allocates anything (its output would leak outside a scope).
  if (t.storageFreed) throw new OpError(op, `argument '${arg}' (shape ${fmtShape(t.shape)}) was freed (freeStorage) after its last use`);
  if (opts.rank !== undefined && t.rank !== opts.rank) {
    throw new OpError(op, `argument '${arg}' must have rank ${opts.rank}${opts.rank === 4 ? ' [n, c, h, w]' : ''}, got shape ${fmtShape(t.shape)}`);
  }
  const dtype = opts.dtype ?? 'f32';
  if (t.dtype !== dtype) throw new OpError(op, `argument '${arg}' must be ${dtype}, got ${t.dtype} (shape ${fmtShape(t.shape)})`);
  return t;
}

export function checkSameShape(op: string, argA: string, a: Tensor, argB: string, b: Tensor): void {
  if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new OpError(op, `'${argA}' ${fmtShape(a.shape)} and '${argB}' ${fmtShape(b.shape)} must have the same shape`);
  }
}

/** Accepts an integer or an [h, w] pair, as torch.nn.functional does. */
export function pair(op: string, arg: string, v: number | readonly number[] | undefined, dflt: number, min = 0): [number, number] {
  const p: number[] = v === undefined ? [dflt, dflt] : typeof v === 'number' ? [v, v] : [...v];
  if (p.length !== 2 || p.some((x) => !Number.isInteger(x) || x < min)) {
    throw new OpError(op, `'${arg}' must be an integer >= ${min} or a pair of them, got ${JSON.stringify(v)}`);
  }
  return [p[0], p[1]];
}

export function checkNumber(op: string, arg: string, v: unknown, opts: { min?: number; max?: number; integer?: boolean } = {}): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    const range = [opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : ''].filter(Boolean).join(' and ');
    throw new OpError(op, `'${arg}' must be ${opts.integer ? 'an integer' : 'a finite number'}${range ? ` ${range}` : ''}, got ${JSON.stringify(v)}`);
  }
  return v;
}
