// Tensors: dense, row-major (NCHW for images), f32 or i32, living in a pooled GPU buffer.
// A Tensor is a handle; several handles (views, tensors saved for backward) may share one Storage,
// which returns its buffer to the pool when the last handle is disposed.

import { engine, type Bindable } from './gpu/engine.js';
import { track, keep, type Owned } from './scope.js';
import type { BufferPool } from './gpu/pool.js';
import type { GradNode } from './autograd.js';

export type DType = 'f32' | 'i32';

class Storage {
  refs = 1;
  constructor(
    readonly buffer: GPUBuffer,
    private pool: BufferPool,
  ) {}
  unref(): void {
    if (--this.refs === 0) this.pool.release(this.buffer);
  }
}

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export const fmtShape = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

export class Tensor implements Bindable, Owned {
  readonly shape: readonly number[];
  readonly size: number;
  /** Set on tensors that need a gradient: parameters, and results of ops on them. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf tensor after `backward()`. */
  grad: Tensor | null = null;
  /** The op that produced this tensor (null for leaves and after backward has used it). */
  node: GradNode | null = null;
  label?: string;
  private _disposed = false;

  /** Internal: use `empty`, `tensor`, `zeros` or an op to make tensors. */
  constructor(
    shape: readonly number[],
    readonly dtype: DType,
    private storage: Storage,
    tracked = true,
  ) {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`atrous: invalid shape ${fmtShape(shape)}`);
    }
    this.shape = Object.freeze([...shape]);
    this.size = shapeSize(shape);
    if (tracked) track(this);
  }

  get disposed(): boolean {
    return this._disposed;
  }

  /** True when another handle (a view, a saved copy) shares this tensor's storage. */
  get shared(): boolean {
    return this.storage.refs > 1;
  }

  get rank(): number {
    return this.shape.length;
  }

  get byteLength(): number {
    return this.size * 4;
  }

  get buffer(): GPUBuffer {
    if (this._disposed) throw new Error(`atrous: use of a disposed tensor${this.label ? ` '${this.label}'` : ''} of shape ${fmtShape(this.shape)}`);
    return this.storage.buffer;
  }

  /** Releases this handle; the buffer returns to the pool when no handle or saved copy uses it. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    // A tensor that will never be backpropagated through frees what its op saved.
    this.node?.release();
    this.node = null;
    this.storage.unref();
  }

  /** A new handle on the same storage, outside any scope (autograd uses it to save tensors), with
   * the same label (so that errors in backward passes name the tensor). */
  ref(): Tensor {
    if (this._disposed) throw new Error('atrous: cannot reference a disposed tensor');
    this.storage.refs++;
    const t = new Tensor(this.shape, this.dtype, this.storage, false);
    if (this.label !== undefined) t.label = this.label;
    return t;
  }

  /** A view with another shape of the same size (shares storage; no autograd: see ops.reshape). */
  view(shape: readonly number[]): Tensor {
    if (shapeSize(shape) !== this.size) throw new Error(`atrous: cannot view ${fmtShape(this.shape)} as ${fmtShape(shape)}`);
    if (this._disposed) throw new Error('atrous: cannot view a disposed tensor');
    this.storage.refs++;
    return new Tensor(shape, this.dtype, this.storage);
  }

  /** Reads the values back, all of them or the first `count` (submits pending GPU work). */
  async data(count = this.size): Promise<Float32Array | Int32Array> {
    if (!Number.isInteger(count) || count < 0 || count > this.size) throw new Error(`atrous: data(${count}) on a tensor of ${this.size} values`);
    const bytes = await engine().read(this, count * 4);
    return this.dtype === 'f32' ? new Float32Array(bytes) : new Int32Array(bytes);
  }

  /** Overwrites this tensor's values with `data` (exactly `size` values; f32 or i32 as the tensor),
   * in order with the GPU work recorded before. */
  write(data: Float32Array | Int32Array): void {
    if (data.length !== this.size) throw new Error(`atrous: write(): ${data.length} values for a tensor of ${this.size} (${fmtShape(this.shape)})`);
    if ((data instanceof Float32Array) !== (this.dtype === 'f32')) throw new Error(`atrous: write(): ${data.constructor.name} into an ${this.dtype} tensor`);
    if (this.size > 0) engine().write(this, data);
  }

  /** Copies `count` values of this tensor, from value `from`, into `dst` at value `at`, on the GPU
   * in order with the recorded kernels (no autograd). */
  copyTo(dst: Tensor, count = this.size, from = 0, at = 0): void {
    if (dst.dtype !== this.dtype) throw new Error(`atrous: copyTo(): ${this.dtype} into ${dst.dtype}`);
    if (!(count >= 0 && from >= 0 && at >= 0 && from + count <= this.size && at + count <= dst.size)) {
      throw new Error(`atrous: copyTo(): values ${from}..${from + count} of ${fmtShape(this.shape)} into ${at}..${at + count} of ${fmtShape(dst.shape)}`);
    }
    if (count > 0) engine().copy(this, dst, count * 4, from * 4, at * 4);
  }

  async float32(): Promise<Float32Array> {
    if (this.dtype !== 'f32') throw new Error(`atrous: float32() on an ${this.dtype} tensor`);
    return (await this.data()) as Float32Array;
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`atrous: item() needs a one-element tensor, got ${fmtShape(this.shape)}`);
    return (await this.data())[0];
  }

  toString(): string {
    return `Tensor(${fmtShape(this.shape)}, ${this.dtype}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}

/** An uninitialised tensor. */
export function empty(shape: readonly number[], dtype: DType = 'f32'): Tensor {
  const bytes = shapeSize(shape) * 4;
  const pool = engine().pool;
  return new Tensor(shape, dtype, new Storage(pool.acquire(bytes, () => `a tensor ${fmtShape(shape)} (${dtype})`), pool));
}

export type TensorData = Float32Array | Int32Array | Uint8Array | number[];

/** Uploads data to a new tensor. Integer typed arrays default to i32, everything else to f32. */
export function tensor(data: TensorData, shape: readonly number[], dtype?: DType): Tensor {
  const dt: DType = dtype ?? (data instanceof Int32Array || data instanceof Uint8Array ? 'i32' : 'f32');
  const n = shapeSize(shape);
  if (data.length !== n) throw new Error(`atrous: tensor(): ${data.length} values do not fill shape ${fmtShape(shape)} (${n} elements)`);
  const t = empty(shape, dt);
  const arr = dt === 'f32' ? Float32Array.from(data as ArrayLike<number>) : Int32Array.from(data as ArrayLike<number>);
  if (n > 0) engine().write(t, arr);
  return t;
}

/** A trainable leaf tensor (requiresGrad, outside every scope: dispose it by hand). */
export function parameter(data: TensorData, shape: readonly number[]): Tensor {
  const t = tensor(data, shape, 'f32');
  t.requiresGrad = true;
  return keep(t);
}
