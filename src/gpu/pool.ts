// A pool of storage buffers, bucketed by size class. A released buffer is not reusable until the
// submit that last used it has been handed to the queue: `queue.writeBuffer` runs on the queue
// timeline *before* commands still sitting in an unsubmitted encoder, so reusing a buffer earlier
// could let a later upload overwrite data an earlier kernel has yet to read.
//
// The pool also counts live bytes per category (a label the tensor layer gives each buffer:
// parameters, saved activations, scratch, ...) and keeps the per-category values at the moment of
// the peak (`peakBreakdown`), so a memory report can say where the peak's bytes were.

export interface PoolStats {
  /** Buffers handed out and not yet released (tensor storage that is alive). */
  liveBuffers: number;
  liveBytes: number;
  /** Buffers owned by the pool in total (live + pending + free). */
  allocatedBuffers: number;
  allocatedBytes: number;
  /** Buffers created since the pool was made (a growing number in a steady loop means churn). */
  created: number;
  /** Highest liveBytes since the pool was made or since `resetPeak()` (peak tensor memory).
   * Counts the buffers' rounded sizes (`sizeClass`), i.e. what the driver holds for them. */
  peakLiveBytes: number;
}

/** Where the live bytes were at the moment of the peak (`BufferPool.peakBreakdown`). */
export interface PeakBreakdown {
  /** Requested bytes of the live buffers per category (the label given to `acquire` or
   * `setCategory`; the tensor layer's categories are listed in src/tensor.ts). */
  categories: Record<string, number>;
  /** Size-class rounding of those buffers: rounded minus requested bytes. The categories plus
   * this sum to `peakLiveBytes`. */
  rounding: number;
}

interface LiveInfo {
  bytes: number;
  category: string;
  provisional: boolean;
  what?: () => string;
}

const USAGE_STORAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
/** A request may take a free buffer up to this many times its size (see `largerFree`). */
const LARGER_FIT = 2;
/** The free lists may always hold this many bytes, however little was ever live at once. */
const FREE_FLOOR = 256 * 2 ** 20;

/** Rounds a byte count up to a size class: multiples of 256 B up to 4 KiB, then 8 classes per
 * power of two (at most 12.5% waste), so that buffers of nearby sizes are shared. */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, bytes);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

/** The size of the buffer the pool allocates for `bytes` on a device whose maxBufferSize is `max`:
 * its size class, or, where only the rounding would exceed the limit (lavapipe's is 2^32 − 1, so
 * every class above 3.75 GiB does), the bytes themselves rounded up to 4. Above `max` when `bytes`
 * cannot fit. */
