// The Module base: a tree of named children, each owning named parameters and buffers, with
// torchvision's state-dict names (`backbone.layer4.2.conv2.weight`) as the public weight format.
//
// A module is built "meta": every parameter and buffer is a shape plus an initialiser, and no GPU
// memory exists until `materialize(seed)` or `loadStateDict(...)`. That is what lets the full
// ResNet-101 DeepLabv3 report its parameter count, and trace its shapes and FLOPs, without a
// device. Forward code is written once against `Ops<T>`: `gpuOps` runs the engine's ops on
// Tensors, `ShapeTracer` propagates shapes and counts convolution FLOPs.

import { Tensor, tensor, parameter, fmtShape, withCategory } from '../tensor.js';
import { keep } from '../scope.js';
import * as ops from '../ops/index.js';
import { convOutputSize } from '../ops/conv2d/geometry.js';
import { Mulberry32, seedFor, type Init } from './init.js';

/** Anything with a shape: a Tensor, or a shape-only stand-in while tracing. */
export interface Shaped {
  readonly shape: readonly number[];
}

export interface ConvArgs {
  stride: number;
  padding: number;
  dilation: number;
}

/** The operations a module's forward uses, over real tensors or shape-only stand-ins. */
export interface Ops<T extends Shaped> {
  /** True for the shape tracer: no GPU work, no state updates. */
  readonly tracing: boolean;
  param(m: Module, name: string): T;
  conv2d(x: T, w: T, b: T | null, a: ConvArgs): T;
  batchNorm(x: T, w: T, b: T, rm: T, rv: T, o: ops.BatchNormOptions): T;
  relu(x: T): T;
  add(a: T, b: T): T;
  cat(xs: T[]): T;
  /** Bilinear, align_corners false (torchvision's DeepLabv3 everywhere). */
  resize(x: T, size: [number, number]): T;
  globalAvgPool(x: T): T;
  maxPool2d(x: T, o: { kernelSize: number; stride: number; padding: number }): T;
  dropout(x: T, o: ops.DropoutOptions): T;
  /** Frees an intermediate as soon as its last consumer has run (its graph node stays for
   * backward; see gpuOps). The caller must not use it afterwards. */
  release(t: T): void;
}

/** Runs one op with what it allocates counted as 'scratch' until it returns; its result is an
 * activation (or 'saved', once a node holds it). */
function op(fn: () => Tensor): Tensor {
  const y = withCategory('scratch', fn);
  // A result that its own node saved (ReLU's) counts as 'saved' until that node is freed.
  return y.category === 'scratch' || y.category === 'saved' ? y.setCategory('activations') : y;
}

/** The engine's ops. `release` frees an intermediate as soon as the next op has consumed it: under
 * noGrad (inference) it disposes it, so large inputs keep only a few activations alive; while
 * recording a graph it frees the storage but keeps the tensor's node (`Tensor.freeStorage`), so
 * an activation lives on only where a backward rule saved it (ReLU its output, batch norm and
 * conv2d their input), as with PyTorch's in-place ReLU; the caller's `tidy` scope disposes the
 * handles (and any graph backward never ran through). */
export const gpuOps: Ops<Tensor> = {
  tracing: false,
  param: (m, name) => m.tensorOf(name),
  conv2d: (x, w, b, a) => op(() => ops.conv2d(x, w, b, a)),
  batchNorm: (x, w, b, rm, rv, o) => op(() => ops.batchNorm(x, w, b, rm, rv, o)),
  relu: (x) => op(() => ops.relu(x)),
  add: (a, b) => op(() => ops.add(a, b)),
  cat: (xs) => op(() => ops.cat(xs, 1)),
  resize: (x, size) => op(() => ops.interpolate(x, { size, mode: 'bilinear', alignCorners: false })),
  globalAvgPool: (x) => op(() => ops.adaptiveAvgPool2d(x, 1)),
  maxPool2d: (x, o) => op(() => ops.maxPool2d(x, o)),
  dropout: (x, o) => op(() => ops.dropout(x, o)),
  release: (t) => {
    if (t.node) t.freeStorage();
    else t.dispose();
  },
};

export interface Shape extends Shaped {
  readonly shape: number[];
}

/** Shape propagation with the same output-size formulas as the ops, and a FLOP count: 2 × the
 * multiply-adds of every convolution (the convention of docs/software-gpu.md, "Counting work"; element-wise ops, BN
 * and resizes are a few percent and are not counted). */
export class ShapeTracer implements Ops<Shape> {
  readonly tracing = true;
  flops = 0;
  convs = 0;
  /** Largest single activation seen, in elements. */
  maxActivation = 0;

