// Your own data in the Train panel: a folder (directory picker or drop) or a zip in VOC layout, or
// images/ + masks/ pairs, read into memory, checked by the reader of `atrous data check`
// (src/data/voc-core.ts through src/data/dropped.ts: same checks, same messages, the per-class pixel
// table and the label map of atrous-dataset.json) and split into training and held-out images.
// Photos are decoded by the browser, upright (imageOrientation 'from-image', as the Segment panel);
// label PNGs by atrous's own decoder, so their raw palette indices are read exactly as the CLI reads them.
import { openDropped, unzipFiles, type DroppedDataset } from '../src/index.js';
import { $, demo, dropZone, errText, setStatus } from './page.js';
import { decodePhoto } from './decode.js';

let current: (DroppedDataset & { entries: [string, Uint8Array][]; heldOutEvery: number }) | null = null;

/** The dataset the Train panel trains on when "your data" is chosen; null before one was checked. */
export function droppedDataset(): (DroppedDataset & { entries: [string, Uint8Array][]; heldOutEvery: number }) | null {
  return current;
}

async function readAll(files: { path: string; file: File }[]): Promise<[string, Uint8Array][]> {
  const out: [string, Uint8Array][] = [];
  for (const { path, file } of files) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    if (/\.zip$/i.test(file.name) && files.length === 1) out.push(...unzipFiles(bytes, file.name));
    else out.push([path, bytes]);
  }
  return out;
}

/** The entries of a dropped folder (DataTransferItem.webkitGetAsEntry), recursively. */
async function walkEntry(entry: FileSystemEntry, out: { path: string; file: File }[]): Promise<void> {
  if (entry.isFile) {
    const file = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
    out.push({ path: entry.fullPath.replace(/^\//, ''), file });
    return;
  }
  const reader = (entry as FileSystemDirectoryEntry).createReader();
  for (;;) {
    const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
    if (batch.length === 0) break;
    for (const e of batch) await walkEntry(e, out);
  }
}

function heldOutEvery(): number {
  const raw = $<HTMLInputElement>('data-heldout').value.trim();
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 2) throw new Error(`Hold out one image in N: N must be an integer ≥ 2, got '${raw}'`);
  return v;
}

async function useFiles(files: { path: string; file: File }[], what: string): Promise<void> {
  current = null;
  demo.data = { state: 'checking', source: what, message: '', layout: '', train: 0, val: 0, numClasses: 0, classNames: [], labelMap: null, lines: [], warnings: [] };
  $('data-report').textContent = '';
  setStatus('data-status', `Reading ${what}…`);
  updateDataChoice();
  try {
    const entries = await readAll(files);
    const every = heldOutEvery();
    const ds = await openDropped(entries, decodePhoto, { heldOutEvery: every });
    current = { ...ds, entries, heldOutEvery: every };
    demo.data = {
      state: 'ready', source: what, message: '', layout: ds.layout, train: ds.train.length, val: ds.val.length,
      numClasses: ds.numClasses, classNames: [...ds.classNames], labelMap: ds.labelMap, lines: ds.lines, warnings: ds.warnings,
    };
    const layout = ds.layout === 'voc' ? `VOC layout${ds.voc.split === 'all' ? ', pairs by name' : `, list ${ds.voc.split}.txt`}` : `pairs by name (${ds.voc.imageDir}/ and ${ds.voc.labelDir}/)`;
    setStatus('data-status', `${what}: ${layout}; ${ds.train.length} training images, ${ds.val.length} held out (${ds.heldOutFrom}); `
      + `${ds.numClasses} classes; ${ds.warnings.length ? `${ds.warnings.length} warning${ds.warnings.length > 1 ? 's' : ''} (below)` : 'no problems found'}.`);
    $('data-report').textContent = ds.lines.join('\n');
    $<HTMLInputElement>('train-on-data').checked = true;
  } catch (e) {
    demo.data = { ...demo.data!, state: 'error', message: errText(e) };
    setStatus('data-status', errText(e), true);
  }
  updateDataChoice();
}

/** "Train on": your data is selectable once a dataset passed the checks. */
export function updateDataChoice(): void {
  const on = $<HTMLInputElement>('train-on-data');
  on.disabled = current === null;
  if (on.disabled) $<HTMLInputElement>('train-on-shapes').checked = true;
}

export function setupData(): void {
  const folder = $<HTMLInputElement>('data-folder');
  folder.addEventListener('change', () => {
    const files = [...(folder.files ?? [])].map((file) => ({ path: file.webkitRelativePath || file.name, file }));
    const top = files[0]?.path.split('/')[0] ?? 'the folder';
    if (files.length) void useFiles(files, top);
    folder.value = '';
  });
  const zip = $<HTMLInputElement>('data-zip');
  zip.addEventListener('change', () => {
    const f = zip.files?.[0];
    if (f) void useFiles([{ path: f.name, file: f }], f.name);
    zip.value = '';
  });
  dropZone('data-drop', (ev) => {
    const items = [...(ev.dataTransfer?.items ?? [])].map((it) => it.webkitGetAsEntry?.()).filter((e): e is FileSystemEntry => !!e);
    void (async () => {
      const files: { path: string; file: File }[] = [];
      if (items.length) for (const e of items) await walkEntry(e, files);
      else for (const file of ev.dataTransfer?.files ?? []) files.push({ path: file.name, file });
      const what = items.length === 1 ? items[0].name : files.length === 1 ? files[0].file.name : `${files.length} dropped files`;
      if (files.length) await useFiles(files, what);
    })();
  });
  updateDataChoice();
}
