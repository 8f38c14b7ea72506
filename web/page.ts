// What the page's panels share: element lookup, status lines, the record of what the page did
// (window.atrousDemo, read by the browser test), the GPU state, the memory line and drawing.
import { engine } from '../src/index.js';
import type { BenchRow } from '../src/bench/common.js';

type Stats = ReturnType<ReturnType<typeof engine>['stats']>;

/** What the page did, for people reading the console and for the browser test. */
export const demo = {
  /** 'starting' | 'ready' | 'no-webgpu' | 'no-adapter' | 'device-error' */
  state: 'starting',
  message: '',
  adapter: '',
  model: null as null | { source: string; config: string; numClasses: number; classes: string[] },
  /** Bumped on every finished segmentation (the test waits for a change). */
  segmentations: 0,
  lastSegmentation: null as null | { image: string; width: number; height: number; labels: Uint8Array; ms: number; outputStride: number; scales: number[]; flip: boolean },
  train: {
    state: 'idle' as 'idle' | 'running' | 'paused' | 'done' | 'stopped' | 'error',
    step: 0,
    losses: [] as { step: number; loss: number }[],
    evals: [] as { step: number; miou: number; pixelAccuracy: number }[],
    /** Sessions started and stopped (each stop frees the model and the optimizer state). */
    started: 0,
    stopped: 0,
    /** What the current session trains on ('shapes' or the dropped folder's name) and started from. */
    dataset: '',
    init: '',
    /** The run saved in this browser (IndexedDB), offered for restoring after a reload; null for none. */
    saved: null as null | { step: number; steps: number; dataset: string; savedAt: string },
    /** The step of the last save of the current session (0: none yet). */
    persistedStep: 0,
    /** The training worker's adapter and GPU memory (its own device), after each step and each stop. */
    adapter: '',
    workerStats: null as null | { liveBuffers: number; liveBytes: number; allocatedBuffers: number; allocatedBytes: number; uniformBuffers: number; pipelines: number },
  },
  /** The dataset brought to the Train panel (web/data.ts): what the checks found. */
  data: null as null | {
    state: 'checking' | 'ready' | 'error'; source: string; message: string; layout: string; train: number; val: number;
    numClasses: number; classNames: string[]; labelMap: Record<string, number> | null; lines: string[]; warnings: string[];
  },
  /** The Segment panel's camera: frames segmented, frames per second (over the last second), frame size. */
  camera: { state: 'off' as 'off' | 'starting' | 'running' | 'error', frames: 0, fps: 0, width: 0, height: 0, adapter: '', message: '' },
  /** Main-thread long tasks (PerformanceObserver 'longtask': tasks over 50 ms), page time in ms. */
  longTasks: [] as { start: number; duration: number }[],
  /** The longest main-thread task that started at or after `since` (performance.now()), 0 for none over 50 ms. */
  longestTask: (since = 0): number => Math.max(0, ...demo.longTasks.filter((t) => t.start >= since).map((t) => t.duration)),
  benchRows: [] as (BenchRow & { adapter: string })[],
  errors: [] as string[],
  stats: (): Stats | null => (gpuState.ready ? engine().stats() : null),
};
(globalThis as unknown as { atrousDemo: typeof demo }).atrousDemo = demo;
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) demo.longTasks.push({ start: e.startTime, duration: e.duration });
  }).observe({ type: 'longtask', buffered: true });
} catch {
  // No long-task timing in this browser: demo.longTasks stays empty.
}

/** Whether the WebGPU device is open (set by gpu.ts). */
export const gpuState = { ready: false };

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`demo: no element #${id}`);
  return el as T;
}

export function setStatus(id: string, text: string, error = false): void {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle('error', error);
  if (error) {
    demo.errors.push(text);
    console.warn(`[atrous demo] ${text}`);
  }
}

export const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).replace(/^atrous: /, '');
export const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** GPU work of the Segment panel runs one task at a time (loading a model while it segments
 * would dispose it under the forward pass). */
let segQueue: Promise<unknown> = Promise.resolve();
export function enqueue<T>(task: () => Promise<T>): Promise<T> {
  const p = segQueue.then(task, task);
  segQueue = p.catch(() => undefined);
  return p;
}

export function updateMemory(): void {
  if (!gpuState.ready) return;
  const s = engine().stats();
  $('mem-line').textContent =
    `GPU memory held by atrous: ${mib(s.liveBytes)} in ${s.liveBuffers} live buffers, ${mib(s.allocatedBytes)} in the pool ` +
    `(${s.allocatedBuffers} buffers), ${s.uniformBuffers} uniform buffers, ${s.pipelines} pipelines`;
}


export function showPanel(name: string): void {
  for (const b of document.querySelectorAll<HTMLButtonElement>('#tabs button')) {
    const on = b.dataset.panel === name;
    b.setAttribute('aria-selected', String(on));
    $(`panel-${b.dataset.panel}`).hidden = !on;
  }
}

export function drawRgb(canvasId: string, rgb: Uint8Array, width: number, height: number): void {
  const c = $<HTMLCanvasElement>(canvasId);
  c.width = width;
  c.height = height;
  const img = new ImageData(width, height);
  for (let i = 0, j = 0; j < rgb.length; i += 4, j += 3) {
    img.data[i] = rgb[j];
    img.data[i + 1] = rgb[j + 1];
    img.data[i + 2] = rgb[j + 2];
    img.data[i + 3] = 255;
  }
  c.getContext('2d')!.putImageData(img, 0, 0);
}

/** Makes element #id a drop zone: highlighted while something is dragged over it, `onDrop` called
 * with the drop event (the page's window-wide handler keeps stray drops from navigating away). */
export function dropZone(id: string, onDrop: (ev: DragEvent) => void): void {
  const el = $(id);
  el.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    el.classList.add('over');
  });
  el.addEventListener('dragleave', () => el.classList.remove('over'));
  el.addEventListener('drop', (ev) => {
    ev.preventDefault();
    el.classList.remove('over');
    onDrop(ev);
  });
}
