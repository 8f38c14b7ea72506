// Tensors: dense, row-major (NCHW for images), f32 or i32, living in a block of a pooled GPU
// buffer (`buffer` from byte `offset`; see src/gpu/pool.ts).
// A Tensor is a handle; several handles (views, tensors saved for backward) may share one Storage,
// which returns its block to the pool when the last handle is disposed (or has freed its storage:
// `freeStorage`, which lets the network drop an activation once consumed while its graph node
// lives on for backward).
//
// Every storage carries a memory category, which the pool counts its bytes under (the peak
// breakdown of `atrous bench`): a tensor is created under the current category (`withCategory`;
// 'activations' by default), and parameters, gradients and optimizer state are marked as such
// (`setCategory`). A storage that a graph node saved for backward counts as 'saved' while it is
// an activation or scratch.

import { engine, type Bindable } from './gpu/engine.js';
import { track, keep, type Owned } from './scope.js';
import type { BufferPool, Block } from './gpu/pool.js';
import type { GradNode } from './autograd.js';

export type DType = 'f32' | 'i32';

/** What a tensor's bytes are, for the pool's peak breakdown:
 *  - parameters: trainable parameters and module buffers (batch-norm running statistics)
 *  - gradients: parameters' accumulated `.grad`
 *  - optimizer: optimizer state (SGD's momentum buffers)
 *  - saved: activations a graph node holds for backward
 *  - activations: other forward results alive (the input batch, intermediates not saved, logits, loss)
 *  - gradients_in_flight: gradients of interior tensors during backward
 *  - scratch: temporaries inside an op (packed weights, channels-last copies, partial sums); what
 *    an op allocates is 'scratch' until it returns, and the tensors it returns or saves are then
 *    relabelled, in the peak breakdown too (the pool's provisional category)
 */
export type MemoryCategory = 'parameters' | 'gradients' | 'optimizer' | 'saved' | 'activations' | 'gradients_in_flight' | 'scratch';

export const MEMORY_CATEGORIES: readonly MemoryCategory[] = ['parameters', 'gradients', 'optimizer', 'saved', 'activations', 'gradients_in_flight', 'scratch'];

let creating: MemoryCategory = 'activations';

/** Runs fn with new tensors created under `category` (restored afterwards, also on a throw). */
export function withCategory<T>(category: MemoryCategory, fn: () => T): T {
  const prev = creating;
  creating = category;
  try {
    return fn();
  } finally {
    creating = prev;
  }
}

