// Batching and prefetching: turns a Dataset into a stream of NCHW batches, preparing the next ones
// while the caller (the GPU step) is busy. Pure TypeScript: runs in browsers too.
//
// Reproducibility: batch k holds the sample positions [k·B, (k+1)·B) of one endless stream in
// which epoch e visits the dataset in the order of a permutation drawn from (seed, e); the sample
// at position p is augmented with a generator drawn from (seed, p). So batch k is a pure function
// of (dataset, options, k): a run resumed at step k sees exactly the batches an uninterrupted run
// would have seen, whatever the prefetch depth or timing. The only state to checkpoint is the step.
//
// Prefetch: JavaScript runs one thing at a time, so "ahead" means that batch preparation runs
// while the caller awaits the GPU (mapAsync, onSubmittedWorkDone): up to `prefetch` batches are
// in flight, and each yields to the event loop between samples so GPU callbacks are not delayed.
import { Sfc32, hashSeed, tagSeed } from './rng.js';
import { augment, normalize, IMAGENET, type AugmentOptions, type Normalization } from './augment.js';
import type { Batch, Dataset, Sample } from './types.js';

export interface LoaderOptions {
  batchSize: number;
  seed?: number;
  /** Shuffle every epoch (default true). Without shuffling, the stream is the dataset in order. */
  shuffle?: boolean;
  /** Random scale/crop/flip of §4.1 (default {} = the paper's settings), or false to pass samples as they are. */
  augment?: AugmentOptions | false;
  /** Per-channel normalisation (default ImageNet), or false to keep 0..255. */
  normalize?: Normalization | false;
  /** Batches prepared ahead of the consumer (default 2; 0 = prepare on demand). */
  prefetch?: number;
  /**
   * Index one past the last batch the iterator yields: it yields batches startStep..steps-1, so a
   * run of N steps passes N whether it starts at 0 or resumes. Default: endless when shuffling
   * (training), one pass when not (evaluation; the last batch may then be smaller than batchSize).
   */
  steps?: number;
  /** First batch the iterator yields (a resumed run passes its step). Default 0. */
  startStep?: number;
}

const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => {
    const si = (globalThis as { setImmediate?: (cb: () => void) => unknown }).setImmediate;
    if (si) si(resolve);
    else setTimeout(resolve, 0);
  });

export class DataLoader implements AsyncIterable<Batch> {
  readonly dataset: Dataset;
  readonly batchSize: number;
  readonly seed: number;
  readonly shuffle: boolean;
  readonly augment: AugmentOptions | false;
  readonly norm: Normalization | false;
  readonly prefetch: number;
  readonly steps: number;
  readonly startStep: number;
  /** No shuffling and no explicit steps: one pass over the data, the last batch possibly short. */
  readonly onePass: boolean;
  private perms = new Map<number, Uint32Array>();

