// The kernel runner. Every GPU operation of the library goes through one Engine:
// - pipelines are compiled once per (shader, entry point, override constants) and cached;
// - dispatches are recorded into one open compute pass of one command encoder and submitted every
//   `maxDispatchesPerSubmit` dispatches, or when a result is read back (few submits per step);
// - uniform parameter buffers are cached by content, so a training loop re-uses them every step;
// - tensors are blocks of a few large storage buffers from a caching pool (src/gpu/pool.ts); a
//   released block serves the next request at once (uploads flush the recorded work first).

import { SHADERS, PARAM_LAYOUTS, type ShaderName, type ShaderParams } from './shaders.generated.js';
import { BufferPool, type Block, type PoolStats } from './pool.js';
import { openDevice, adapterName, type DeviceOptions, type GPUContext, type EngineLimits, type AdapterInfo } from './device.js';

export type { ShaderName, ShaderParams } from './shaders.generated.js';

/** Anything that can be bound as a storage buffer: a Tensor (a block of a pooled buffer), or a
 * slice of one: `byteLength` bytes from byte `offset` of `buffer` (a multiple of
 * `Engine.bindingAlignment`; see `Engine.slice`). Bindings, copies, uploads and reads all add
 * `offset`. */
export interface Bindable {
  readonly buffer: GPUBuffer;
  readonly byteLength: number;
  readonly label?: string;
  readonly offset?: number;
}

export interface KernelCall<S extends ShaderName = ShaderName> {
  /** Shader file name in shaders/ without `.wgsl`, e.g. 'conv2d.fwd'. */
  shader: S;
  entry?: string;
  /** Values of WGSL `override` constants (specialisation without string templating). */
  constants?: Record<string, number>;
  /** The shader's `struct Params` by field name (its type is generated from the WGSL by
   * scripts/embed-shaders.mjs), written to binding 0 as a `var<uniform>` in struct order, each
   * field as its WGSL type; omitted for shaders without one. */
  params?: ShaderParams[S];
  /** Storage buffers, bound at 1, 2, ... in order (binding 0 when there are no params). */
  bindings: Bindable[];
  /** Workgroup counts; use `grid1d` for flat element-wise kernels. */
  workgroups: [number, number?, number?];
  /** For params that change every call (a learning rate): the launch's own uniform buffer, keyed
   * by (shader, entry, this binding's buffer and offset), rewritten in place with `queue.writeBuffer` when the values
   * change, so no buffer and no bind group is created per step. Without it, uniform buffers are
   * cached by content (right for params that repeat, such as shapes). */
  uniformSlot?: Bindable;
}

/** A pipeline as the engine caches it: (shader, entry point, override constants). */
export interface PipelineSpec {
  shader: string;
  entry?: string;
  constants?: Record<string, number>;
}

const pipelineKey = (shader: string, entry = 'main', constants?: Record<string, number>): string =>
  constants ? `${shader}:${entry}:${JSON.stringify(constants)}` : `${shader}:${entry}`;

export interface EngineStats extends PoolStats {
  pipelines: number;
  submits: number;
  dispatches: number;
  uniformBuffers: number;
  /** Uniform buffers created since the engine was made (a growing number in a steady loop means churn). */
  uniformBuffersCreated: number;
  /** Bind groups created since the engine was made (one per dispatch unless cached). */
  bindGroups: number;
}

let current: Engine | null = null;
/** Set when the current engine was destroyed (so engine() can say so instead of "not yet"). */
let destroyedEngine = false;

let starting: Promise<Engine> | null = null;

/** Opens the device and makes it the engine every op uses. Safe to call more than once. Kernel
 * preparation (variant choices, autotune) is not the engine's: the library's `init()` (src/init.ts)
 * calls this and then prepares the ops' kernels. */
export async function initEngine(opts: DeviceOptions = {}): Promise<Engine> {
  if (starting) return starting;
  if (current) return current;
  starting = (async () => {
    current = new Engine(await openDevice(opts));
    destroyedEngine = false;
    return current;
  })();
  try {
    return await starting;
  } finally {
    starting = null;
  }
}