  private out(shape: number[]): Shape {
    this.maxActivation = Math.max(this.maxActivation, shape.reduce((a, b) => a * b, 1));
    return { shape };
  }
  param(m: Module, name: string): Shape {
    return { shape: [...m.shapeOf(name)] };
  }
  conv2d(x: Shape, w: Shape, _b: Shape | null, a: ConvArgs): Shape {
    const [n, cin, h, wd] = x.shape;
    const [cout, wcin, kh, kw] = w.shape;
    if (cin !== wcin) throw new Error(`atrous: trace: conv2d input ${fmtShape(x.shape)} does not match weight ${fmtShape(w.shape)}`);
    const oh = convOutputSize(h, kh, a.stride, a.padding, a.dilation);
    const ow = convOutputSize(wd, kw, a.stride, a.padding, a.dilation);
    if (oh < 1 || ow < 1) throw new Error(`atrous: trace: conv2d input ${fmtShape(x.shape)} is too small for weight ${fmtShape(w.shape)}`);
    this.flops += 2 * n * cout * oh * ow * cin * kh * kw;
    this.convs++;
    return this.out([n, cout, oh, ow]);
  }
  batchNorm(x: Shape): Shape {
    return this.out([...x.shape]);
  }
  relu(x: Shape): Shape {
    return x;
  }
  add(a: Shape, b: Shape): Shape {
    if (a.shape.join() !== b.shape.join()) throw new Error(`atrous: trace: add ${fmtShape(a.shape)} + ${fmtShape(b.shape)}`);
    return this.out([...a.shape]);
  }
  cat(xs: Shape[]): Shape {
    const [n, , h, w] = xs[0].shape;
    return this.out([n, xs.reduce((s, x) => s + x.shape[1], 0), h, w]);
  }
  resize(x: Shape, size: [number, number]): Shape {
    return this.out([x.shape[0], x.shape[1], size[0], size[1]]);
  }
  globalAvgPool(x: Shape): Shape {
    return this.out([x.shape[0], x.shape[1], 1, 1]);
  }
  maxPool2d(x: Shape, o: { kernelSize: number; stride: number; padding: number }): Shape {
    const f = (s: number) => Math.floor((s + 2 * o.padding - o.kernelSize) / o.stride) + 1;
    return this.out([x.shape[0], x.shape[1], f(x.shape[2]), f(x.shape[3])]);
  }
  dropout(x: Shape): Shape {
    return x;
  }
  release(): void {}
}

/** A state-dict entry on the CPU. Integer buffers (num_batches_tracked) are Int32Array. */
export interface HostTensor {
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface LoadOptions {
  /** false: missing and unexpected keys are reported, not errors (shapes must still match). */
  strict?: boolean;
  /** Keys allowed to be missing or unexpected even when strict, as patterns where `*` matches
   * anything (e.g. `aux_classifier.*` to load torchvision's aux weights into a model without one). */
  ignore?: string[];
  /** Seed for initialising parameters that a lenient load leaves missing. */
  seed?: number;
}

export interface LoadReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
}

type Slot =
  | { kind: 'parameter' | 'buffer'; shape: number[]; init: Init; tensor: Tensor | null }
  | { kind: 'counter'; shape: number[]; value: number };

