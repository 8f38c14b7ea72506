// A caching allocator for storage memory, as PyTorch's CUDA caching allocator: tensors are blocks
// (aligned byte ranges) of a few large GPU buffers, the segments. A request takes the smallest free
// block that fits (best fit), split when the rest is worth keeping; a released block is merged with
// its free neighbours at once and can serve the next request straight away, of any size that fits.
// Segments are created as needed and kept (`trim` gives the wholly free ones back).
//
// Why blocks and not one buffer per tensor: a network's tensors come in many sizes (a 12-megapixel
// photo through ResNet-50 makes hundreds of different ones, with bands and channel blocks), and
// buffers of one size cannot serve another, so a buffer-per-tensor pool either piles up free
// buffers or destroys and recreates them. Destroying does not give memory back on every driver:
// lavapipe, the software Vulkan driver, sub-allocates every device memory from one growing memfd
// and never returns the pages of a freed range to the system (Mesa's llvmpipe_free_memory only
// marks the range free), so host memory reaches the highest extent the driver's own heap ever
// had. A pool that seldom creates a buffer keeps that extent near the most bytes live at once.
//
// Reusing a released block within one command encoder is safe: WebGPU orders the dispatches of a
// pass, and every queue.writeBuffer into pooled memory comes after a flush of the recorded work
// (Engine.write; the poison fill of the test mode is a recorded kernel), so no upload can
// overtake a kernel that still reads the block's previous contents.
//
// The pool also counts live bytes per category (a label the tensor layer gives each block:
// parameters, saved activations, scratch, ...) and keeps the per-category values at the moment of
// the peak (`peakBreakdown`), so a memory report can say where the peak's bytes were.

export interface PoolStats {
  /** Blocks handed out and not yet released (tensor storage that is alive). */
  liveBuffers: number;
  /** Bytes of those blocks (requests rounded up to `BLOCK_ALIGN`, or the whole free block when
   * the rest was too small to split off). */
  liveBytes: number;
  /** GPU buffers (segments) the pool holds. */
  allocatedBuffers: number;
  /** Bytes of those segments: the GPU memory the pool holds (live blocks + free blocks). */
  allocatedBytes: number;
  /** Segments created since the pool was made (a growing number in a steady loop means churn). */
  created: number;
  /** Highest liveBytes since the pool was made or since `resetPeak()` (peak tensor memory). */
  peakLiveBytes: number;
  /** Highest allocatedBytes since the pool was made or since `resetPeak()`. */
  peakAllocatedBytes: number;
}

/** Where the live bytes were at the moment of the peak (`BufferPool.peakBreakdown`). */
export interface PeakBreakdown {
  /** Requested bytes of the live blocks per category (the label given to `acquire` or
   * `setCategory`; the tensor layer's categories are listed in src/tensor.ts). */
  categories: Record<string, number>;
  /** Rounding of those blocks: their bytes minus the requested bytes. The categories plus this
   * sum to `peakLiveBytes`. */
  rounding: number;
}

/** A tensor's memory: `size` bytes at byte `offset` of `buffer` (a segment shared with other
 * blocks). Bindings and copies must add `offset`. */
export interface Block {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}

interface LiveInfo {
  bytes: number;
  category: string;
  provisional: boolean;
  what?: () => string;
}

interface Segment {
  readonly buffer: GPUBuffer;
  readonly size: number;
  /** Creation order (ties in best fit go to the oldest segment, so a repeated loop gets the
   * same blocks every iteration). */
  readonly id: number;
  readonly small: boolean;
  /** Live blocks in it. */
  used: number;
}

class Range implements Block {
  prev: Range | null = null;
  next: Range | null = null;
  free = true;
  constructor(
    readonly segment: Segment,
    public offset: number,
    public size: number,
  ) {}
  get buffer(): GPUBuffer {
    return this.segment.buffer;
  }
}

const USAGE_STORAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
const MiB = 2 ** 20;
/** Every block starts and ends on this many bytes: WebGPU's largest minStorageBufferOffsetAlignment,
 * so a block's offset is a valid binding offset on every adapter, and its size covers a tensor
 * bound as whole vec4s. */