/** Replaces the current engine (tests use this to lower limits). The old one is destroyed. */
export async function reinitEngine(opts: DeviceOptions = {}): Promise<Engine> {
  current?.destroy();
  current = null;
  return initEngine(opts);
}

export function engine(): Engine {
  if (!current) {
    if (destroyedEngine) throw new Error('atrous: the GPU engine was destroyed (engine().destroy()): call `await init()` to open a new one');
    throw new Error('atrous: no GPU device yet: call `await init()` before creating tensors or running ops');
  }
  return current;
}

/**
 * The shader as compiled: every `var<storage, read>` declared `var<storage, read_write>`. The WGSL
 * files say which bindings a kernel only reads (and the engine uses that: `separate`), but a
 * tensor is a block of a segment shared with other tensors (src/gpu/pool.ts), and WebGPU's usage
 * rules are per buffer, not per range: one buffer bound read-only and writable in one dispatch is
 * refused, while several writable bindings of disjoint ranges are allowed.
 */
export function storageReadWrite(code: string): string {
  return code.replace(/var<storage,\s*read>/g, 'var<storage, read_write>');
}

const UNIFORM = 0x40 | 0x08; // UNIFORM | COPY_DST
const OUT_OF_MEMORY = 'out of GPU memory';
const MAP_READ_COPY_DST = 0x01 | 0x08;

export class Engine {
  readonly device: GPUDevice;
  readonly limits: EngineLimits;
  readonly info: AdapterInfo;
  readonly pool: BufferPool;
  /** Dispatches recorded before an automatic submit. */
  maxDispatchesPerSubmit = 256;

  private pipelines = new Map<string, GPUComputePipeline>();
  /** Bind groups by (pipeline, uniform buffer, storage buffers and sizes): a training loop binds the
   * same pooled buffers every step, so after the first step no bind group is created. */
  private bindGroupCache = new Map<string, GPUBindGroup>();
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  /** Set while `trace` runs: pipelines are noted, nothing is recorded. */
  private traced: Map<string, PipelineSpec> | null = null;
  private modules = new Map<string, GPUShaderModule>();
  private uniforms = new Map<string, GPUBuffer>();
  /** Uniform buffers of launches with a `uniformSlot`, with the values last written. */
  private slotUniforms = new Map<string, { buffer: GPUBuffer; key: string }>();
  /** The slots of each storage buffer that keys them, dropped when the pool destroys it. */
  private slotsByBuffer = new Map<GPUBuffer, string[]>();
  /** Slot buffers used by the dispatches recorded since the last submit. */
  private slotsInFlight = new Set<GPUBuffer>();
  private uniformsCreated = 0;
  private retiredUniforms: GPUBuffer[] = [];
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pendingDispatches = 0;
  private submits = 0;
  private dispatches = 0;
  private bindGroups = 0;
  private gpuError: string | null = null;
  private timing = false;
  private destroyed = false;
  private placeholderBuffer: GPUBuffer | null = null;
  private readOnly = new Map<ShaderName, Set<number>>();

