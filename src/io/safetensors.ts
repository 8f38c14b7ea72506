// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors).
//
// Layout: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON, then the
// tensor data. The JSON maps each tensor name to {dtype, shape, data_offsets: [begin, end]}
// (offsets relative to the start of the data section) and may hold "__metadata__", a
// string-to-string map. Tensors must cover the data section exactly: no overlaps, no holes.
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
const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
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
 * Parses and validates a whole safetensors file held in memory.
 * `source` (e.g. the file name) prefixes every error message.
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
        metadata[k] = v;
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
      md[k] = v;
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
    header[name] = { dtype: t.dtype, shape: t.shape.slice(), data_offsets: [offset, offset + expected] };
    parts.push(bytes);
    offset += expected;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil((8 + json.byteLength) / 8) * 8 - 8;
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