/** Patterns with `*` wildcards, anchored at both ends. */
export function keyMatcher(patterns: readonly string[]): (key: string) => boolean {
  const res = patterns.map((p) => new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`));
  return (key) => res.some((r) => r.test(key));
}

export abstract class Module {
  /** Training mode (batch statistics in BN, dropout on); see train()/eval(). */
  training = true;
  private readonly slots = new Map<string, Slot>();
  private readonly children = new Map<string, Module>();

  protected addParameter(name: string, shape: number[], init: Init): void {
    this.slots.set(name, { kind: 'parameter', shape, init, tensor: null });
  }
  protected addBuffer(name: string, shape: number[], init: Init): void {
    this.slots.set(name, { kind: 'buffer', shape, init, tensor: null });
  }
  /** An integer scalar kept on the CPU (num_batches_tracked): no GPU buffer, no readback. */
  protected addCounter(name: string): void {
    this.slots.set(name, { kind: 'counter', shape: [], value: 0 });
  }
  protected addModule<M extends Module>(name: string, m: M): M {
    this.children.set(name, m);
    return m;
  }

  child(name: string): Module | undefined {
    return this.children.get(name);
  }

  /** A local parameter or buffer's tensor (throws before materialize/loadStateDict). */
  tensorOf(name: string): Tensor {
    const s = this.slots.get(name);
    if (!s || s.kind === 'counter') throw new Error(`atrous: ${this.constructor.name} has no tensor '${name}'`);
    if (!s.tensor) {
      throw new Error(`atrous: ${this.constructor.name}.${name} ${fmtShape(s.shape)} has no weights yet: call model.materialize(seed) or loadStateDict() first`);
    }
    return s.tensor;
  }
  shapeOf(name: string): readonly number[] {
    const s = this.slots.get(name);
    if (!s) throw new Error(`atrous: ${this.constructor.name} has no parameter or buffer '${name}'`);
    return s.shape;
  }
  protected bumpCounter(name: string): void {
    const s = this.slots.get(name);
    if (s?.kind === 'counter') s.value++;
  }

  /** Every module of the tree with its dotted name ('' for this one), parents first. */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, m] of this.children) yield* m.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  /** Own slots (parameters, then buffers, in registration order) before children's, as PyTorch's state_dict. */
  private *namedSlots(prefix = ''): Generator<[string, Slot]> {
    for (const [name, s] of this.slots) yield [prefix ? `${prefix}.${name}` : name, s];
    for (const [name, m] of this.children) yield* m.namedSlots(prefix ? `${prefix}.${name}` : name);
  }

  /** Counter values (num_batches_tracked) by name; `setCounters` puts a snapshot back. */
  counters(): Map<string, number> {
    return new Map([...this.namedSlots()].filter(([, s]) => s.kind === 'counter').map(([n, s]) => [n, (s as { value: number }).value]));
  }

  setCounters(values: Map<string, number>): void {
    for (const [n, s] of this.namedSlots()) if (s.kind === 'counter' && values.has(n)) (s as { value: number }).value = values.get(n)!;
  }

  /** Parameter names and shapes, without touching the GPU. */
  namedParameterShapes(): [string, number[]][] {
    return [...this.namedSlots()].filter(([, s]) => s.kind === 'parameter').map(([n, s]) => [n, [...s.shape]]);
  }
  /** State-dict names and shapes (parameters, buffers, counters), without touching the GPU. */
  stateDictShapes(): Map<string, number[]> {
    return new Map([...this.namedSlots()].map(([n, s]) => [n, [...s.shape]]));
  }
  /** Number of parameter elements (torch's sum(p.numel() for p in model.parameters())). */
  numParameters(): number {
    let n = 0;
    for (const [, shape] of this.namedParameterShapes()) n += shape.reduce((a, b) => a * b, 1);
    return n;
  }

  get materialized(): boolean {
    for (const [, s] of this.namedSlots()) if (s.kind !== 'counter' && !s.tensor) return false;
    return true;
  }

  /** Allocates and initialises every parameter and buffer that has no tensor yet. Values are a
   * function of (seed, name) only. Returns this. */
  materialize(seed = 0): this {
    for (const [name, s] of this.namedSlots()) {
      if (s.kind === 'counter' || s.tensor) continue;
      s.tensor = createSlotTensor(name, s, s.init(s.shape, new Mulberry32(seedFor(seed, name))));
    }
    return this;
  }

  namedParameters(): [string, Tensor][] {
    return [...this.namedSlots()].filter(([, s]) => s.kind === 'parameter').map(([n, s]) => [n, slotTensor(n, s)]);
  }
  /** Every parameter, as torch's model.parameters() (frozen ones included). */
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  /** The parameters that currently require a gradient: what an optimizer should update. */
  trainableParameters(): Tensor[] {
    return this.parameters().filter((t) => t.requiresGrad);
  }
  namedBuffers(): [string, Tensor][] {
    return [...this.namedSlots()].filter(([, s]) => s.kind === 'buffer').map(([n, s]) => [n, slotTensor(n, s)]);
  }

  /** Live handles on the state: tensors for parameters/buffers, numbers for counters. */
  stateDict(): Map<string, Tensor | number> {
    return new Map([...this.namedSlots()].map(([n, s]) => [n, s.kind === 'counter' ? s.value : slotTensor(n, s)]));
  }

  /** The whole state read back to the CPU, in state-dict order. */
  async readStateDict(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    for (const [n, s] of this.namedSlots()) {
      if (s.kind === 'counter') out.set(n, { shape: [], data: Int32Array.of(s.value) });
      else out.set(n, { shape: [...s.shape], data: await slotTensor(n, s).float32() });
    }
    return out;
  }

  /**
   * Copies a state dict into this module. Every check runs before anything is written: an
   * unexpected key, a missing key (both unless lenient or ignored) or a shape mismatch (always)
   * throws an error naming the first offending key with both shapes. Slots without a tensor yet
   * are allocated; with strict: false, missing ones are initialised from `seed`.
   */
  loadStateDict(state: Map<string, HostTensor> | Record<string, HostTensor>, opts: LoadOptions = {}): LoadReport {
    const entries = state instanceof Map ? state : new Map(Object.entries(state));
    const strict = opts.strict ?? true;
    const ignored = keyMatcher(opts.ignore ?? []);
    const slots = new Map(this.namedSlots());
    const unexpected = [...entries.keys()].filter((k) => !slots.has(k));
    const missing = [...slots.keys()].filter((k) => !entries.has(k));
    if (strict) {
      const u = unexpected.find((k) => !ignored(k));
      if (u !== undefined) {
        throw new Error(`atrous: loadStateDict: unexpected key '${u}' ${fmtShape(entries.get(u)!.shape)} (not in this model; ${unexpected.length} unexpected in all)` +
          ` — pass ignore: ['${u.split('.')[0]}.*'] or strict: false to skip such keys`);
      }
      const m = missing.find((k) => !ignored(k));
      if (m !== undefined) {
        throw new Error(`atrous: loadStateDict: missing key '${m}' (model expects ${fmtShape(slots.get(m)!.shape)}; ${missing.length} missing in all)`);
      }
    }
    for (const [k, v] of entries) {
      const s = slots.get(k);
      if (!s) continue;
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (v.shape.length !== s.shape.length || v.shape.some((d, i) => d !== s.shape[i])) {
        throw new Error(`atrous: loadStateDict: shape mismatch for '${k}': checkpoint ${fmtShape(v.shape)}, model ${fmtShape(s.shape)}`);
      }
      if (v.data.length !== n) throw new Error(`atrous: loadStateDict: '${k}' ${fmtShape(v.shape)} holds ${v.data.length} values, expected ${n}`);
      if (s.kind === 'counter' ? !(v.data instanceof Int32Array) : !(v.data instanceof Float32Array)) {
        throw new Error(`atrous: loadStateDict: '${k}' holds ${v.data instanceof Int32Array ? 'integers' : 'floats'}, but the model's ${s.kind === 'counter' ? 'batch count is an integer (I64)' : `${s.kind} is floating point (F32, F16, BF16 or F64)`}`);
      }
    }
    const loaded: string[] = [];
    for (const [k, v] of entries) {
      const s = slots.get(k);
      if (!s) continue;
      loaded.push(k);
      if (s.kind === 'counter') {
        s.value = Math.round(v.data[0]);
        continue;
      }
      const data = v.data instanceof Float32Array ? v.data : Float32Array.from(v.data);
      if (s.tensor) s.tensor.write(data);
      else s.tensor = createSlotTensor(k, s, data);
    }
    for (const k of missing) {
      const s = slots.get(k)!;
      if (s.kind !== 'counter' && !s.tensor) s.tensor = createSlotTensor(k, s, s.init(s.shape, new Mulberry32(seedFor(opts.seed ?? 0, k))));
    }
    return { loaded, missing, unexpected };
  }

  /** Sets training mode on this module and every descendant. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  /** Frees every parameter, buffer and gradient; the module returns to the meta state. */
  dispose(): void {
    for (const [, s] of this.namedSlots()) {
      if (s.kind === 'counter' || !s.tensor) continue;
      s.tensor.grad?.dispose();
      s.tensor.grad = null;
      s.tensor.dispose();
      s.tensor = null;
    }
  }
}

function createSlotTensor(name: string, s: Slot & { kind: 'parameter' | 'buffer' }, data: Float32Array): Tensor {
  const t = s.kind === 'parameter' ? parameter(data, s.shape) : keep(tensor(data, s.shape, 'f32')).setCategory('parameters');
  t.label = name;
  return t;
}

function slotTensor(name: string, s: Slot): Tensor {
  if (s.kind === 'counter') throw new Error(`atrous: '${name}' is a counter, not a tensor`);
  if (!s.tensor) throw new Error(`atrous: '${name}' ${fmtShape(s.shape)} has no weights yet: call materialize(seed) or loadStateDict() first`);
  return s.tensor;
}

/** A module with one input and one output, written once for the GPU and the shape tracer. */
export abstract class Layer extends Module {
  abstract run<T extends Shaped>(x: T, F: Ops<T>): T;
  forward(x: Tensor): Tensor {
    return this.run(x, gpuOps);
  }
}