  constructor(readonly ctx: GPUContext) {
    this.device = ctx.device;
    this.limits = ctx.limits;
    this.info = ctx.info;
    this.pool = new BufferPool(this.device, this.limits.maxBufferSize);
    this.pool.memoryLimit = ctx.memoryLimit;
    this.pool.fillPoison = (block) => this.poisonFill(block);
    this.pool.beforeDestroy = () => {
      if (this.encoder) this.flush();
    };
    this.pool.onDestroy = (buf) => {
      // The uniform slots keyed by a destroyed segment go with it (retired: a pending
      // submit may still use them).
      for (const slot of this.slotsByBuffer.get(buf) ?? []) {
        const s = this.slotUniforms.get(slot);
        if (s) this.retiredUniforms.push(s.buffer);
        this.slotUniforms.delete(slot);
      }
      this.slotsByBuffer.delete(buf);
    };
    this.pool.onOutOfMemory = (bytes, what, message) => {
      const s = this.pool.stats();
      // The out-of-memory error explains the validation errors that follow it (an invalid buffer), so it wins.
      this.gpuError = `${OUT_OF_MEMORY}: could not allocate ${bytes} bytes for ${what} on ${this.adapterName} ` +
        `(${s.liveBytes} bytes in ${s.liveBuffers} tensors were live; ${s.allocatedBytes} bytes held by the pool): ${message}. ` +
        'Use a smaller batch, crop or model';
    };
    this.device.addEventListener('uncapturederror', (ev) => {
      const msg = (ev as GPUUncapturedErrorEvent).error.message;
      if (!this.gpuError) this.gpuError = msg;
      else if (!this.gpuError.startsWith(OUT_OF_MEMORY) && /out of memory/i.test(msg)) this.gpuError = `${OUT_OF_MEMORY}: ${msg}`;
    });
    void this.device.lost.then((info) => {
      if (!this.destroyed) this.gpuError ??= `device lost: ${info.message}`;
    });
  }

  get adapterName(): string {
    return adapterName(this.info);
  }

  /** Compiles (or returns the cached) pipeline for a shader + entry + override constants. */
  pipeline(shader: string, entry = 'main', constants?: Record<string, number>): GPUComputePipeline {
    const key = pipelineKey(shader, entry, constants);
    let p = this.pipelines.get(key);
    if (p) return p;
    p = this.device.createComputePipeline(this.pipelineDescriptor(key, shader, entry, constants));
    this.pipelines.set(key, p);
    return p;
  }

  private pipelineDescriptor(key: string, shader: string, entry: string, constants?: Record<string, number>): GPUComputePipelineDescriptor {
    let module = this.modules.get(shader);
    if (!module) {
      const code = (SHADERS as Record<string, string | undefined>)[shader];
      if (code === undefined) throw new Error(`atrous: no shader '${shader}' (expected shaders/${shader}.wgsl)`);
      module = this.device.createShaderModule({ label: shader, code: storageReadWrite(code) });
      this.modules.set(shader, module);
    }
    return { label: key, layout: 'auto', compute: { module, entryPoint: entry, constants } };
  }

  /**
   * Compiles pipelines asynchronously (createComputePipelineAsync, all requests in flight at once)
   * and caches them, so that later dispatches find them compiled. Pipelines already cached are
   * skipped. Resolves with the number compiled.
   */
  async precompile(specs: Iterable<PipelineSpec>): Promise<number> {
    this.assertAlive();
    const todo = new Map<string, PipelineSpec>();
    for (const s of specs) {
      const key = pipelineKey(s.shader, s.entry, s.constants);
      if (!this.pipelines.has(key)) todo.set(key, s);
    }
    await Promise.all(
      [...todo].map(async ([key, s]) => {
        const p = await this.device.createComputePipelineAsync(this.pipelineDescriptor(key, s.shader, s.entry ?? 'main', s.constants));
        if (!this.pipelines.has(key)) this.pipelines.set(key, p);
      }),
    );
    this.throwGpuError();
    return todo.size;
  }

  /**
   * Runs `fn` without recording GPU work and returns the pipelines its dispatches would use (for
   * `precompile`). Uploads and copies are skipped too and reads throw, so `fn` must be pure GPU
   * recording; tensors it allocates come from the pool as usual (and must be disposed by it).
   * CPU-side state that `fn` changes (counters, RNG positions) is the caller's to restore.
   */
  trace(fn: () => void): PipelineSpec[] {
    if (this.traced) throw new Error('atrous: Engine.trace() cannot be nested');
    this.flush();
    this.traced = new Map();
    try {
      fn();
      return [...this.traced.values()];
    } finally {
      this.traced = null;
      this.flush();
    }
  }

  /** Records one dispatch. Checks binding sizes against the device limits before recording. */
  run<S extends ShaderName>(call: KernelCall<S>): void {
    this.record(call, true);
  }