export const BLOCK_ALIGN = 256;
/** Requests up to this size come from small segments (`SMALL_SEGMENT`), so that small long-lived
 * tensors (parameters, statistics) do not cut up the segments of large activations (PyTorch's
 * kSmallSize). */
const SMALL_REQUEST = 1 * MiB;
const SMALL_SEGMENT = 2 * MiB;
/** Requests below this get a segment of `MEDIUM_SEGMENT`; larger ones a segment of their size
 * rounded up to 2 MiB (PyTorch's kMinLargeAlloc and kLargeBuffer). */
const MEDIUM_REQUEST = 10 * MiB;
const MEDIUM_SEGMENT = 20 * MiB;
/** A free block of a large segment is split only when more than this would be left over. */
const LARGE_SPLIT_REST = 1 * MiB;

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

/** The block size of a request of `bytes`: rounded up to `BLOCK_ALIGN` (16 bytes at least). */
export function blockSize(bytes: number): number {
  return roundUp(Math.max(16, bytes), BLOCK_ALIGN);
}

/** The size of the segment the pool creates for a request of `bytes` that no free block holds, on
 * a device whose maxBufferSize is `max`: above `max` when `bytes` cannot fit. Where only the
 * rounding would pass the limit (lavapipe's is 2^32 − 1), the bytes themselves rounded up to 4. */
export function allocationSize(bytes: number, max: number): number {
  const block = blockSize(bytes);
  const size = block <= SMALL_REQUEST ? SMALL_SEGMENT : block < MEDIUM_REQUEST ? MEDIUM_SEGMENT : roundUp(block, 2 * MiB);
  if (size <= max) return size;
  if (block <= max) return block;
  const exact = Math.max(16, roundUp(bytes, 4));
  return exact <= max ? exact : block;
}

export class BufferPool {
  private segments: Segment[] = [];
  /** Free blocks of small and of large segments. */
  private freeSmall = new Set<Range>();
  private freeLarge = new Set<Range>();
  /** Live blocks with their requested bytes and category. */
  private live = new Map<Range, LiveInfo>();
  /** Live blocks whose category is provisional, and those that were at the last peak. */
  private provisional = new Set<LiveInfo>();
  private peakProvisional = new Set<LiveInfo>();
  private liveBytes = 0;
  private liveRequested = 0;
  private byCategory = new Map<string, number>();
  private peakCategories = new Map<string, number>();
  private peakRequested = 0;
  private allocatedBytes = 0;
  private peakAllocatedBytes = 0;
  private created = 0;
  private peakLiveBytes = 0;
  /**
   * Gives wholly free segments back before creating one (segment() turns it on while it runs a
   * whole image): a large photo's layers free segments of one size and ask for another, and on
   * lavapipe a destroyed segment's range is the first the driver's heap reuses. Off (the
   * default) for training, where a warm loop needs no new segment and destroying one would make
   * the next step create it again.
   */
  compact = false;
  /** The most bytes the segments may hold (Infinity: no limit; the engine sets it from
   * DeviceOptions.memoryLimit). A request that needs a new segment past it first gives the wholly
   * free segments back, and then fails with an error naming the request, its bytes and the limit,
   * before anything is allocated. */
  memoryLimit = Infinity;
  /** Debug/test mode: fill every block with NaN when it is handed out, so a kernel that fails to
   * write an element shows up as NaN. The fill is `fillPoison` (the engine records it as a kernel,
   * in order with the work that used the block before), else a queue write (a pool of its own). */
  poison = false;
  fillPoison: ((block: Block) => void) | null = null;
  /** Told when the device could not allocate a segment the pool created (out of GPU memory: WebGPU
   * reports it asynchronously, through an error scope around the creation). */
  onOutOfMemory: ((bytes: number, what: string, message: string) => void) | null = null;
  /** Called before the pool destroys segments (the engine submits the work it has recorded). */
  beforeDestroy: (() => void) | null = null;
  /** Told before the pool destroys a segment (trim, compact), so state keyed by it can go too. */
  onDestroy: ((buf: GPUBuffer) => void) | null = null;
  private scopes = new Set<Promise<void>>();

