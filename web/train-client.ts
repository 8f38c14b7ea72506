// The page's side of the training worker (web/train-worker.ts): a session object with the shape
// of TrainSession's that the Train panel uses, whose every call is a message to the worker.
import type { SessionOptions, SessionInit, SessionState, StepReport, EvalReport, SessionHooks } from '../src/index.js';
import type { CreatedInfo, WorkerRequest } from './train-worker.js';

export type WorkerStats = { liveBuffers: number; liveBytes: number; allocatedBuffers: number; allocatedBytes: number; uniformBuffers: number; pipelines: number };

let worker: Worker | null = null;
let nextId = 1;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
let hooks: SessionHooks & { onStats?: (s: WorkerStats) => void } = {};

function theWorker(): Worker {
  if (worker) return worker;
  worker = new Worker(new URL('train-worker.js', import.meta.url), { type: 'module' });
  worker.onmessage = (ev: MessageEvent) => {
    const m = ev.data;
    if (m.event === 'step') {
      hooks.onStep?.(m.report as StepReport);
      if (m.stats) hooks.onStats?.(m.stats as WorkerStats);
    } else if (m.event === 'eval') hooks.onEval?.(m.report as EvalReport);
    else {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok) p?.resolve(m.value);
      else p?.reject(new Error(m.error));
    }
  };
  worker.onerror = (ev) => {
    const err = new Error(`the training worker failed: ${ev.message || 'no message'}`);
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    // A worker that failed (its script did not load, say) is dropped: the next call starts a new one.
    worker?.terminate();
    worker = null;
  };
  return worker;
}

function call<T>(req: WorkerRequest): Promise<T> {
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    theWorker().postMessage({ id, req });
  });
}

/** A TrainSession living in the worker. */
export class WorkerSession {
  step = 0;
  done = false;
  private constructor(readonly info: CreatedInfo) {}

  get options(): SessionOptions {
    return this.info.options;
  }

  static async create(options: Partial<SessionOptions>, data: { entries: [string, Uint8Array][]; heldOutEvery: number } | null, init: SessionInit | undefined,
    resume?: SessionState): Promise<WorkerSession> {
    const s = new WorkerSession(await call<CreatedInfo>({ type: 'create', options, data, init: init ?? null, resume: resume ?? null }));
    if (resume) {
      s.step = resume.step;
      s.done = resume.step >= s.options.steps;
    }
    return s;
  }

  /** The session's state (SessionState), to resume it after a reload. */
  saveState(): Promise<SessionState> {
    return call<SessionState>({ type: 'save' });
  }

  async run(h: SessionHooks & { onStats?: (s: WorkerStats) => void }): Promise<{ n: number; stats: WorkerStats | null }> {
    hooks = {
      ...h,
      onStep: (r) => {
        this.step = r.step;
        h.onStep?.(r);
      },
    };
    const r = await call<{ n: number; step: number; done: boolean; stats: WorkerStats | null }>({ type: 'run' });
    this.step = r.step;
    this.done = r.done;
    return r;
  }

  pause(): void {
    void call({ type: 'pause' });
  }

  evaluate(): Promise<EvalReport> {
    return call<EvalReport>({ type: 'evaluate' });
  }

  async checkpoint(): Promise<Uint8Array> {
    return new Uint8Array(await call<ArrayBuffer>({ type: 'checkpoint' }));
  }

  /** Frees the model and optimizer state in the worker; returns the worker engine's memory after. */
  dispose(): Promise<WorkerStats | null> {
    return call<WorkerStats | null>({ type: 'dispose' });
  }
}
