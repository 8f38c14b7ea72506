import { expect } from 'chai';
import {
  parseSafetensors, serializeSafetensors, toFloat32, toInt32, SafetensorsError, MAX_HEADER_BYTES,
  type DType, type STensor, type STensorInput,
} from '../src/io/safetensors.js';

/** A file from a raw header string (not padded unless asked) and raw data bytes. */
function craft(headerJson: string, data: ArrayLike<number> = [], pad = false): Uint8Array {
  let h = headerJson;
  if (pad) while ((8 + h.length) % 8 !== 0) h += ' ';
  const hb = new TextEncoder().encode(h);
  const out = new Uint8Array(8 + hb.length + data.length);
  new DataView(out.buffer).setUint32(0, hb.length, true);
  out.set(hb, 8);
  out.set(data, 8 + hb.length);
  return out;
}

function expectError(fn: () => unknown, ...parts: (string | RegExp)[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').to.be.instanceOf(SafetensorsError);
  const msg = (err as Error).message;
  for (const p of parts) {
    if (typeof p === 'string') expect(msg).to.include(p);
    else expect(msg).to.match(p);
  }
}

const SRC = 'model.safetensors';

describe('safetensors', () => {
  describe('round trip', () => {
    const inputs: Record<string, STensorInput> = {
      'w.f32': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, -2.5, 3e-8, 1e30, -0, 7]) },
      'w.f64': { dtype: 'F64', shape: [3], data: new Float64Array([Math.PI, -1e-300, 2]) },
      'idx.i64': { dtype: 'I64', shape: [4], data: new BigInt64Array([0n, -1n, 2147483647n, -2147483648n]) },
      'i32': { dtype: 'I32', shape: [2, 1], data: new Int32Array([-7, 123456789]) },
      'u8': { dtype: 'U8', shape: [5], data: new Uint8Array([0, 1, 127, 128, 255]) },
      'h.f16': { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x3555]) },
      'bf16': { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc040]) },
      'i16': { dtype: 'I16', shape: [2], data: new Int16Array([-32768, 32767]) },
      'i8': { dtype: 'I8', shape: [3], data: new Int8Array([-128, 0, 127]) },
      'u16': { dtype: 'U16', shape: [1], data: new Uint16Array([65535]) },
      'u32': { dtype: 'U32', shape: [2], data: new Uint32Array([0, 2147483647]) },
      'u64': { dtype: 'U64', shape: [1], data: new BigUint64Array([42n]) },
      'mask': { dtype: 'BOOL', shape: [2, 2], data: new Uint8Array([1, 0, 0, 1]) },
      'scalar': { dtype: 'F32', shape: [], data: new Float32Array([0.125]) },
      'empty': { dtype: 'F32', shape: [0, 3], data: new Float32Array(0) },
    };
    const meta = { format: 'pt', note: 'ünïcödé ✓' };
    const file = serializeSafetensors(inputs, meta);
    const parsed = parseSafetensors(file, SRC);

    it('pads the header so the data starts at a multiple of 8, with spaces', () => {
      const n = new DataView(file.buffer, file.byteOffset).getUint32(0, true);
      expect(new DataView(file.buffer, file.byteOffset).getUint32(4, true)).to.equal(0);
      expect((8 + n) % 8).to.equal(0);
      const header = new TextDecoder().decode(file.subarray(8, 8 + n));
      expect(header[0]).to.equal('{');
      expect(header.trimEnd().endsWith('}')).to.equal(true);
      expect(/^[^ ]* *$/.test(header.slice(header.lastIndexOf('}')))).to.equal(true);
    });

    it('keeps names, dtypes, shapes, bytes and metadata', () => {
      expect(parsed.metadata).to.deep.equal(meta);
      expect([...parsed.tensors.keys()].sort()).to.deep.equal(Object.keys(inputs).sort());
      for (const [name, t] of Object.entries(inputs)) {
        const got = parsed.tensors.get(name)!;
        expect(got.dtype, name).to.equal(t.dtype);
        expect(got.shape, name).to.deep.equal(t.shape);
        const want = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        expect(Array.from(got.data), name).to.deep.equal(Array.from(want));
      }
    });

    it('writes tensors contiguously in insertion order', () => {
      const n = new DataView(file.buffer, file.byteOffset).getUint32(0, true);
      const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + n))) as Record<string, { data_offsets: number[] }>;
      const names = Object.keys(header).filter((k) => k !== '__metadata__');
      expect(names).to.deep.equal(Object.keys(inputs));
      let pos = 0;
      for (const k of names) {
        expect(header[k]!.data_offsets[0], k).to.equal(pos);
        pos = header[k]!.data_offsets[1]!;
      }
      expect(file.byteLength).to.equal(8 + n + pos);
    });

    it('gives data aligned to the item size', () => {
      for (const t of parsed.tensors.values()) {
        const size = { F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4 }[t.dtype as string] ?? 1;
        expect(t.data.byteOffset % size).to.equal(0);
      }
    });

    it('converts to float32 and int32', () => {
      const f = (k: string) => Array.from(toFloat32(parsed.tensors.get(k)!, k));
      const i = (k: string) => Array.from(toInt32(parsed.tensors.get(k)!, k));
      expect(f('w.f32')).to.deep.equal(Array.from(new Float32Array([1, -2.5, 3e-8, 1e30, -0, 7])));
      expect(f('w.f64')).to.deep.equal(Array.from(new Float32Array([Math.PI, -1e-300, 2])));
      expect(f('h.f16')).to.deep.equal([1, -2, Math.fround(0.333251953125)]);
      expect(f('bf16')).to.deep.equal([1, -3]);
      expect(f('scalar')).to.deep.equal([0.125]);
      expect(f('empty')).to.deep.equal([]);
      expect(i('idx.i64')).to.deep.equal([0, -1, 2147483647, -2147483648]);
      expect(i('i32')).to.deep.equal([-7, 123456789]);
      expect(i('u8')).to.deep.equal([0, 1, 127, 128, 255]);
      expect(i('i16')).to.deep.equal([-32768, 32767]);
      expect(i('i8')).to.deep.equal([-128, 0, 127]);
      expect(i('u16')).to.deep.equal([65535]);
      expect(i('u32')).to.deep.equal([0, 2147483647]);
      expect(i('u64')).to.deep.equal([42]);
      expect(i('mask')).to.deep.equal([1, 0, 0, 1]);
    });

    it('accepts a Map, an ArrayBuffer, and no metadata', () => {
      const m = new Map<string, STensorInput>([
        ['b', { dtype: 'I32', shape: [1], data: new Int32Array([5]) }],
        ['a', { dtype: 'F16', shape: [], data: new Uint16Array([0x3c00]) }],
      ]);
      const bytes = serializeSafetensors(m);
      const back = parseSafetensors(bytes.slice().buffer);
      expect([...back.tensors.keys()]).to.have.members(['a', 'b']);
      expect(back.metadata).to.deep.equal({});
      expect(Array.from(toInt32(back.tensors.get('b')!))).to.deep.equal([5]);
      expect(Array.from(toFloat32(back.tensors.get('a')!))).to.deep.equal([1]);
    });

    it('parses an empty file {} and copies data that would be unaligned', () => {
      expect(parseSafetensors(serializeSafetensors({})).tensors.size).to.equal(0);
      // The same file shifted by one byte inside a bigger buffer: F32 data must be copied.
      const f = serializeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Float32Array([1.5, -2]) } });
      const big = new Uint8Array(f.byteLength + 1);
      big.set(f, 1);
      const t = parseSafetensors(big.subarray(1)).tensors.get('x')!;
      expect(t.data.byteOffset % 4).to.equal(0);
      expect(Array.from(new Float32Array(t.data.buffer, t.data.byteOffset, 2))).to.deep.equal([1.5, -2]);
    });
  });

  describe('handcrafted bytes', () => {
    it('reads a file written byte by byte', () => {
      const header = '{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},' +
        '"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}';
      const data = [
        0x00, 0x00, 0xc0, 0x3f, // 1.5
        0x00, 0x00, 0x00, 0xc0, // -2
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // -2n
      ];
      const file = craft(header, data, true);
      const st = parseSafetensors(file, SRC);
      expect(st.metadata).to.deep.equal({ k: 'v' });
      expect(st.tensors.get('a')!.shape).to.deep.equal([2]);
      expect(Array.from(toFloat32(st.tensors.get('a')!))).to.deep.equal([1.5, -2]);
      expect(st.tensors.get('b')!.shape).to.deep.equal([]);
      expect(Array.from(toInt32(st.tensors.get('b')!))).to.deep.equal([-2]);
    });

    it('serializes to the exact expected bytes', () => {
      const out = serializeSafetensors({ a: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) } });
      const json = '{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}'; // 53 bytes -> padded to 56
      const expected = craft(json + '   ', [1, 2, 3]);
      expect(json.length).to.equal(53);
      expect(Array.from(out)).to.deep.equal(Array.from(expected));
      expect(Array.from(out.subarray(0, 8))).to.deep.equal([56, 0, 0, 0, 0, 0, 0, 0]);
    });

    it('reads an unpadded header and unaligned F32 data', () => {
      // Header of odd length: data starts at an odd offset, so the view cannot be aligned.
      const file = craft('{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', [0, 0, 0x80, 0x3f]);
      const t = parseSafetensors(file, SRC).tensors.get('x')!;
      expect(Array.from(toFloat32(t))).to.deep.equal([1]);
      // And toFloat32 on a deliberately unaligned view still works.
      const raw = new Uint8Array(9);
      raw.set([0, 0, 0, 0x40, 0, 0, 0x40, 0x40], 1);
      const un: STensor = { dtype: 'F32', shape: [2], data: raw.subarray(1) };
      expect(Array.from(toFloat32(un))).to.deep.equal([2, 3]);
    });

    it('decodes special F16 values', () => {
      const bits = [0x7bff, 0x0001, 0x0400, 0x7c00, 0xfc00, 0x8000];
      const t: STensor = { dtype: 'F16', shape: [bits.length], data: new Uint8Array(new Uint16Array(bits).buffer) };
      const f = Array.from(toFloat32(t));
      expect(f.slice(0, 5)).to.deep.equal([65504, 2 ** -24, 2 ** -14, Infinity, -Infinity]);
      expect(Object.is(f[5], -0)).to.equal(true);
      const nan: STensor = { dtype: 'F16', shape: [1], data: new Uint8Array(new Uint16Array([0x7e00]).buffer) };
      expect(Number.isNaN(toFloat32(nan)[0])).to.equal(true);
    });
  });

  describe('errors name the source and the problem', () => {
    const ok = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';

    it('file too short', () => {
      expectError(() => parseSafetensors(new Uint8Array(5), SRC), SRC, 'too short');
    });

    it('header length exceeding the file', () => {
      const f = craft(ok, [0, 0, 0, 0]);
      new DataView(f.buffer).setUint32(0, 1000, true);
      expectError(() => parseSafetensors(f, SRC), SRC, 'header length 1000 exceeds the file');
      const g = craft(ok, [0, 0, 0, 0]);
      new DataView(g.buffer).setUint32(4, 1, true); // 2^32 + N
      expectError(() => parseSafetensors(g, SRC), SRC, 'header length 1*2^32+', 'exceeds the format\'s limit');
    });

    it('invalid JSON', () => {
      expectError(() => parseSafetensors(craft('{"a": {"dtype": '), SRC), SRC, 'invalid JSON');
      expectError(() => parseSafetensors(craft('[1, 2, 3]'), SRC), SRC, 'invalid JSON');
      expectError(() => parseSafetensors(craft('{"a":[1]}'), SRC), SRC, 'tensor "a"', 'expected an object');
    });

    it('invalid UTF-8 in the header', () => {
      const f = craft('{"a":1}');
      f[10] = 0xff;
      expectError(() => parseSafetensors(f, SRC), SRC, 'UTF-8');
    });

    it('missing or invalid dtype', () => {
      expectError(() => parseSafetensors(craft('{"a":{"shape":[1],"data_offsets":[0,4]}}', [0, 0, 0, 0]), SRC),
        SRC, 'tensor "a"', 'missing "dtype"');
      expectError(() => parseSafetensors(craft('{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}', [0, 0, 0, 0]), SRC),
        SRC, 'tensor "a"', 'invalid "dtype"');
    });

    it('unknown dtype', () => {
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', [0]), SRC),
        SRC, 'tensor "a"', 'unknown dtype "F8_E4M3"');
    });

    it('invalid shape', () => {
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}', [0]), SRC),
        SRC, 'tensor "a"', '"shape"');
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"U8","shape":"1","data_offsets":[0,1]}}', [0]), SRC),
        SRC, 'tensor "a"', '"shape"');
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}', [0]), SRC),
        SRC, 'tensor "a": "shape"[0] is 1.5');
    });

    it('shape/offset mismatch', () => {
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', [0, 0, 0, 0]), SRC),
        SRC, 'tensor "a"', 'shape/offset mismatch', '8 bytes', 'give 4');
    });

    it('overlapping offsets', () => {
      const h = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}';
      expectError(() => parseSafetensors(craft(h, [0, 0, 0, 0, 0]), SRC), SRC, 'overlapping', '"a"', '"b"');
    });

    it('out-of-range and malformed offsets', () => {
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', [0, 0, 0, 0]), SRC),
        SRC, 'tensor "a"', 'out of range');
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}', [0]), SRC),
        SRC, 'tensor "a"', 'end before');
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}}', [0]), SRC),
        SRC, '"data_offsets"');
      expectError(() => parseSafetensors(craft('{"a":{"dtype":"U8","shape":[1]}}', [0]), SRC),
        SRC, 'missing "data_offsets"');
    });

    it('holes and trailing bytes', () => {
      const h = '{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}';
      expectError(() => parseSafetensors(craft(h, [0, 0, 0]), SRC), SRC, 'belong to no tensor', '"b"');
      expectError(() => parseSafetensors(craft(ok, [0, 0, 0, 0, 9]), SRC), SRC, '1 trailing bytes');
    });

    it('metadata values that are not strings', () => {
      expectError(() => parseSafetensors(craft('{"__metadata__":{"epoch":3}}'), SRC), SRC, 'metadata', '"epoch"', 'string');
      expectError(() => parseSafetensors(craft('{"__metadata__":{"lr":0.5}}'), SRC), SRC, 'metadata value of "lr" must be a string');
      expectError(() => parseSafetensors(craft('{"a":1.5}'), SRC), SRC, 'tensor "a"', 'expected an object');
      expectError(() => parseSafetensors(craft('{"__metadata__":"x"}'), SRC), SRC, '__metadata__');
    });

    // Each of these headers is valid JSON that JSON.parse reads without complaint (keeping the last
    // of two equal keys, turning 4.0 into 4), so the file would load with whatever the last entry says.
    const w4 = '{"dtype":"U8","shape":[4],"data_offsets":[0,4]}';
    const f4 = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const bytes4 = [0, 0, 0x80, 0x3f];

    it('a tensor named twice, even with identical entries or spelled with escapes', () => {
      expectError(() => parseSafetensors(craft(`{"w":${w4},"w":${f4}}`, bytes4), SRC), SRC, 'names tensor "w" twice');
      expectError(() => parseSafetensors(craft(`{"w":${f4},"w":${f4}}`, bytes4), SRC), SRC, 'names tensor "w" twice');
      expectError(() => parseSafetensors(craft(`{"w":${f4},"\\u0077":${f4}}`, bytes4), SRC), SRC, 'names tensor "w" twice');
      expectError(() => parseSafetensors(craft(`{"__metadata__":{"k":"v"},"w":${f4},"__metadata__":{"k":"x"}}`, bytes4), SRC),
        SRC, '"__metadata__" twice');
    });

    it('a key repeated inside __metadata__ or inside a tensor entry', () => {
      expectError(() => parseSafetensors(craft(`{"__metadata__":{"config":"a","format":"pt","config":"b"},"w":${f4}}`, bytes4), SRC),
        SRC, '"__metadata__"', 'duplicate key "config"');
      expectError(() => parseSafetensors(craft('{"w":{"dtype":"U8","shape":[4],"dtype":"F32","data_offsets":[0,4]}}', bytes4), SRC),
        SRC, 'tensor "w"', 'duplicate key "dtype"');
      expectError(() => parseSafetensors(craft('{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"shape":[]}}', bytes4), SRC),
        SRC, 'tensor "w"', 'duplicate key "shape"');
    });

    it('the same key in different objects, and keys with brackets, quotes and commas, are fine', () => {
      const h = '{"__metadata__":{"w":"{\\"a\\":1,\\"a\\":2}","dtype":"[,:]"},"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},' +
        '"a\\"b{,":{"dtype":"U8","shape":[1,2],"data_offsets":[2,4]}}';
      const st = parseSafetensors(craft(h, [1, 2, 3, 4]), SRC);
      expect([...st.tensors.keys()]).to.deep.equal(['w', 'a"b{,']);
      expect(st.metadata).to.deep.equal({ w: '{"a":1,"a":2}', dtype: '[,:]' });
    });

    it('shapes and offsets written with a fraction or an exponent', () => {
      expectError(() => parseSafetensors(craft('{"w":{"dtype":"U8","shape":[4.0],"data_offsets":[0,4]}}', bytes4), SRC),
        SRC, 'tensor "w": "shape"[0] is 4.0', 'integer');
      expectError(() => parseSafetensors(craft('{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4e0]}}', bytes4), SRC),
        SRC, 'tensor "w": "data_offsets"[1] is 4e0', 'integer');
    });

    it('a header length over the format\'s limit of 100,000,000 bytes', () => {
      expect(MAX_HEADER_BYTES).to.equal(100_000_000);
      const f = craft(`{"w":${f4}}`, bytes4);
      new DataView(f.buffer).setUint32(0, MAX_HEADER_BYTES + 1, true);
      expectError(() => parseSafetensors(f, SRC), SRC, `header length ${MAX_HEADER_BYTES + 1}`, 'limit');
    });

    it('a default source name when none is given', () => {
      expectError(() => parseSafetensors(new Uint8Array(3)), 'safetensors data', 'too short');
    });
  });

  describe('serialization and conversion errors', () => {
    it('rejects inconsistent inputs', () => {
      expectError(() => serializeSafetensors({ a: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), '"a"', '12 bytes', 'has 8');
      expectError(() => serializeSafetensors({ a: { dtype: 'Q4' as DType, shape: [1], data: new Uint8Array(1) } }), 'unknown dtype');
      expectError(() => serializeSafetensors({ __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }), 'reserved');
      expectError(() => serializeSafetensors({}, { n: 1 as unknown as string }), 'metadata', '"n"');
      expectError(() => serializeSafetensors({ s: { dtype: 'U8', shape: [1.5], data: new Uint8Array(1) } }), '"s"', '"shape"');
      expectError(() => serializeSafetensors({ s: { dtype: 'U8', shape: [-1], data: new Uint8Array(0) } }), '"s"', '"shape"');
      expectError(() => serializeSafetensors({ s: { dtype: 'U8', shape: [NaN], data: new Uint8Array(0) } }), '"s"', '"shape"');
      expectError(() => serializeSafetensors({ s: { dtype: 'U8', shape: 4 as unknown as number[], data: new Uint8Array(4) } }), '"s"', '"shape"');
    });

    it('writes every name it is given, "__proto__" included, so the reader accepts what it writes', () => {
      const tensors = new Map<string, STensorInput>([
        ['__proto__', { dtype: 'U8', shape: [2], data: new Uint8Array([7, 8]) }],
        ['', { dtype: 'U8', shape: [0], data: new Uint8Array(0) }],
        ['constructor', { dtype: 'U8', shape: [1], data: new Uint8Array([9]) }],
      ]);
      const meta = JSON.parse('{"__proto__":"p","toString":"t"}') as Record<string, string>;
      const st = parseSafetensors(serializeSafetensors(tensors, meta), SRC);
      expect([...st.tensors.keys()]).to.deep.equal(['__proto__', '', 'constructor']);
      expect(Array.from(st.tensors.get('__proto__')!.data)).to.deep.equal([7, 8]);
      expect(Object.keys(st.metadata)).to.deep.equal(['__proto__', 'toString']);
      expect(st.metadata.__proto__).to.equal('p');
      expect(Object.getPrototypeOf(st.metadata)).to.equal(Object.prototype);
    });

    it('range-checks I64, U32 and U64 in toInt32', () => {
      const i64: STensor = { dtype: 'I64', shape: [3], data: new Uint8Array(new BigInt64Array([1n, 2n ** 31n, 0n]).buffer) };
      expectError(() => toInt32(i64, 'labels'), 'labels', '2147483648', 'index 1', 'int32');
      const neg: STensor = { dtype: 'I64', shape: [1], data: new Uint8Array(new BigInt64Array([-(2n ** 31n) - 1n]).buffer) };
      expectError(() => toInt32(neg), '-2147483649');
      const u32: STensor = { dtype: 'U32', shape: [1], data: new Uint8Array(new Uint32Array([2 ** 31]).buffer) };
      expectError(() => toInt32(u32), '2147483648');
      const u64: STensor = { dtype: 'U64', shape: [1], data: new Uint8Array(new BigUint64Array([2n ** 40n]).buffer) };
      expectError(() => toInt32(u64), String(2 ** 40));
    });

    it('refuses the wrong kind of dtype', () => {
      const f: STensor = { dtype: 'F32', shape: [1], data: new Uint8Array(4) };
      const i: STensor = { dtype: 'I32', shape: [1], data: new Uint8Array(4) };
      expectError(() => toInt32(f, 'w'), 'w', 'F32', 'toFloat32');
      expectError(() => toFloat32(i, 'n'), 'n', 'I32', 'toInt32');
      expectError(() => toFloat32({ dtype: 'F32', shape: [2], data: new Uint8Array(4) }), 'needs 8 bytes');
    });
  });
});
