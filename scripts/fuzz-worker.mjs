// One reader's fuzz inputs [from, to) for scripts/soak.mjs: prints one JSON line per input,
// {"i", "outcome": "clear" | "accepted" | "silent" | "unclear", "msg"}. Input i is a function of
// (reader, seed, i) alone, so the parent can restart after a crash or a hang at the next input.
//   node scripts/fuzz-worker.mjs READER SEED FROM TO REFERENCE_RUN WORKDIR
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { xorshift as rng } from './xorshift.mjs';

const [reader, seedArg, fromArg, toArg, ref, work] = process.argv.slice(2);
const dist = new URL('../dist/src/', import.meta.url);
const load = (m) => import(new URL(m, dist).href);
const image = await load('io/image.js');
const checkpoint = await load('io/checkpoint.js');
const { RunDir } = await load('train/rundir.js');
const { checkTrainOptions } = await load('train/options.js');
const { parseTrainArgs } = await load('cli/train.js');

const int = (r, n) => Math.floor(r() * n);

function crc32(b) {
  let c = ~0;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

/** Byte-level mutations, biased towards the first `hot` bytes (headers). */
function mutateBytes(src, r, hot = 64) {
  const b = Uint8Array.from(src);
  const pos = () => (r() < 0.5 ? int(r, Math.min(hot, b.length)) : int(r, b.length));
  switch (int(r, 6)) {
    case 0: for (let k = 1 + int(r, 4); k > 0; k--) b[pos()] ^= 1 << int(r, 8); return b;
    case 1: for (let k = 1 + int(r, 4); k > 0; k--) b[pos()] = [0, 0xff, 0x7f, 0x80, int(r, 256)][int(r, 5)]; return b;
    case 2: return b.slice(0, pos());
    case 3: { const p = pos(); return Uint8Array.from([...b.subarray(0, p), ...Array.from({ length: 1 + int(r, 16) }, () => int(r, 256)), ...b.subarray(p)]); }
    case 4: { const p = pos(); const n = 1 + int(r, 64); return Uint8Array.from([...b.subarray(0, p), ...b.subarray(p + n)]); }
    default: { const p = pos(); const n = 1 + int(r, 32); const q = pos(); const out = Uint8Array.from(b); out.set(b.subarray(q, q + n).slice(0, out.length - p), p); return out; }
  }
}

/** A PNG whose IHDR claims another size, its CRC fixed: a file that lies consistently. */
function lyingPng(png, r) {
  const b = Uint8Array.from(png);
  const dv = new DataView(b.buffer);
  const big = [int(r, 20000) + 1, int(r, 20000) + 1];
  dv.setUint32(16, r() < 0.5 ? big[0] : dv.getUint32(16) + 1 + int(r, 64));
  dv.setUint32(20, r() < 0.5 ? big[1] : dv.getUint32(20) + int(r, 64));
  dv.setUint32(29, crc32(b.subarray(12, 29)));
  return b;
}

/** A JPEG whose frame header claims another size. */
function lyingJpeg(jpg, r) {
  const b = Uint8Array.from(jpg);
  for (let i = 2; i < b.length - 9; i++) {
    if (b[i] === 0xff && b[i + 1] >= 0xc0 && b[i + 1] <= 0xc2) {
      const dv = new DataView(b.buffer);
      dv.setUint16(i + 5, Math.min(65535, dv.getUint16(i + 5) + 1 + int(r, r() < 0.5 ? 64 : 60000)));
      dv.setUint16(i + 7, Math.min(65535, dv.getUint16(i + 7) + int(r, 64)));
      break;
    }
  }
  return b;
}

const VALUES = [-1, 0, 1, 0.5, -0.5, 1e30, 2 ** 53 + 2, null, true, 'x', '2', '', [], [0.1], {}, '../../etc/passwd', '/etc', 'NaN', 1e-300];

/** JSON-aware mutations: a value replaced, a key removed or added; or a byte mutation of the text. */
function mutateJson(text, r) {
  if (r() < 0.25) return Buffer.from(mutateBytes(Buffer.from(text), r, text.length)).toString('latin1');
  let j;
  try {
    j = JSON.parse(text);
  } catch {
    return text.slice(0, int(r, text.length));
  }
  const paths = [];
  const walk = (v, p) => {
    if (v && typeof v === 'object') for (const k of Object.keys(v)) { paths.push([...p, k]); walk(v[k], [...p, k]); }
  };
  walk(j, []);
  if (!paths.length) return JSON.stringify(VALUES[int(r, VALUES.length)]);
  const p = paths[int(r, paths.length)];
  let parent = j;
  for (const k of p.slice(0, -1)) parent = parent[k];
  const key = p[p.length - 1];
  const op = int(r, 10);
  if (op === 0) delete parent[key];
  else if (op === 1 && !Array.isArray(parent)) parent[`unknown${int(r, 9)}`] = VALUES[int(r, VALUES.length)];
  else parent[key] = VALUES[int(r, VALUES.length)];
  return JSON.stringify(j, null, r() < 0.5 ? 2 : 0) + (r() < 0.5 ? '\n' : '');
}

// ----------------------------------------------------------------------------------- the readers

const px = Uint8Array.from({ length: 40 * 30 * 3 }, (_, i) => (i * 37 + (i >> 7) * 11) & 255);
const labels = Uint8Array.from({ length: 40 * 30 }, (_, i) => ((i % 40) >> 3) % 21);
const SEEDS = {
  png: () => image.encodePng(px, 40, 30),
  jpeg: () => image.encodeJpeg(px, 40, 30, 90),
  'label-png': () => image.encodeIndexedPng(labels, 40, 30),
};

let model = null;
async function gpu() {
  if (!model) {
    const { init } = await load('init.js');
    await init();
    model = true;
  }
}

/** Returns [input description, a function that reads it and returns null (valid) or a broken invariant]. */
async function prepare(i, r) {
  const name = join(work, `fuzz-${reader}-${i}`);
  if (reader === 'png' || reader === 'jpeg' || reader === 'label-png') {
    const src = SEEDS[reader]();
    const lie = r() < 0.15;
    const bytes = lie ? (reader === 'jpeg' ? lyingJpeg(src, r) : lyingPng(src, r)) : mutateBytes(src, r, 128);
    return [name, () => {
      const img = reader === 'label-png' ? image.decodeLabelPng(bytes, name) : image.decodeImage(bytes, name);
      const info = image.imageInfo(bytes, name);
      if (img.width !== info.width || img.height !== info.height) return `decoded ${img.width}×${img.height}, the header says ${info.width}×${info.height}`;
      if (img.data.length !== img.width * img.height * (reader === 'label-png' ? 1 : 3)) return `decoded ${img.data.length} bytes for ${img.width}×${img.height}`;
      if (lie && reader === 'jpeg' && (img.width !== 40 || img.height !== 30)) return `a JPEG claiming ${img.width}×${img.height} (its data holds 40×30) was decoded`;
      return null;
    }];
  }
  if (reader === 'safetensors') {
    await gpu();
    const src = readFileSync(join(ref, JSON.parse(readFileSync(join(ref, 'latest.json'), 'utf8')).dir, 'model.safetensors'));
    const headerLen = new DataView(src.buffer, src.byteOffset).getUint32(0, true) + 8;
    let bytes;
    if (r() < 0.3) {
      // a value-level lie in the data section: a NaN, an Inf, a negative variance, a huge count
      bytes = Uint8Array.from(src);
      const dv = new DataView(bytes.buffer);
      const at = headerLen + 4 * int(r, (bytes.length - headerLen) / 4);
      dv.setFloat32(at, [NaN, Infinity, -Infinity, -1, 3e38][int(r, 5)], true);
    } else bytes = mutateBytes(src, r, headerLen + 8);
    return [name, () => {
      const ck = checkpoint.readCheckpoint(bytes, name);
      for (const [k, t] of ck.state) {
        for (const v of t.data) {
          if (!Number.isFinite(v)) return `tensor ${k} holds ${v}`;
          if (k.endsWith('running_var') && v < 0) return `tensor ${k} holds the variance ${v}`;
        }
      }
      const { model: m } = checkpoint.modelFromCheckpoint(bytes, { source: name });
      m.dispose();
      return null;
    }];
  }
  if (reader === 'run-dir') {
    const dir = `${name}.run`;
    rmSync(dir, { recursive: true, force: true });
    cpSync(ref, dir, { recursive: true });
    const latest = JSON.parse(readFileSync(join(ref, 'latest.json'), 'utf8'));
    const files = ['run.json', 'latest.json', join(latest.dir, 'state.json'), 'metrics.jsonl'];
    const f = files[int(r, files.length)];
    const text = readFileSync(join(dir, f), 'utf8');
    if (f === 'metrics.jsonl') {
      const lines = text.split('\n');
      const k = int(r, lines.length - 1);
      lines[k] = r() < 0.5 ? mutateJson(lines[k], r).replace(/\n/g, '') : lines[k].slice(0, int(r, lines[k].length));
      writeFileSync(join(dir, f), lines.join('\n'));
    } else writeFileSync(join(dir, f), mutateJson(text, r));
    return [dir, () => {
      // what a resume reads before its first step, in its order
      const run = RunDir.open(dir);
      const info = run.readRun();
      if (info?.format !== 'atrous-run') throw new Error(`${run.file('run.json')}: not an atrous run`);
      try {
        checkTrainOptions(info.options);
      } catch (e) {
        throw new Error(`${run.file('run.json')}: ${e.message}`);
      }
      const p = run.latest();
      if (p) {
        const sfile = run.latestFile('state.json');
        let st;
        try {
          st = JSON.parse(readFileSync(sfile, 'utf8'));
        } catch (e) {
          throw new Error(`${sfile}: ${e.message}`);
        }
        run.checkState(st, p, info.options.seed, sfile);
        checkpoint.readCheckpoint(readFileSync(run.latestFile('model.safetensors')), run.latestFile('model.safetensors'));
      }
      const m = run.readMetrics(p?.step ?? 0, () => {});
      if (m.some((x) => !Number.isSafeInteger(x.step))) return 'a metrics record without an integer step';
      if (p && !p.dir.startsWith('checkpoints/')) return `latest.json names ${p.dir}`;
      rmSync(dir, { recursive: true, force: true });
      return null;
    }];
  }
  if (reader === 'config') {
    const src = readFileSync(new URL('../configs/main.json', import.meta.url), 'utf8');
    const file = `${name}.json`;
    writeFileSync(file, mutateJson(src, r));
    return [file, () => {
      const parsed = parseTrainArgs(['--config', file, '--out', join(work, 'never-written')]);
      checkTrainOptions(parsed.options);
      return null;
    }];
  }
  throw new Error(`unknown reader ${reader}`);
}

const seed = Number(seedArg);
const names = { png: 1, jpeg: 2, 'label-png': 3, safetensors: 4, 'run-dir': 5, config: 6 };
mkdirSync(work, { recursive: true });
for (let i = Number(fromArg); i < Number(toArg); i++) {
  const r = rng(seed * 1_000_003 + names[reader] * 7919 + i * 104_729);
  const [name, read] = await prepare(i, r);
  let outcome;
  let msg = '';
  try {
    const broken = read();
    outcome = broken === null ? 'accepted' : 'silent';
    msg = broken ?? '';
  } catch (e) {
    msg = e instanceof Error ? e.message : String(e);
    const named = e instanceof Error && !(e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError) && msg.includes(name);
    outcome = named ? 'clear' : 'unclear';
  }
  process.stdout.write(`${JSON.stringify({ i, outcome, msg: msg.slice(0, 300) })}\n`);
}
process.exit(0);