  constructor(dataset: Dataset, opts: LoaderOptions) {
    this.dataset = dataset;
    this.batchSize = opts.batchSize;
    this.seed = opts.seed ?? 0;
    this.shuffle = opts.shuffle ?? true;
    this.augment = opts.augment ?? {};
    this.norm = opts.normalize ?? IMAGENET;
    this.prefetch = opts.prefetch ?? 2;
    this.startStep = opts.startStep ?? 0;
    this.onePass = !this.shuffle && opts.steps === undefined;
    this.steps = opts.steps ?? (this.shuffle ? Infinity : Math.ceil(dataset.length / this.batchSize));
    const where = `DataLoader(${dataset.name}, ${dataset.split})`;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) {
      throw new Error(`${where}: batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    if (!Number.isInteger(this.seed)) throw new Error(`${where}: seed must be an integer, got ${opts.seed}`);
    if (!Number.isInteger(this.prefetch) || this.prefetch < 0) {
      throw new Error(`${where}: prefetch must be a non-negative integer, got ${opts.prefetch}`);
    }
    if (!(this.steps === Infinity || (Number.isInteger(this.steps) && this.steps >= 0))) {
      throw new Error(`${where}: steps must be a non-negative integer, got ${opts.steps}`);
    }
    if (!Number.isInteger(this.startStep) || this.startStep < 0) {
      throw new Error(`${where}: startStep must be a non-negative integer, got ${opts.startStep}`);
    }
    if (dataset.length < 1) throw new Error(`${where}: the dataset is empty`);
  }

  /** Dataset index at stream position p. */
  indexAt(p: number): number {
    const n = this.dataset.length;
    const epoch = Math.floor(p / n);
    const k = p - epoch * n;
    if (!this.shuffle) return k;
    let perm = this.perms.get(epoch);
    if (!perm) {
      const rng = new Sfc32(hashSeed(this.seed, tagSeed('epoch'), epoch));
      perm = rng.shuffle(Uint32Array.from({ length: n }, (_, i) => i));
      // Batches straddle at most two epochs, and prefetch runs a few ahead: keep a handful.
      if (this.perms.size >= 4) this.perms.delete(Math.min(...this.perms.keys()));
      this.perms.set(epoch, perm);
    }
    return perm[k];
  }

  /** The stream positions batch k covers (one pass without shuffling stops at the dataset's end). */
  positions(step: number): number[] {
    const start = step * this.batchSize;
    const end = this.onePass ? Math.min(start + this.batchSize, this.dataset.length) : start + this.batchSize;
    return Array.from({ length: Math.max(0, end - start) }, (_, i) => start + i);
  }

  /** Augment one sample for stream position p (identity when augmentation is off). */
  prepare(s: Sample, p: number): Sample {
    if (this.augment === false) return s;
    return augment(s, new Sfc32(hashSeed(this.seed, tagSeed('augment'), p)), this.augment);
  }

  /** Build batch k (independent of every other call). */
  async batch(step: number): Promise<Batch> {
    if (!Number.isInteger(step) || step < 0) throw new Error(`DataLoader: step must be a non-negative integer, got ${step}`);
    const positions = this.positions(step);
    if (positions.length === 0) throw new Error(`DataLoader: step ${step} is past the end of the data`);
    let images: Float32Array | null = null;
    let labels: Int32Array | null = null;
    let h = 0;
    let w = 0;
    let firstId = '';
    const ids: string[] = [];
    for (let j = 0; j < positions.length; j++) {
      const p = positions[j];
      const raw = await this.dataset.get(this.indexAt(p));
      const s = this.prepare(raw, p);
      if (!images || !labels) {
        h = s.h;
        w = s.w;
        firstId = s.id;
        images = new Float32Array(positions.length * 3 * h * w);
        labels = new Int32Array(positions.length * h * w);
      } else if (s.h !== h || s.w !== w) {
        throw new Error(`DataLoader(${this.dataset.name}, ${this.dataset.split}): batch ${step} mixes sizes `
          + `${h}×${w} (${firstId}) and ${s.h}×${s.w} (${s.id}); use a crop or batchSize 1`);
      }
      const hw = h * w;
      if (this.norm) normalize(s.image, hw, this.norm, images, j * 3 * hw);
      else images.set(s.image, j * 3 * hw);
      labels.set(s.label, j * hw);
      ids.push(s.id);
      await yieldToEventLoop();
    }
    return { images: images!, labels: labels!, n: positions.length, h, w, ids, step };
  }

  /** Batches startStep, startStep + 1, ..., steps - 1, up to `prefetch` prepared ahead. */
  async *[Symbol.asyncIterator](): AsyncIterator<Batch> {
    const end = this.steps === Infinity ? Infinity : this.steps;
    const queue: Promise<Batch>[] = [];
    let next = this.startStep;
    const launch = () => {
      const step = next++;
      // Batches are prepared one after another, so the one the consumer needs first is ready first.
      const prev = queue[queue.length - 1];
      const b = prev ? prev.then(() => this.batch(step), () => this.batch(step)) : this.batch(step);
      // A batch that fails while waiting in the queue is reported when the consumer reaches it.
      b.catch(() => undefined);
      queue.push(b);
    };
    while (true) {
      while (queue.length < Math.max(1, this.prefetch + 1) && next < end) launch();
      const head = queue.shift();
      if (!head) return;
      yield await head;
    }
  }
}