  /** Records a launch; `counted` false for the pool's poison fills, which are bookkeeping of a test
   * mode and neither count as dispatches nor bring the next automatic submit closer. */
  private record<S extends ShaderName>(call: KernelCall<S>, counted: boolean): void {
    this.assertAlive();
    const maxBinding = this.limits.maxStorageBufferBindingSize;
    for (let i = 0; i < call.bindings.length; i++) {
      const b = call.bindings[i];
      if (b.byteLength > maxBinding) {
        throw new Error(
          `atrous: ${call.shader}: ${b.label ?? `binding ${i}`} is ${b.byteLength} bytes, above the device limit ` +
            `maxStorageBufferBindingSize (${maxBinding} bytes); use a smaller batch or input size`,
        );
      }
    }
    const [x, y = 1, z = 1] = call.workgroups;
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new Error(`atrous: ${call.shader}: dispatch [${x}, ${y}, ${z}] exceeds the device limit maxComputeWorkgroupsPerDimension (${maxWg})`);
    }
    const params = call.params === undefined ? null : this.packParams(call.shader, call.params);
    if (x === 0 || y === 0 || z === 0) return;
    if (this.traced) {
      this.traced.set(pipelineKey(call.shader, call.entry, call.constants), { shader: call.shader, entry: call.entry, constants: call.constants });
      return;
    }
    const pipeline = this.pipeline(call.shader, call.entry, call.constants);
    const { bindings, scratch } = this.separate(call.shader, call.bindings);
    const entries: GPUBindGroupEntry[] = [];
    let slot = 0;
    let key = pipelineKey(call.shader, call.entry, call.constants);
    if (params) {
      const u = call.uniformSlot ? this.slotUniformBuffer(call.uniformSlot.buffer, `${key}|${this.bufferId(call.uniformSlot.buffer)}:${call.uniformSlot.offset ?? 0}`, params) : this.uniformBuffer(params);
      entries.push({ binding: slot++, resource: { buffer: u } });
      key += `|${this.bufferId(u)}`;
    }
    for (const b of bindings) {
      // Zero-sized bindings are invalid and vec4 arrays need 16 bytes; every pool block has at
      // least 256 (pool.blockSize), so an empty tensor binds 16 of those.
      const size = Math.max(16, b.byteLength);
      const offset = b.offset ?? 0;
      entries.push({ binding: slot++, resource: { buffer: b.buffer, offset, size } });
      key += `|${this.bufferId(b.buffer)}:${offset}:${size}`;
    }
    let bindGroup = this.bindGroupCache.get(key);
    if (!bindGroup) {
      if (this.bindGroupCache.size >= 16384) this.bindGroupCache.clear();
      bindGroup = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      this.bindGroupCache.set(key, bindGroup);
      this.bindGroups++;
    }
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    // A copy made by `separate` is free again at once: later work is ordered after this dispatch.
    for (const t of scratch) this.pool.release(t);
    if (!counted) return;
    this.pendingDispatches++;
    this.dispatches++;
    if (this.pendingDispatches >= this.maxDispatchesPerSubmit && !this.timing) this.flush();
  }

  /**
   * The bindings of a launch with every overlap resolved. Tensors are blocks of shared segments
   * and every storage binding is declared read_write (see `storageReadWrite`), so WebGPU refuses
   * two overlapping ranges of one buffer in one dispatch. Where a binding the shader only reads
   * overlaps another binding (the same tensor passed twice, as in x + x), it is bound from a copy
   * in a scratch block instead, released once the dispatch is recorded. A written binding that
   * overlaps another one is an in-place aliasing no kernel supports: an internal error.
   */
  private separate(shader: ShaderName, bindings: readonly Bindable[]): { bindings: readonly Bindable[]; scratch: Block[] } {
    const overlaps = (a: Bindable, b: Bindable): boolean =>
      a.buffer === b.buffer && (a.offset ?? 0) < (b.offset ?? 0) + Math.max(16, b.byteLength) && (b.offset ?? 0) < (a.offset ?? 0) + Math.max(16, a.byteLength);
    let out: Bindable[] | null = null;
    const scratch: Block[] = [];
    const readOnly = this.readOnlyBindings(shader);
    for (let i = 1; i < bindings.length; i++) {
      for (let j = 0; j < i; j++) {
        const cur = out ?? bindings;
        if (!overlaps(cur[i], cur[j])) continue;
        // Binding k of the launch is shader binding k + 1 (0 is the uniform block).
        const k = readOnly.has(i + 1) ? i : readOnly.has(j + 1) ? j : -1;
        if (k < 0) throw new Error(`atrous: internal error: ${shader}: bindings ${j + 1} and ${i + 1} overlap in one buffer and both are written`);
        out ??= [...bindings];
        const src = out[k];
        const block = this.pool.acquire(src.byteLength, () => `a copy of ${src.label ?? 'a binding'} (bound twice in one launch)`, 'scratch');
        const copy: Bindable = { buffer: block.buffer, offset: block.offset, byteLength: src.byteLength, label: src.label };
        this.copy(src, copy, Math.ceil(src.byteLength / 4) * 4);
        scratch.push(block);
        out[k] = copy;
      }
    }
    return { bindings: out ?? bindings, scratch };
  }

  /** The storage bindings a shader declares `var<storage, read>` (inputs), by binding number. */
  private readOnlyBindings(shader: ShaderName): Set<number> {
    let set = this.readOnly.get(shader);
    if (!set) {
      set = new Set([...SHADERS[shader].matchAll(/@binding\((\d+)\)\s*var<storage,\s*read>/g)].map((m) => Number(m[1])));
      this.readOnly.set(shader, set);
    }
    return set;
  }

  /** Records a fill of `block` with NaN (the pool's poison mode), in order with recorded work. */
  private poisonFill(block: Block): void {
    if (this.traced || this.destroyed) return;
    const align = this.bindingAlignment;
    const chunk = Math.floor(this.limits.maxStorageBufferBindingSize / align) * align;
    for (let at = 0; at < block.size; at += chunk) {
      const bytes = Math.min(chunk, block.size - at);
      this.record({ shader: 'fill', params: { n: bytes / 4, value: Number.NaN }, bindings: [{ buffer: block.buffer, offset: block.offset + at, byteLength: bytes }], workgroups: this.grid1d(bytes / 4) }, false);
    }
  }

  /** A 256-byte storage buffer of its own, bound where a launch's binding is unused (never read or
   * written; a conv without a bias). A tensor cannot stand in: it may share a segment with the
   * launch's output, and WebGPU refuses a buffer bound both read-only and writable, or two
   * overlapping writable bindings, in one dispatch. Bind it at most once per launch. */
  get placeholder(): Bindable {
    this.placeholderBuffer ??= this.device.createBuffer({ size: 256, usage: 0x80 | 0x08 /* STORAGE | COPY_DST */ });
    return { buffer: this.placeholderBuffer, byteLength: 256, label: 'placeholder' };
  }

  /** The byte alignment of a binding's offset (minStorageBufferOffsetAlignment, 256 on most adapters). */
  get bindingAlignment(): number {
    return this.device.limits.minStorageBufferOffsetAlignment;
  }

  /** A sub-range of a binding: `bytes` bytes from `offset` (relative to the binding's own offset,
   * which must stay a multiple of `bindingAlignment`). Split launches bind slices of one buffer. */
  slice(b: Bindable, offset: number, bytes: number): Bindable {
    const at = (b.offset ?? 0) + offset;
    if (at % this.bindingAlignment !== 0) {
      throw new Error(`atrous: internal error: ${b.label ?? 'a binding'} sliced at byte ${at}, not a multiple of ${this.bindingAlignment}`);
    }
    if (at + Math.max(16, bytes) > b.buffer.size) {
      throw new Error(`atrous: internal error: ${b.label ?? 'a binding'} sliced past its buffer (${at} + ${bytes} > ${b.buffer.size} bytes)`);
    }
    return { buffer: b.buffer, byteLength: bytes, label: b.label, offset: at };
  }

  /** Whether the device has WebGPU subgroups of at least 8 invocations (kernels whose 8-invocation
   * workgroup must be one subgroup need them). An adapter that does not state its smallest
   * subgroup size counts as having them. */
  get hasSubgroups(): boolean {
    return this.device.features.has('subgroups') && (this.info.subgroupMinSize ?? 8) >= 8;
  }

  /** True when the adapter can time passes on the GPU (feature 'timestamp-query'). */
  get hasTimestamps(): boolean {
    return this.device.features.has('timestamp-query');
  }

  /**
   * GPU time in milliseconds of the dispatches `fn` records, measured with timestamp queries
   * around one compute pass (null when the adapter has no timestamps). `fn` must only record
   * kernels (no copies or uploads, which would split the pass).
   */
  async timeGpu(fn: () => void): Promise<number | null> {
    if (!this.hasTimestamps) return null;
    this.flush();
    const querySet = this.device.createQuerySet({ type: 'timestamp', count: 2 });
    const resolve = this.device.createBuffer({ size: 16, usage: 0x0200 | 0x0004 /* QUERY_RESOLVE | COPY_SRC */ });
    const staging = this.device.createBuffer({ size: 16, usage: MAP_READ_COPY_DST });
    this.encoder = this.device.createCommandEncoder();
    this.pass = this.encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
    this.timing = true;
    try {
      fn();
      if (!this.pass) throw new Error('atrous: timeGpu(): the timed function recorded a copy or upload, which ends the timed pass');
    } finally {
      this.timing = false;
    }
    this.pass.end();
    this.pass = null;
    this.encoder.resolveQuerySet(querySet, 0, 2, resolve, 0);
    this.encoder.copyBufferToBuffer(resolve, 0, staging, 0, 16);
    this.flush();
    await staging.mapAsync(0x0001);
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    resolve.destroy();
    querySet.destroy();
    this.throwGpuError();
    return Number(t[1] - t[0]) / 1e6;
  }

  /** Flat dispatch for `total` invocations of a `wgSize`-wide workgroup, folded into 2-D when it
   * exceeds the per-dimension limit. Shaders recover the flat index as
   * `gid.x + gid.y * (nwg.x * WG)` (see shaders/README.md). */
  grid1d(total: number, wgSize = 64): [number, number] {
    const groups = Math.max(1, Math.ceil(total / wgSize));
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (groups <= maxWg) return [groups, 1];
    const y = Math.ceil(groups / maxWg);
    return [Math.ceil(groups / y), y];
  }

  /** Copies `bytes` bytes from `srcOffset` of `src` to `dstOffset` of `dst` (both relative to the
   * bindings' own offsets) in order with the recorded kernels. */
  copy(src: Bindable, dst: Bindable, bytes: number, srcOffset = 0, dstOffset = 0): void {
    this.assertAlive();
    if (this.traced) return;
    const from = (src.offset ?? 0) + srcOffset;
    const to = (dst.offset ?? 0) + dstOffset;
    if (src.buffer !== dst.buffer) {
      this.commandEncoder().copyBufferToBuffer(src.buffer, from, dst.buffer, to, bytes);
      return;
    }
    // Two blocks of one pool segment: copyBufferToBuffer refuses one buffer as both ends, so a
    // kernel copies the words (shaders/copy.wgsl), in launches that fit the binding limit.
    if (from < to + bytes && to < from + bytes) {
      throw new Error(`atrous: internal error: copy between overlapping ranges of one buffer (${bytes} bytes from byte ${from} to ${to})`);
    }
    if (from % 4 !== 0 || to % 4 !== 0 || bytes % 4 !== 0) throw new Error(`atrous: internal error: copy within one buffer of ${bytes} bytes from byte ${from} to ${to}: not whole 4-byte words`);
    const align = this.bindingAlignment;
    const chunk = Math.floor((this.limits.maxStorageBufferBindingSize - align) / 4) * 4;
    for (let done = 0; done < bytes; done += chunk) {
      const n = Math.min(chunk, bytes - done);
      const [a, b] = [from + done, to + done];
      const [a0, b0] = [Math.floor(a / align) * align, Math.floor(b / align) * align];
      this.run({
        shader: 'copy',
        params: { n: n / 4, inOff: (a - a0) / 4, outOff: (b - b0) / 4 },
        bindings: [
          { buffer: src.buffer, offset: a0, byteLength: a - a0 + n, label: src.label },
          { buffer: dst.buffer, offset: b0, byteLength: b - b0 + n, label: dst.label },
        ],
        workgroups: this.grid1d(n / 4),
      });
    }
  }

  /** Uploads data into a binding at `dstOffset` (relative to its own offset). Flushes recorded
   * work first, so the upload cannot overtake it. */
  write(dst: Bindable, data: ArrayBufferView, dstOffset = 0): void {
    this.assertAlive();
    if (this.traced) return;
    if (this.encoder) this.flush();
    this.device.queue.writeBuffer(dst.buffer, (dst.offset ?? 0) + dstOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (this.encoder) {
      this.device.queue.submit([this.encoder.finish()]);
      this.encoder = null;
      this.submits++;
    }
    this.pendingDispatches = 0;
    this.slotsInFlight.clear();
    for (const b of this.retiredUniforms) b.destroy();
    this.retiredUniforms = [];
  }

  /** Reads `bytes` bytes of a binding from `offset` (relative to its own offset) back to the CPU
   * (submits pending work first). */
  async read(src: Bindable, bytes = src.byteLength, offset = 0): Promise<ArrayBuffer> {
    this.assertAlive();
    if (this.traced) throw new Error('atrous: a read-back inside Engine.trace() (tracing records no GPU work)');
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const staging = this.device.createBuffer({ size, usage: MAP_READ_COPY_DST });
    this.commandEncoder().copyBufferToBuffer(src.buffer, (src.offset ?? 0) + offset, staging, 0, size);
    this.flush();
    try {
      await staging.mapAsync(0x0001 /* GPUMapMode.READ */);
      const out = staging.getMappedRange(0, size).slice(0, bytes);
      staging.unmap();
      return out;
    } finally {
      staging.destroy();
      await this.pool.allocationsChecked();
      this.throwGpuError();
    }
  }

  /** Waits until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.pool.allocationsChecked();
    this.throwGpuError();
  }

  stats(): EngineStats {
    return {
      ...this.pool.stats(),
      pipelines: this.pipelines.size,
      submits: this.submits,
      dispatches: this.dispatches,
      uniformBuffers: this.uniforms.size + this.slotUniforms.size,
      uniformBuffersCreated: this.uniformsCreated,
      bindGroups: this.bindGroups,
    };
  }

  destroy(): void {
    if (this.destroyed) return;
    this.flush();
    this.destroyed = true;
    this.device.destroy();
    if (current === this) {
      current = null;
      destroyedEngine = true;
    }
  }

  private throwGpuError(): void {
    if (this.gpuError) {
      const msg = this.gpuError;
      this.gpuError = null;
      throw new Error(msg.startsWith(OUT_OF_MEMORY) ? `atrous: ${msg}` : `atrous: GPU error: ${msg}`);
    }
  }

  private assertAlive(): void {
    if (this.destroyed) throw new Error('atrous: the engine was destroyed');
  }

  private commandEncoder(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) this.pass = this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) this.bufferIds.set(b, (id = this.nextBufferId++));
    return id;
  }

  /** Packs a launch's params into its shader's `struct Params` layout (generated from the WGSL):
   * every field by name, as its WGSL type, at its offset; a missing or unknown field, or a value
   * that does not fit its type, is an error naming the shader and the field. */
  private packParams(shader: ShaderName, params: object): ArrayBuffer {
    const layout = PARAM_LAYOUTS[shader];
    const where = `atrous: ${shader}: Params`;
    if (!layout) throw new Error(`${where}: the shader has no struct Params, but the launch passes params`);
    const values = params as Record<string, number | readonly number[] | undefined>;
    const data = new ArrayBuffer(Math.max(16, Math.ceil(layout.size / 16) * 16));
    const view = new DataView(data);
    for (const f of layout.fields) {
      const v = values[f.name];
      if (v === undefined) throw new Error(`${where}: missing field '${f.name}' (${f.type}${f.count > 1 ? ` × ${f.count}` : ''})`);
      const list = typeof v === 'number' ? null : v;
      if ((list === null) !== (f.count === 1) || (list && list.length !== f.count)) {
        throw new Error(`${where}.${f.name}: expected ${f.count === 1 ? `one ${f.type}` : `${f.count} ${f.type} values`}, got ${list ? `${list.length} values` : 'a number'}`);
      }
      for (let i = 0; i < f.count; i++) {
        const x = list ? list[i] : (v as number);
        const at = f.offset + Math.floor(i / f.comps) * f.stride + (i % f.comps) * 4;
        if (f.type === 'f32') view.setFloat32(at, x, true);
        else if (!Number.isInteger(x)) throw new Error(`${where}.${f.name} = ${x} is not an integer (WGSL ${f.type})`);
        else if (f.type === 'u32' ? x < 0 || x > 0xffffffff : x < -0x80000000 || x > 0x7fffffff) {
          throw new Error(`${where}.${f.name} = ${x} does not fit in ${f.type}`);
        } else if (f.type === 'u32') view.setUint32(at, x, true);
        else view.setInt32(at, x, true);
      }
    }
    for (const k in values) {
      if (!layout.fields.some((f) => f.name === k)) {
        throw new Error(`${where}: unknown field '${k}' (the struct has ${layout.fields.map((f) => f.name).join(', ')})`);
      }
    }
    return data;
  }

  /** A launch's own uniform buffer (see KernelCall.uniformSlot): created once, then rewritten in
   * place when its values change. A write would overtake the dispatches already recorded with the
   * old values (writeBuffer runs ahead of unsubmitted commands), so those are submitted first. */
  private slotUniformBuffer(owner: GPUBuffer, slot: string, data: ArrayBuffer): GPUBuffer {
    const key = Array.prototype.join.call(new Uint32Array(data), ',');
    let s = this.slotUniforms.get(slot);
    if (!s) {
      if (this.slotUniforms.size >= 16384) {
        for (const v of this.slotUniforms.values()) this.retiredUniforms.push(v.buffer);
        this.slotUniforms.clear();
        this.slotsByBuffer.clear();
        this.bindGroupCache.clear();
      }
      s = { buffer: this.createUniform(data), key };
      this.slotUniforms.set(slot, s);
      const list = this.slotsByBuffer.get(owner);
      if (list) list.push(slot);
      else this.slotsByBuffer.set(owner, [slot]);
    } else if (s.key !== key) {
      if (this.slotsInFlight.has(s.buffer)) {
        // Ending the pass here would split it; flush() submits and resets the in-flight set.
        this.flush();
      }
      this.device.queue.writeBuffer(s.buffer, 0, data);
      s.key = key;
    }
    this.slotsInFlight.add(s.buffer);
    return s.buffer;
  }

  private createUniform(data: ArrayBuffer): GPUBuffer {
    const buf = this.device.createBuffer({ size: data.byteLength, usage: UNIFORM, mappedAtCreation: true });
    new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data));
    buf.unmap();
    this.uniformsCreated++;
    return buf;
  }

  private uniformBuffer(data: ArrayBuffer): GPUBuffer {
    const u32 = new Uint32Array(data);
    const key = Array.prototype.join.call(u32, ',');
    let buf = this.uniforms.get(key);
    if (buf) return buf;
    if (this.uniforms.size >= 16384) {
      // Bounded cache: retire everything; the buffers die after the submit that may use them,
      // and so must the bind groups that hold them.
      for (const b of this.uniforms.values()) this.retiredUniforms.push(b);
      this.uniforms.clear();
      this.bindGroupCache.clear();
    }
    buf = this.createUniform(data);
    this.uniforms.set(key, buf);
    return buf;
  }
}
