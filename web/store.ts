// The Train panel's saved run in IndexedDB (database 'atrous-demo', store 'runs', key 'last'): the
// session's state (model, momentum, step; src/train/session.ts SessionState), its options, and the
// files of the dataset it trains on, so that a reload can resume it exactly.
import type { SessionOptions, SessionState } from '../src/index.js';

export interface SavedRun {
  savedAt: string;
  options: SessionOptions;
  /** 'shapes' or the dropped folder's name. */
  dataset: string;
  /** What the weights came from when the run started. */
  init: string;
  data: { entries: [string, Uint8Array][]; heldOutEvery: number } | null;
  state: SessionState;
}

const DB = 'atrous-demo';
const STORE = 'runs';
const KEY = 'last';

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB: cannot open the database'));
  });
}

async function tx<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await open();
  try {
    return await new Promise<T>((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error ?? new Error('IndexedDB: the transaction failed'));
      t.onabort = () => reject(t.error ?? new Error('IndexedDB: the transaction was aborted (out of storage space?)'));
    });
  } finally {
    db.close();
  }
}

export const saveRun = (run: SavedRun): Promise<IDBValidKey> => tx('readwrite', (s) => s.put(run, KEY));
export const loadRun = async (): Promise<SavedRun | null> => (await tx<SavedRun | undefined>('readonly', (s) => s.get(KEY))) ?? null;
export const deleteRun = (): Promise<undefined> => tx('readwrite', (s) => s.delete(KEY));