class Storage {
  refs = 1;
  /** Handles held by graph nodes (saved for backward). */
  savedRefs = 0;
  constructor(
    readonly block: Block,
    private pool: BufferPool,
    public base: MemoryCategory,
  ) {}
  get category(): MemoryCategory {
    return this.savedRefs > 0 && (this.base === 'activations' || this.base === 'scratch') ? 'saved' : this.base;
  }
  recount(): void {
    if (this.refs > 0) this.pool.setCategory(this.block, this.category);
  }
  unref(saved: boolean): void {
    if (saved && --this.savedRefs === 0 && this.refs > 1) this.recount();
    if (--this.refs === 0) this.pool.release(this.block);
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
  private _freed = false;
  /** This handle is a graph node's saved copy (counts the storage as 'saved'). */
  private readonly savedHandle: boolean;

  /** Internal: use `empty`, `tensor`, `zeros` or an op to make tensors. */
  constructor(
    shape: readonly number[],
    readonly dtype: DType,
    private storage: Storage,
    tracked = true,
    savedHandle = false,
  ) {
    this.savedHandle = savedHandle;
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`atrous: invalid shape ${fmtShape(shape)}`);
    }
    this.shape = Object.freeze([...shape]);
    this.size = shapeSize(shape);
    if (tracked) track(this);
  }

  /** True once dispose() has run on this handle. */
  get disposed(): boolean {
    return this._disposed;
  }

  /** True once this handle no longer holds its storage (disposed, or `freeStorage()`). */
  get storageFreed(): boolean {
    return this._freed;
  }

  /** The memory category of this tensor's storage (see MemoryCategory). */
  get category(): MemoryCategory {
    return this.storage.category;
  }

  /** Marks what this tensor's storage is (parameters, gradients, optimizer state, ...) for the
   * pool's peak breakdown; changes nothing else. Returns this. */
  setCategory(category: MemoryCategory): this {
    if (!this._freed) {
      this.storage.base = category;
      this.storage.recount();
    }
    return this;
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

  /** The GPU buffer (a pool segment shared with other tensors) that holds this tensor's values
   * from byte `offset`. Throws for a disposed or freed tensor. */
  get buffer(): GPUBuffer {
    return this.block().buffer;
  }

  /** Byte offset of this tensor's values in `buffer` (a multiple of 256). */
  get offset(): number {
    return this.block().offset;
  }

  /** The bytes reserved for this tensor in `buffer` from `offset` (at least byteLength, a multiple
   * of 256): a binding may cover them, e.g. as whole vec4s. */
  get capacity(): number {
    return this.block().size;
  }

  /** True when both tensors hold the same storage (a view or a saved copy of one another). */
  sharesStorage(other: Tensor): boolean {
    return this.block() === other.block();
  }

  private block(): Block {
    if (this._disposed) throw new Error(`atrous: use of a disposed tensor${this.label ? ` '${this.label}'` : ''} of shape ${fmtShape(this.shape)}`);
    if (this._freed) throw new Error(`atrous: use of a tensor${this.label ? ` '${this.label}'` : ''} of shape ${fmtShape(this.shape)} whose storage was freed after its last use (freeStorage)`);
    return this.storage.block;
  }

  /** Releases this handle; the buffer returns to the pool when no handle or saved copy uses it. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    // A tensor that will never be backpropagated through frees what its op saved.
    this.node?.release();
    this.node = null;
    this.freeStorage();
  }

  /**
   * Gives up this handle's storage now (the buffer returns to the pool when no other handle or
   * saved copy uses it) but keeps the tensor's place in the graph: its node, and what that node
   * saved, stay for backward(), which needs only the shape of an interior tensor. The handle is
   * still disposed as usual (by its scope or dispose()), which frees the node if backward never
   * ran. Reading the tensor afterwards throws. The network calls it on each activation once the
   * next op has consumed it (an activation that a backward rule needs is held by that node).
   */
  freeStorage(): void {
    if (this._freed) return;
    this._freed = true;
    this.storage.unref(this.savedHandle);
  }

  /** A new handle on the same storage, outside any scope, with the same label. With `saved` (autograd saving a tensor
   * for backward) the storage counts as 'saved' while the handle lives. */
  ref(saved = false): Tensor {
    if (this._disposed || this._freed) throw new Error(`atrous: cannot reference a ${this._disposed ? 'disposed' : 'freed'} tensor of shape ${fmtShape(this.shape)}`);
    this.storage.refs++;
    if (saved && ++this.storage.savedRefs === 1) this.storage.recount();
    const t = new Tensor(this.shape, this.dtype, this.storage, false, saved);
    // The same label, so that errors in backward passes name the tensor.
    if (this.label !== undefined) t.label = this.label;
    return t;
  }

  /** A view with another shape of the same size (shares storage; no autograd: see ops.reshape). */
  view(shape: readonly number[]): Tensor {
    if (shapeSize(shape) !== this.size) throw new Error(`atrous: cannot view ${fmtShape(this.shape)} as ${fmtShape(shape)}`);
    if (this._disposed || this._freed) throw new Error(`atrous: cannot view a ${this._disposed ? 'disposed' : 'freed'} tensor`);
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
  return new Tensor(shape, dtype, new Storage(pool.acquire(bytes, () => `a tensor ${fmtShape(shape)} (${dtype})`, creating, creating === 'scratch'), pool, creating));
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
  const t = tensor(data, shape, 'f32').setCategory('parameters');
  t.requiresGrad = true;
  return keep(t);
}
