// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON, then the
// tensor data. The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
// (offsets relative to the start of the data section) and may hold "__metadata__", a
// string-to-string map. Tensors must cover the data section exactly: no overlaps, no holes.
//
// The reader accepts only what the format allows, and the writer writes nothing the reader
// refuses: a header of at most 100,000,000 bytes (the reference implementation's cap) that starts
// with "{"; every key once per object (a name given twice is refused, not "the last one wins":
// JSON.parse alone would silently keep the last); integers written as integers; known dtypes;
// shapes whose element count × item size equals the tensor's byte range; byte ranges that tile
// the data section exactly.
//
// Pure TypeScript on Uint8Array/ArrayBuffer (no Node built-ins): runs in browsers too.
// Multi-byte values are little-endian in the file; conversions read them with DataView or,
// on little-endian hosts (every platform WebGPU runs on), with typed-array copies.

export type DType =
  | 'F32' | 'F64' | 'I64' | 'I32' | 'U8' | 'F16' | 'BF16' | 'I16' | 'I8' | 'U16' | 'U32' | 'U64' | 'BOOL';

export interface STensor {
  dtype: DType;
  shape: number[];
  /**
   * Raw little-endian bytes: prod(shape) × itemsize of them. A view into the parsed buffer
   * when that view is aligned to the item size (data.byteOffset % itemsize === 0), a copy
   * otherwise, so `new Float32Array(data.buffer, data.byteOffset, n)` is always legal for F32.
   * A view aliases the input: do not modify the input while using the result.
   */
  data: Uint8Array;
}

export interface SafeTensors {
  tensors: Map<string, STensor>;
  metadata: Record<string, string>;
}

export interface STensorInput {
  dtype: DType;
  shape: number[];
  data: ArrayBufferView;
}

/** Thrown for any malformed safetensors input, bad serialization input or failed conversion. */
export class SafetensorsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

/** Bytes per element of each dtype. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = Object.freeze({
  F64: 8, I64: 8, U64: 8,
  F32: 4, I32: 4, U32: 4,
  F16: 2, BF16: 2, I16: 2, U16: 2,
  I8: 1, U8: 1, BOOL: 1,
});

const METADATA_KEY = '__metadata__';
/** The reference implementation's cap on the header's length, in bytes. */
export const MAX_HEADER_BYTES = 100_000_000;
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

/** obj[key] = value as an own property, even for the key "__proto__" (plain assignment would set the prototype). */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Where a value sits in the header, for messages: [] is the top level, ["w", "shape", 0] is
 * `tensor "w": "shape"[0]`, ["__metadata__", "k"] is `"__metadata__" "k"`. */
function describePath(path: (string | number)[]): string {
  if (path.length === 0) return 'the header';
  const [head, ...rest] = path;
  const first = head === METADATA_KEY ? `"${METADATA_KEY}"` : `tensor ${JSON.stringify(head)}`;
  if (rest.length === 0) return first;
  let where = '';
  for (const p of rest) where += typeof p === 'number' ? `[${p}]` : `${where ? '.' : ''}${JSON.stringify(p)}`;
  return `${first}: ${where}`;
}

/**
 * Walks the header JSON (already known to be valid JSON) for what JSON.parse hides: a key given
 * twice in one object (JSON.parse keeps the last), and a number written with a fraction or an
 * exponent (JSON.parse turns "4.0" and "4e0" into 4; the format's shapes and offsets are integers).
 * Returns a message naming the key and where it is, or null when the text has neither.
 */