export function allocationSize(bytes: number, max: number): number {
  const size = sizeClass(bytes);
  const exact = Math.max(16, Math.ceil(bytes / 4) * 4);
  return size > max && exact <= max ? exact : size;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  /** Creation order of every buffer: free lists are kept sorted by it (see afterSubmit). */
  private ids = new WeakMap<GPUBuffer, number>();
  private pending: GPUBuffer[] = [];
  /** Live buffers with their requested bytes and category. */
  private live = new Map<GPUBuffer, LiveInfo>();
  /** Live buffers whose category is provisional, and those that were at the last peak. */
  private provisional = new Set<LiveInfo>();
  private peakProvisional = new Set<LiveInfo>();
  private liveBytes = 0;
  private liveRequested = 0;
  private byCategory = new Map<string, number>();
  private peakCategories = new Map<string, number>();
  private peakRequested = 0;
  private allocatedBuffers = 0;
  private allocatedBytes = 0;
  private created = 0;
  private peakLiveBytes = 0;
  /** The most live bytes ever (never reset): half of it is the free-bytes budget of `compact`. */
  private highWater = 0;
  /** Bytes in the free lists (reusable now). */
  private freeBytes = 0;
  /**
   * Bounds the free lists while tensor sizes keep changing (segment() turns it on while it runs a
   * whole image): without it, a 12-megapixel photo through ResNet-50, whose layers, bands and
   * channel blocks come in many sizes, piles up tens of GB of free buffers that no later tensor
   * fits. Off (the default) for training: lending a larger buffer or destroying one would change
   * which buffer a repeated loop gets, and a warm loop would keep creating buffers. Destroying is
   * the last resort even here: a destroyed buffer's memory is only given back once the GPU has
   * run the work already recorded with it.
   */
  compact = false;
  /** Debug/test mode: fill every buffer with NaN when it is handed out, so a kernel that fails
   * to write an element shows up as NaN. Safe to do here: a free buffer is used by no pending work. */
  poison = false;
  /** Told when the device could not allocate a buffer the pool created (out of GPU memory: WebGPU
   * reports it asynchronously, through an error scope around the creation). */
  onOutOfMemory: ((bytes: number, what: string, message: string) => void) | null = null;
  /** Told before the pool destroys a buffer (trim), so state keyed by it can go too. */
  onDestroy: ((buf: GPUBuffer) => void) | null = null;
  private scopes = new Set<Promise<void>>();

  /** Resolves once every out-of-memory check of a created buffer has been answered. */
  async allocationsChecked(): Promise<void> {
    while (this.scopes.size) await Promise.all([...this.scopes]);
  }

  constructor(
    private device: GPUDevice,
    private maxBufferSize: number,
  ) {}

  /** A buffer of at least `bytes`; `what` describes its use (e.g. "a tensor [1, 21, 512, 512] (f32)")
   * for the error when `bytes` is above maxBufferSize and for an out-of-memory report;
   * `category` labels its bytes in the peak breakdown (see `setCategory`). A `provisional`
   * category is a guess until the buffer's first `setCategory`, which also relabels its bytes in
   * a peak reached meanwhile (an op's temporaries are 'scratch' until the op returns one of them
   * as its result); released without one, it stays. */
  acquire(bytes: number, what?: () => string, category = 'other', provisional = false): GPUBuffer {
    const size = allocationSize(bytes, this.maxBufferSize);
    if (size > this.maxBufferSize) {
      throw new Error(`atrous: ${what?.() ?? 'a buffer'} needs ${bytes} bytes, above the device limit maxBufferSize (${this.maxBufferSize} bytes)`);
    }
    let buf = this.free.get(size)?.pop();
    // In compact mode the free lists are kept below half the most bytes ever live at once
    // (FREE_FLOOR at least): when they are at that bound (they and a new buffer would pass it) a
    // free buffer up to twice the size is lent instead, and failing that free buffers are
    // destroyed (see `compact`).
    const budget = Math.max(this.highWater / 2, FREE_FLOOR);
    const over = this.compact && this.freeBytes + size > budget;
    if (!buf && over) buf = this.largerFree(size);
    if (buf) this.freeBytes -= buf.size;
    else {
      if (over) this.shrinkFree(budget - size);
      this.device.pushErrorScope('out-of-memory');
      buf = this.device.createBuffer({ size, usage: USAGE_STORAGE });
      const scope = this.device.popErrorScope().then((err) => {
        if (err) this.onOutOfMemory?.(size, what?.() ?? 'a buffer', err.message);
      }, () => {});
      this.scopes.add(scope);
      void scope.then(() => this.scopes.delete(scope));
      this.ids.set(buf, this.created);
      this.allocatedBuffers++;
      this.allocatedBytes += size;
      this.created++;
    }
    const requested = Math.max(0, bytes);
    const info: LiveInfo = { bytes: requested, category, provisional, what };
    this.live.set(buf, info);
    if (provisional) this.provisional.add(info);
    this.liveBytes += buf.size;
    if (this.liveBytes > this.highWater) this.highWater = this.liveBytes;
    this.liveRequested += requested;
    this.count(category, requested);
    if (this.liveBytes > this.peakLiveBytes) this.notePeak();
    if (this.poison) this.device.queue.writeBuffer(buf, 0, new Float32Array(buf.size / 4).fill(Number.NaN));
    return buf;
  }

  /** Returns a buffer; it becomes reusable after the next submit (see `afterSubmit`). */
  release(buf: GPUBuffer): void {
    const info = this.live.get(buf);
    if (!info) throw new Error('atrous: internal error: buffer released twice');
    this.live.delete(buf);
    if (info.provisional) {
      this.provisional.delete(info);
      this.peakProvisional.delete(info);
    }
    this.liveBytes -= buf.size;
    this.liveRequested -= info.bytes;
    this.count(info.category, -info.bytes);
    this.pending.push(buf);
  }

  /** Makes the buffers released before this submit reusable. Each free list is kept sorted (the
   * oldest buffer is handed out first), so a loop that repeats the same allocations, such as a
   * training step, gets the same buffers every iteration: its bind groups are then found in the
   * engine's cache instead of being created again, and the pool stops growing. */
  afterSubmit(): void {
    const touched = new Set<GPUBuffer[]>();
    for (const buf of this.pending) {
      let list = this.free.get(buf.size);
      if (!list) this.free.set(buf.size, (list = []));
      list.push(buf);
      this.freeBytes += buf.size;
      touched.add(list);
    }
    this.pending = [];
    for (const list of touched) list.sort((a, b) => this.ids.get(b)! - this.ids.get(a)!);
  }

  /** The oldest free buffer of the smallest size class above `size` and at most twice it (a
   * tensor may live in a larger buffer: bindings use the tensor's own byte length). */
  private largerFree(size: number): GPUBuffer | undefined {
    let best = 0;
    for (const [k, list] of this.free) if (k > size && k <= LARGER_FIT * size && list.length && (best === 0 || k < best)) best = k;
    return best ? this.free.get(best)!.pop() : undefined;
  }

  /** Destroys every free buffer (call after a flush to give memory back to the driver). */
  trim(): void {
    this.shrinkFree(0);
  }

  /** Destroys free buffers, largest size classes first and the most recently created first in a
   * class (the oldest are the ones a repeating loop hands out), until the free lists hold at most
   * `budget` bytes. */
  private shrinkFree(budget: number): void {
    if (this.freeBytes <= budget) return;
    const sizes = [...this.free.keys()].sort((a, b) => b - a);
    for (const size of sizes) {
      const list = this.free.get(size)!;
      while (list.length && this.freeBytes > budget) {
        // Lists are sorted newest first (afterSubmit), and pop() hands out the oldest: drop the newest.
        const b = list.shift()!;
        this.freeBytes -= b.size;
        this.allocatedBuffers--;
        this.allocatedBytes -= b.size;
        this.onDestroy?.(b);
        b.destroy();
      }
      if (!list.length) this.free.delete(size);
      if (this.freeBytes <= budget) return;
    }
  }

  /** Moves a live buffer's bytes to another category (a tensor saved for backward, a gradient
   * kept as a parameter's .grad, ...). A buffer that is not live is ignored. */
  setCategory(buf: GPUBuffer, category: string): void {
    const info = this.live.get(buf);
    if (!info) return;
    if (info.provisional) {
      info.provisional = false;
      this.provisional.delete(info);
      if (this.peakProvisional.delete(info)) {
        const from = this.peakCategories.get(info.category) ?? 0;
        this.peakCategories.set(info.category, from - info.bytes);
        this.peakCategories.set(category, (this.peakCategories.get(category) ?? 0) + info.bytes);
      }
    }
    if (info.category === category) return;
    this.count(info.category, -info.bytes);
    info.category = category;
    this.count(category, info.bytes);
  }

  /** Live requested bytes per category now (rounding excluded; see `peakBreakdown`). */
  liveCategories(): Record<string, number> {
    return Object.fromEntries([...this.byCategory].filter(([, v]) => v !== 0));
  }

  /** The live buffers (requested bytes, category, and what they hold as given to `acquire`), for
   * finding what a category's bytes are. */
  liveList(): { bytes: number; category: string; what: string }[] {
    return [...this.live.values()].map((i) => ({ bytes: i.bytes, category: i.category, what: i.what?.() ?? 'a buffer' }));
  }

  /** The categories at the moment of the last peak (since the pool was made or `resetPeak()`). */
  peakBreakdown(): PeakBreakdown {
    return {
      categories: Object.fromEntries([...this.peakCategories].filter(([, v]) => v !== 0)),
      rounding: this.peakLiveBytes - this.peakRequested,
    };
  }

  /** Starts a new peak measurement from the bytes alive now. */
  resetPeak(): void {
    this.peakLiveBytes = this.liveBytes;
    this.notePeak();
  }

  private count(category: string, bytes: number): void {
    this.byCategory.set(category, (this.byCategory.get(category) ?? 0) + bytes);
  }

  private notePeak(): void {
    this.peakLiveBytes = this.liveBytes;
    this.peakRequested = this.liveRequested;
    this.peakCategories = new Map(this.byCategory);
    this.peakProvisional = new Set(this.provisional);
  }

  stats(): PoolStats {
    return {
      liveBuffers: this.live.size,
      liveBytes: this.liveBytes,
      allocatedBuffers: this.allocatedBuffers,
      allocatedBytes: this.allocatedBytes,
      created: this.created,
      peakLiveBytes: this.peakLiveBytes,
    };
  }
}
