// The Train panel's worker: TrainSession (src/train/session.ts) on its own WebGPU device, so that
// training never runs on the page's main thread (which only draws what this posts). Requests
// carry an id and get one reply {id, ok, value | error}; steps and evaluations are posted as they
// happen ({event: 'step' | 'eval'}). Checkpoints come back as transferred ArrayBuffers.
import { init, engine, openDropped, TrainSession, type SessionOptions, type SessionInit, type SessionState, type EvalReport } from '../src/index.js';
import { decodePhoto } from './decode.js';

export type WorkerRequest =
  | { type: 'create'; options: Partial<SessionOptions>; data: { entries: [string, Uint8Array][]; heldOutEvery: number } | null; init: SessionInit | null; resume: SessionState | null }
  | { type: 'save' } | { type: 'run' } | { type: 'pause' } | { type: 'evaluate' } | { type: 'checkpoint' } | { type: 'dispose' } | { type: 'stats' };

export interface CreatedInfo {
  options: SessionOptions;
  initReport: string;
  configName: string;
  trainLength: number;
  valLength: number;
  adapter: string;
}

type Stats = ReturnType<ReturnType<typeof engine>['stats']>;

const scope = self as unknown as {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  onmessage: ((ev: MessageEvent<{ id: number; req: WorkerRequest }>) => void) | null;
};

let session: TrainSession | null = null;
let started: Promise<void> | null = null;

function stats(): Stats | null {
  return started ? engine().stats() : null;
}

async function handle(req: WorkerRequest): Promise<{ value: unknown; transfer?: Transferable[] }> {
  switch (req.type) {
    case 'create': {
      started ??= init().then(() => undefined);
      await started;
      if (session) await session.dispose();
      session = null;
      const dropped = req.data ? await openDropped(req.data.entries, decodePhoto, { heldOutEvery: req.data.heldOutEvery }) : null;
      session = new TrainSession(req.options, dropped ? { train: dropped.train, val: dropped.val, labelMap: dropped.labelMap } : undefined, req.init ?? undefined, req.resume ?? undefined);
      const info: CreatedInfo = {
        options: session.options, initReport: session.initReport, configName: session.model.config.name,
        trainLength: session.train.length, valLength: session.val.length, adapter: engine().adapterName,
      };
      return { value: info };
    }
    case 'run': {
      const s = need();
      const n = await s.run({
        onStep: (r) => scope.postMessage({ event: 'step', report: r, stats: stats() }),
        onEval: (r) => scope.postMessage({ event: 'eval', report: r }),
      });
      return { value: { n, step: s.step, done: s.done, stats: stats() } };
    }
    case 'save': {
      const st = await need().saveState();
      return { value: st, transfer: [st.model.buffer as ArrayBuffer, st.optimizer.buffer as ArrayBuffer] };
    }
    case 'pause':
      session?.pause();
      return { value: null };
    case 'evaluate': {
      const r: EvalReport = await need().evaluate();
      return { value: r };
    }
    case 'checkpoint': {
      const bytes = await need().checkpoint();
      const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      return { value: buf, transfer: [buf] };
    }
    case 'dispose':
      if (session) await session.dispose();
      session = null;
      return { value: stats() };
    case 'stats':
      return { value: stats() };
  }
}

function need(): TrainSession {
  if (!session) throw new Error('training: no session (start one first)');
  return session;
}

scope.onmessage = (ev) => {
  const { id, req } = ev.data;
  handle(req).then(
    ({ value, transfer }) => scope.postMessage({ id, ok: true, value }, transfer ?? []),
    (e) => scope.postMessage({ id, ok: false, error: (e instanceof Error ? e.message : String(e)).replace(/^atrous: /, '') }),
  );
};