function headerStructureProblem(text: string): string | null {
  interface Frame { keys: Set<string> | null; path: (string | number)[]; key: string | null; expectKey: boolean; index: number }
  const stack: Frame[] = [];
  const top = () => stack[stack.length - 1];
  // The path of the value that starts here: the enclosing object's current key, or an array index.
  const childPath = (): (string | number)[] => {
    const f = top();
    if (!f) return [];
    return [...f.path, f.keys ? f.key ?? '' : f.index];
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '{' || c === '[') {
      stack.push({ keys: c === '{' ? new Set() : null, path: childPath(), key: null, expectKey: c === '{', index: 0 });
      i++;
    } else if (c === '}' || c === ']') {
      stack.pop();
      i++;
    } else if (c === ',') {
      const f = top();
      if (f.keys) f.expectKey = true;
      else f.index++;
      i++;
    } else if (c === ':') {
      top().expectKey = false;
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const f = top();
      if (f?.keys && f.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string; // resolves escapes: "\u0061" is "a"
        if (f.keys.has(key)) {
          if (f.path.length === 0) {
            return key === METADATA_KEY ? `the header has "${METADATA_KEY}" twice`
              : `the header names tensor ${JSON.stringify(key)} twice (duplicate key)`;
          }
          return `${describePath(f.path)}: duplicate key ${JSON.stringify(key)}`;
        }
        f.keys.add(key);
        f.key = key;
      }
      i = j + 1;
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      let j = i;
      while (j < text.length && /[-+.0-9eE]/.test(text[j])) j++;
      const num = text.slice(i, j);
      const at = childPath();
      // Inside a tensor entry (metadata values and misplaced numbers get their own messages later).
      if (/[.eE]/.test(num) && at.length >= 2 && at[0] !== METADATA_KEY) {
        return `${describePath(at)} is ${num}, not written as an integer (the format's shapes and offsets are integers)`;
      }
      i = j;
    } else {
      i++; // whitespace, true, false, null
    }
  }
  return null;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** prod(shape), checked: every dimension a non-negative safe integer, the product safe too. */
function elementCount(shape: unknown, where: () => string): number {
  if (!Array.isArray(shape)) throw new SafetensorsError(`${where()}: "shape" must be an array of integers, got ${JSON.stringify(shape)}`);
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(`${where()}: "shape" must hold non-negative integers, got ${JSON.stringify(shape)}`);
    }
    n *= d;
    if (!Number.isSafeInteger(n)) throw new SafetensorsError(`${where()}: shape ${JSON.stringify(shape)} has too many elements`);
  }
  return n;
}

function asUint8(bytes: Uint8Array | ArrayBuffer): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  const tag = Object.prototype.toString.call(bytes);
  if (tag === '[object ArrayBuffer]' || tag === '[object SharedArrayBuffer]') return new Uint8Array(bytes as ArrayBuffer);
  if (ArrayBuffer.isView(bytes)) {
    const v = bytes as ArrayBufferView;
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  throw new SafetensorsError(`parseSafetensors: expected a Uint8Array or ArrayBuffer, got ${typeof bytes}`);
}

/**
 * Parses and validates a whole safetensors file held in memory. All of the header is checked
 * before any tensor is returned: a malformed file throws a SafetensorsError (prefixed with
 * `source`, e.g. the file name) that names the tensor, key or field at fault, and returns nothing.
 * Refused: a header longer than the file or than MAX_HEADER_BYTES, not UTF-8, not a JSON object;
 * a key given twice (tensor names, `__metadata__` keys, fields of a tensor entry); numbers with a
 * fraction or an exponent; `__metadata__` values that are not strings; a tensor entry without
 * dtype, shape or data_offsets, with an unknown dtype, a shape that is not non-negative integers,
 * offsets [begin, end] with end < begin or beyond the data, or end − begin ≠ prod(shape) × item
 * size; byte ranges that overlap or leave bytes of the data section to no tensor.
 */