  /** Resolves once every out-of-memory check of a created segment has been answered. */
  async allocationsChecked(): Promise<void> {
    while (this.scopes.size) await Promise.all([...this.scopes]);
  }

  constructor(
    private device: GPUDevice,
    private maxBufferSize: number,
  ) {}

  /** A block of at least `bytes` (see `Block`); `what` describes its use (e.g. "a tensor
   * [1, 21, 512, 512] (f32)") for the error when `bytes` is above maxBufferSize and for an
   * out-of-memory report; `category` labels its bytes in the peak breakdown (see `setCategory`).
   * A `provisional` category is a guess until the block's first `setCategory`, which also
   * relabels its bytes in a peak reached meanwhile (an op's temporaries are 'scratch' until the
   * op returns one of them as its result); released without one, it stays.
   * Throws when `bytes` is above the device's maxBufferSize, naming `what`. */
  acquire(bytes: number, what?: () => string, category = 'other', provisional = false): Block {
    const segSize = allocationSize(bytes, this.maxBufferSize);
    if (segSize > this.maxBufferSize) {
      throw new Error(`atrous: ${what?.() ?? 'a buffer'} needs ${bytes} bytes, above the device limit maxBufferSize (${this.maxBufferSize} bytes)`);
    }
    const size = Math.min(blockSize(bytes), segSize);
    const small = size <= SMALL_REQUEST;
    const frees = small ? this.freeSmall : this.freeLarge;
    let r = this.bestFit(frees, size);
    if (!r) {
      if (this.compact && !small) this.dropFreeSegments(false);
      if (this.allocatedBytes + segSize > this.memoryLimit) {
        this.dropFreeSegments(true);
        if (this.allocatedBytes + segSize > this.memoryLimit) {
          const gb = (b: number): string => `${(b / 2 ** 30).toFixed(2)} GiB`;
          throw new Error(
            `atrous: out of memory: ${what?.() ?? 'a buffer'} needs ${bytes} bytes (${gb(bytes)}) more than the pool can hold: it holds ${this.allocatedBytes} bytes ` +
              `(${gb(this.allocatedBytes)}; ${this.live.size} tensors of ${gb(this.liveBytes)} alive) and may hold ${this.memoryLimit} (${gb(this.memoryLimit)}, the memory limit: ` +
              'DeviceOptions.memoryLimit or ATROUS_MEMORY_LIMIT). Use a smaller batch, crop or image (predict: --window or --max-side; a larger --output-stride), or raise the limit',
          );
        }
      }
      r = this.newSegment(segSize, small, what);
      frees.add(r);
    }
    r = this.take(r, size, frees);
    const requested = Math.max(0, bytes);
    const info: LiveInfo = { bytes: requested, category, provisional, what };
    this.live.set(r, info);
    if (provisional) this.provisional.add(info);
    this.liveBytes += r.size;
    this.liveRequested += requested;
    this.count(category, requested);
    if (this.liveBytes > this.peakLiveBytes) this.notePeak();
    if (this.poison) {
      if (this.fillPoison) this.fillPoison(r);
      else this.device.queue.writeBuffer(r.buffer, r.offset, new Float32Array(r.size / 4).fill(Number.NaN));
    }
    return r;
  }

  /** Returns a block; it is merged with its free neighbours and can serve the next request. */
  release(block: Block): void {
    const r = block as Range;
    const info = this.live.get(r);
    if (!info) throw new Error('atrous: internal error: buffer released twice');
    this.live.delete(r);
    if (info.provisional) {
      this.provisional.delete(info);
      this.peakProvisional.delete(info);
    }
    this.liveBytes -= r.size;
    this.liveRequested -= info.bytes;
    this.count(info.category, -info.bytes);
    r.segment.used--;
    const frees = r.segment.small ? this.freeSmall : this.freeLarge;
    r.free = true;
    // Merge with the free neighbours: [prev][r][next] becomes one free block.
    const absorb = (left: Range, right: Range): Range => {
      frees.delete(left);
      frees.delete(right);
      left.size += right.size;
      left.next = right.next;
      if (right.next) right.next.prev = left;
      return left;
    };
    let m = r.prev?.free ? absorb(r.prev, r) : r;
    if (m.next?.free) m = absorb(m, m.next);
    frees.add(m);
  }