export function parseSafetensors(bytes: Uint8Array | ArrayBuffer, source = 'safetensors data'): SafeTensors {
  const buf = asUint8(bytes);
  const src = source;
  if (buf.byteLength < 8) {
    throw new SafetensorsError(`${src}: file too short (${buf.byteLength} bytes): a safetensors file starts with an 8-byte header length`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const headerLen = hi * 2 ** 32 + lo; // exact below 2^53; anything above exceeds any real file
  if (headerLen > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`${src}: header length ${hi === 0 ? headerLen : `${hi}*2^32+${lo}`} exceeds the format's limit ` +
      `of ${MAX_HEADER_BYTES} bytes: not a safetensors file, or corrupt`);
  }
  if (headerLen > buf.byteLength - 8) {
    throw new SafetensorsError(`${src}: header length ${hi === 0 ? headerLen : `${hi}*2^32+${lo}`} exceeds the file ` +
      `(${buf.byteLength} bytes, at most ${buf.byteLength - 8} available for the header): not a safetensors file, or truncated`);
  }
  if (headerLen < 2) throw new SafetensorsError(`${src}: header length ${headerLen} is too small to hold a JSON object`);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + headerLen));
  } catch {
    throw new SafetensorsError(`${src}: header (${headerLen} bytes) is not valid UTF-8`);
  }
  if (text[0] !== '{') {
    throw new SafetensorsError(`${src}: invalid JSON header: must start with "{", starts with ${JSON.stringify(text.slice(0, 16))}`);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`${src}: invalid JSON header (${headerLen} bytes): ${(e as Error).message}`);
  }
  if (!isPlainObject(header)) throw new SafetensorsError(`${src}: invalid JSON header: expected an object`);
  const structural = headerStructureProblem(text);
  if (structural) throw new SafetensorsError(`${src}: ${structural}`);

  const dataStart = 8 + headerLen;
  const dataLen = buf.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  interface Entry { name: string; dtype: DType; shape: number[]; begin: number; end: number }
  const entries: Entry[] = [];

  for (const [name, raw] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isPlainObject(raw)) throw new SafetensorsError(`${src}: "${METADATA_KEY}" must be an object of strings, got ${JSON.stringify(raw)}`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== 'string') {
          throw new SafetensorsError(`${src}: metadata value of "${k}" must be a string, got ${JSON.stringify(v)}`);
        }
        setOwn(metadata, k, v);
      }
      continue;
    }
    const where = () => `${src}: tensor "${name}"`;
    if (!isPlainObject(raw)) throw new SafetensorsError(`${where()}: expected an object {dtype, shape, data_offsets}, got ${JSON.stringify(raw)}`);
    const dtype = raw.dtype;
    if (dtype === undefined) throw new SafetensorsError(`${where()}: missing "dtype"`);
    if (typeof dtype !== 'string') throw new SafetensorsError(`${where()}: invalid "dtype" ${JSON.stringify(dtype)} (expected a string)`);
    if (!isDType(dtype)) {
      throw new SafetensorsError(`${where()}: unknown dtype "${dtype}" (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`);
    }
    if (raw.shape === undefined) throw new SafetensorsError(`${where()}: missing "shape"`);
    const count = elementCount(raw.shape, where);
    const offs = raw.data_offsets;
    if (offs === undefined) throw new SafetensorsError(`${where()}: missing "data_offsets"`);
    if (!Array.isArray(offs) || offs.length !== 2 ||
        !offs.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)) {
      throw new SafetensorsError(`${where()}: "data_offsets" must be [begin, end] with non-negative integers, got ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) throw new SafetensorsError(`${where()}: data_offsets [${begin}, ${end}] end before they begin`);
    if (end > dataLen) {
      throw new SafetensorsError(`${where()}: data_offsets [${begin}, ${end}] out of range: the data section has ${dataLen} bytes`);
    }
    const expected = count * DTYPE_SIZE[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(`${where()}: shape/offset mismatch: ${dtype} ${JSON.stringify(raw.shape)} needs ` +
        `${count} × ${DTYPE_SIZE[dtype]} = ${expected} bytes, data_offsets [${begin}, ${end}] give ${end - begin}`);
    }
    entries.push({ name, dtype, shape: (raw.shape as number[]).slice(), begin, end });
  }

  // The tensors must tile the data section: sorted by offset, each starts where the last ended.
  const sorted = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: Entry | undefined;
  for (const e of sorted) {
    if (e.begin < pos) {
      throw new SafetensorsError(`${src}: overlapping offsets: tensor "${e.name}" [${e.begin}, ${e.end}] overlaps ` +
        `tensor "${prev!.name}" [${prev!.begin}, ${prev!.end}]`);
    }
    if (e.begin > pos) {
      throw new SafetensorsError(`${src}: invalid offsets: bytes [${pos}, ${e.begin}) of the data section belong to no tensor ` +
        `(hole before tensor "${e.name}")`);
    }
    pos = e.end;
    prev = e;
  }
  if (pos !== dataLen) {
    throw new SafetensorsError(`${src}: invalid offsets: the tensors cover ${pos} bytes but the data section has ${dataLen} ` +
      `(${dataLen - pos} trailing bytes belong to no tensor; truncated header or corrupt file)`);
  }

  const tensors = new Map<string, STensor>();
  for (const e of entries) {
    const abs = buf.byteOffset + dataStart + e.begin;
    let data = buf.subarray(dataStart + e.begin, dataStart + e.end);
    if (abs % DTYPE_SIZE[e.dtype] !== 0) data = data.slice();
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data });
  }
  return { tensors, metadata };
}

/**
 * Writes a safetensors file: header JSON (metadata first, then tensors in insertion order)
 * padded with spaces so the data starts at a multiple of 8, then the tensors, contiguous.
 * Each `data` view's bytes are written as they are (little-endian on every WebGPU platform).
 * Throws a SafetensorsError naming the tensor or metadata key for anything parseSafetensors would
 * refuse: a metadata value that is not a string, a tensor named `__metadata__`, an unknown dtype,
 * a shape that is not non-negative integers, data whose byte length is not prod(shape) × item
 * size, a header over MAX_HEADER_BYTES.
 */
export function serializeSafetensors(
  tensors: Record<string, STensorInput> | Map<string, STensorInput>,
  metadata?: Record<string, string>,
): Uint8Array {
  const list: [string, STensorInput][] = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new SafetensorsError('serializeSafetensors: metadata must be an object of strings');
    const md: Record<string, string> = {};
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(`serializeSafetensors: metadata value of "${k}" must be a string, got ${typeof v}`);
      setOwn(md, k, v);
    }
    if (Object.keys(md).length > 0) header[METADATA_KEY] = md;
  }
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of list) {
    const where = () => `serializeSafetensors: tensor "${name}"`;
    if (name === METADATA_KEY) throw new SafetensorsError(`${where()}: the name is reserved for metadata`);
    if (!isPlainObject(t)) throw new SafetensorsError(`${where()}: expected {dtype, shape, data}`);
    if (!isDType(t.dtype)) throw new SafetensorsError(`${where()}: unknown dtype ${JSON.stringify(t.dtype)} (supported: ${Object.keys(DTYPE_SIZE).join(', ')})`);
    const count = elementCount(t.shape, where);
    if (!ArrayBuffer.isView(t.data)) throw new SafetensorsError(`${where()}: "data" must be a typed array or DataView`);
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const expected = count * DTYPE_SIZE[t.dtype];
    if (bytes.byteLength !== expected) {
      throw new SafetensorsError(`${where()}: ${t.dtype} ${JSON.stringify(t.shape)} needs ${count} × ${DTYPE_SIZE[t.dtype]} = ` +
        `${expected} bytes, data has ${bytes.byteLength}`);
    }
    setOwn(header, name, { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + expected] });
    parts.push(bytes);
    offset += expected;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.byteLength) / 8) * 8 - 8;
  if (padded > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`serializeSafetensors: the header would take ${padded} bytes, over the format's limit of ${MAX_HEADER_BYTES}`);
  }
  const out = new Uint8Array(8 + padded + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded % 2 ** 32, true);
  dv.setUint32(4, Math.floor(padded / 2 ** 32), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + padded);
  let pos = 8 + padded;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.byteLength;
  }
  return out;
}

function numel(t: STensor): number {
  let n = 1;
  for (const d of t.shape) n *= d;
  return n;
}

function checkSize(t: STensor, fn: string, what: string): number {
  if (!isDType(t.dtype)) throw new SafetensorsError(`${fn}: ${what}: unknown dtype ${JSON.stringify(t.dtype)}`);
  const n = numel(t);
  if (t.data.byteLength !== n * DTYPE_SIZE[t.dtype]) {
    throw new SafetensorsError(`${fn}: ${what}: ${t.dtype} ${JSON.stringify(t.shape)} needs ${n * DTYPE_SIZE[t.dtype]} bytes, ` +
      `data has ${t.data.byteLength}`);
  }
  return n;
}

function viewOf(t: STensor): DataView {
  return new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** IEEE 754 binary16 bits to a number. */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/**
 * The tensor's values as float32 (always a fresh array). F32 is copied (unaligned data is
 * fine); F64, F16 and BF16 are converted. `name` only labels error messages.
 */
export function toFloat32(t: STensor, name = 'tensor'): Float32Array {
  const n = checkSize(t, 'toFloat32', name);
  const out = new Float32Array(n);
  const dv = viewOf(t);
  switch (t.dtype) {
    case 'F32':
      if (HOST_LITTLE_ENDIAN) new Uint8Array(out.buffer).set(t.data);
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = f16BitsToNumber(dv.getUint16(i * 2, true));
      return out;
    case 'BF16': {
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = dv.getUint16(i * 2, true) << 16;
      return out;
    }
    default:
      throw new SafetensorsError(`toFloat32: ${name} has dtype ${t.dtype}, not a floating-point type (use toInt32)`);
  }
}

const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;

/**
 * The tensor's values as int32 (always a fresh array). I64, U32 and U64 are range-checked
 * and throw on the first value outside int32; BOOL gives 0/1. `name` only labels errors.
 */
export function toInt32(t: STensor, name = 'tensor'): Int32Array {
  const n = checkSize(t, 'toInt32', name);
  const out = new Int32Array(n);
  const dv = viewOf(t);
  const outOfRange = (i: number, v: bigint | number) =>
    new SafetensorsError(`toInt32: ${name} (${t.dtype} ${JSON.stringify(t.shape)}): value ${v} at flat index ${i} ` +
      `is outside the int32 range [${I32_MIN}, ${I32_MAX}]`);
  switch (t.dtype) {
    case 'I64':
      for (let i = 0; i < n; i++) {
        const lo = dv.getInt32(i * 8, true);
        const hi = dv.getInt32(i * 8 + 4, true);
        if (hi !== (lo < 0 ? -1 : 0)) throw outOfRange(i, dv.getBigInt64(i * 8, true));
        out[i] = lo;
      }
      return out;
    case 'U64':
      for (let i = 0; i < n; i++) {
        const lo = dv.getUint32(i * 8, true);
        const hi = dv.getUint32(i * 8 + 4, true);
        if (hi !== 0 || lo > I32_MAX) throw outOfRange(i, dv.getBigUint64(i * 8, true));
        out[i] = lo;
      }
      return out;
    case 'I32':
      if (HOST_LITTLE_ENDIAN) new Uint8Array(out.buffer).set(t.data);
      else for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true);
      return out;
    case 'U32':
      for (let i = 0; i < n; i++) {
        const v = dv.getUint32(i * 4, true);
        if (v > I32_MAX) throw outOfRange(i, v);
        out[i] = v;
      }
      return out;
    case 'I16':
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true);
      return out;
    case 'U16':
      for (let i = 0; i < n; i++) out[i] = dv.getUint16(i * 2, true);
      return out;
    case 'I8':
      for (let i = 0; i < n; i++) out[i] = dv.getInt8(i);
      return out;
    case 'U8':
      out.set(t.data);
      return out;
    case 'BOOL':
      for (let i = 0; i < n; i++) out[i] = t.data[i] !== 0 ? 1 : 0;
      return out;
    default:
      throw new SafetensorsError(`toInt32: ${name} has dtype ${t.dtype}, not an integer type (use toFloat32)`);
  }
}