  /** The smallest free block of at least `size` bytes; ties go to the oldest segment, then the
   * lowest offset (deterministic: a repeated loop gets the same blocks). */
  private bestFit(frees: Set<Range>, size: number): Range | null {
    let best: Range | null = null;
    for (const r of frees) {
      if (r.size < size) continue;
      if (!best || r.size < best.size || (r.size === best.size && (r.segment.id < best.segment.id || (r.segment.id === best.segment.id && r.offset < best.offset)))) best = r;
    }
    return best;
  }

  /** Hands out `size` bytes from the front of free block `r` (split off when the rest is worth
   * keeping: any rest in a small segment, more than LARGE_SPLIT_REST in a large one). */
  private take(r: Range, size: number, frees: Set<Range>): Range {
    frees.delete(r);
    const rest = r.size - size;
    if (rest > 0 && (r.segment.small ? rest >= BLOCK_ALIGN : rest > LARGE_SPLIT_REST)) {
      const tail = new Range(r.segment, r.offset + size, rest);
      tail.prev = r;
      tail.next = r.next;
      if (r.next) r.next.prev = tail;
      r.next = tail;
      r.size = size;
      frees.add(tail);
    }
    r.free = false;
    r.segment.used++;
    return r;
  }

  private newSegment(size: number, small: boolean, what?: () => string): Range {
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({ size, usage: USAGE_STORAGE });
    const scope = this.device.popErrorScope().then((err) => {
      if (err) this.onOutOfMemory?.(size, what?.() ?? 'a buffer', err.message);
    }, () => {});
    this.scopes.add(scope);
    void scope.then(() => this.scopes.delete(scope));
    const seg: Segment = { buffer, size, id: this.created++, small, used: 0 };
    this.segments.push(seg);
    this.allocatedBytes += size;
    if (this.allocatedBytes > this.peakAllocatedBytes) this.peakAllocatedBytes = this.allocatedBytes;
    return new Range(seg, 0, size);
  }

  /** Destroys every wholly free segment, giving its memory back to the driver (blocks still live
   * keep their segments). */
  trim(): void {
    this.dropFreeSegments(true);
  }

  private dropFreeSegments(includeSmall: boolean): void {
    const drop = (seg: Segment): boolean => seg.used === 0 && (includeSmall || !seg.small);
    if (!this.segments.some(drop)) return;
    // A block released since the last submit may still be used by recorded work, and WebGPU
    // refuses to submit work that uses a destroyed buffer: submit it first.
    this.beforeDestroy?.();
    const keep: Segment[] = [];
    for (const seg of this.segments) {
      if (!drop(seg)) {
        keep.push(seg);
        continue;
      }
      const frees = seg.small ? this.freeSmall : this.freeLarge;
      for (const r of frees) if (r.segment === seg) frees.delete(r);
      this.allocatedBytes -= seg.size;
      this.onDestroy?.(seg.buffer);
      seg.buffer.destroy();
    }
    this.segments = keep;
  }

  /** Moves a live block's bytes to another category (a tensor saved for backward, a gradient
   * kept as a parameter's .grad, ...). A block that is not live is ignored. */
  setCategory(block: Block, category: string): void {
    const info = this.live.get(block as Range);
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

  /** The live blocks (requested bytes, category, and what they hold as given to `acquire`), for
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
    this.peakAllocatedBytes = this.allocatedBytes;
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
      allocatedBuffers: this.segments.length,
      allocatedBytes: this.allocatedBytes,
      created: this.created,
      peakLiveBytes: this.peakLiveBytes,
      peakAllocatedBytes: this.peakAllocatedBytes,
    };
  }
}
