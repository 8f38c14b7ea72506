// Image structure and label maps, browser-safe (no Node built-ins): the checks and decoders that the
// dataset reader (src/data/voc-core.ts) needs in Node and in the page alike, so both read a file
// the same way and report a problem with the same message.
//
// - Structure: a walk over PNG chunks (CRCs up to IEND) and JPEG markers (up to the scan and the
//   end-of-image marker), so corrupt and truncated files get an error naming the file and the problem.
// - Label maps: PNG decoded HERE, not through a general decoder, because segmentation labels are
//   the raw palette indices (PASCAL VOC's SegmentationClass); gray PNGs give their values, RGB PNGs
//   are mapped back through the VOC colour map. Inflate: fflate.
// - Orientation: the EXIF orientation tag (a JPEG's APP1 "Exif" block or a PNG's eXIf chunk), read
//   with exif-reader, and the pixels mirrored/rotated upright; sizes reported are upright.
//
// src/io/image.ts (Node) adds photo decoding (pngjs, jpeg-js) and the encoders, and re-exports this.
import { unzlibSync } from 'fflate';
import exifReader from 'exif-reader';
import { vocPalette } from '../data/palette.js';

function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The few Buffer methods exif-reader calls, over a Uint8Array, so that it runs without Node's
 * Buffer (in the page) and reads exactly as with it (in Node). Reads past the end throw a
 * RangeError, as Buffer's do. */
class ExifBytes extends Uint8Array {
  private dv(): DataView {
    return new DataView(this.buffer, this.byteOffset, this.byteLength);
  }
  override toString(encoding?: string, start = 0, end = this.length): string {
    if (encoding === undefined) return super.toString();
    let s = '';
    for (let i = Math.max(0, start); i < Math.min(end, this.length); i++) s += String.fromCharCode(this[i]);
    return s;
  }
  override slice(start?: number, end?: number): ExifBytes {
    const a = this.subarray(start, end);
    return new ExifBytes(a.buffer as ArrayBuffer, a.byteOffset, a.length);
  }
  readInt8(o: number): number { return this.dv().getInt8(o); }
  readUInt8(o: number): number { return this.dv().getUint8(o); }
  readUInt16BE(o: number): number { return this.dv().getUint16(o, false); }
  readUInt16LE(o: number): number { return this.dv().getUint16(o, true); }
  readInt16BE(o: number): number { return this.dv().getInt16(o, false); }
  readInt16LE(o: number): number { return this.dv().getInt16(o, true); }
  readUInt32BE(o: number): number { return this.dv().getUint32(o, false); }
  readUInt32LE(o: number): number { return this.dv().getUint32(o, true); }
  readInt32BE(o: number): number { return this.dv().getInt32(o, false); }
  readInt32LE(o: number): number { return this.dv().getInt32(o, true); }
  readFloatBE(o: number): number { return this.dv().getFloat32(o, false); }
  readFloatLE(o: number): number { return this.dv().getFloat32(o, true); }
  readDoubleBE(o: number): number { return this.dv().getFloat64(o, false); }
  readDoubleLE(o: number): number { return this.dv().getFloat64(o, true); }
}

function exifBytes(b: Uint8Array): ExifBytes {
  return new ExifBytes(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength);
}

export class ImageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageError';
  }
}

/** An 8-bit image, row-major, `channels` bytes per pixel. */
export interface RawImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export type ImageFormat = 'png' | 'jpeg';

export const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function sniffFormat(bytes: Uint8Array): ImageFormat | null {
  if (bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b)) return 'png';
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  return null;
}

// ------------------------------------------------------------------------------------ CRC-32

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ------------------------------------------------------------------------------------ PNG structure

interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
  interlace: number;
}

interface PngChunks {
  header: PngHeader;
  palette: Uint8Array | null;
  idat: Uint8Array[];
  /** The eXIf chunk's payload (a TIFF structure), null when the file has none. */
  exif: Uint8Array | null;
}

const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

/** The largest image decoded (pixels): 100 megapixels, as jpeg-js's default; a header claiming
 * more is refused before anything is allocated. */
export const MAX_IMAGE_PIXELS = 100_000_000;
/** deflate's best case: 258 bytes per 2-bit code, about 1032:1; a zlib stream smaller than the
 * decompressed size over this cannot hold it. */
const MAX_DEFLATE_RATIO = 1032;

/** Refuses a header claiming more than MAX_IMAGE_PIXELS pixels, naming the file (ImageError). */
export function checkPixels(width: number, height: number, name: string, format: string): void {
  if (width * height > MAX_IMAGE_PIXELS) {
    throw new ImageError(`${name}: ${format} header claims ${width}×${height} pixels, above the limit of ${MAX_IMAGE_PIXELS / 1e6} megapixels (a corrupt or hostile file?)`);
  }
}

/** Bytes the zlib stream of a PNG must inflate to: each pass's rows, with their filter bytes. */
function pngRawBytes(h: PngHeader): number {
  const bitsPerPixel = PNG_CHANNELS[h.colorType] * h.bitDepth;
  const passes = h.interlace ? ADAM7 : [[0, 0, 1, 1]];
  let n = 0;
  for (const [y0, x0, dy, dx] of passes) {
    const pw = Math.ceil((h.width - x0) / dx);
    const ph = Math.ceil((h.height - y0) / dy);
    if (pw > 0 && ph > 0) n += ph * (Math.ceil((pw * bitsPerPixel) / 8) + 1);
  }
  return n;
}

/** Inflates a PNG's image data, checked against its header before and after: a stream too small
 * to hold W×H is refused before allocating, and one that inflates to less (a truncated or lying
 * file) or more than W×H needs is refused naming the file (ImageError). */
function inflatePng(c: PngChunks, name: string): Uint8Array {
  const { width, height } = c.header;
  checkPixels(width, height, name, 'PNG');
  const need = pngRawBytes(c.header);
  const have = c.idat.reduce((a, b) => a + b.length, 0);
  if (have * MAX_DEFLATE_RATIO + 64 < need) {
    throw new ImageError(`${name}: corrupt PNG (IHDR claims ${width}×${height}, ${need} bytes of pixel data, but the ${have} bytes of image data cannot hold that much)`);
  }
  let raw: Uint8Array;
  try {
    // One byte more than needed: a stream that fills it holds more than the header says.
    raw = unzlibSync(concatBytes(c.idat), { out: new Uint8Array(need + 1) });
  } catch (e) {
    if (/unexpected EOF/i.test((e as Error).message)) {
      throw new ImageError(`${name}: truncated PNG (the image data stops before the ${need} bytes ${width}×${height} needs)`);
    }
    throw new ImageError(`${name}: corrupt PNG (image data does not inflate: ${(e as Error).message})`);
  }
  if (raw.length > need) throw new ImageError(`${name}: corrupt PNG (the image data inflates to more than the ${need} bytes ${width}×${height} needs)`);
  if (raw.length < need) throw new ImageError(`${name}: truncated PNG (image data holds ${raw.length} bytes, ${width}×${height} needs ${need})`);
  return raw;
}

/** Checks a PNG's structure and that its image data holds exactly what its header claims, without
 * decoding the pixels' filters (what a decoder like pngjs then does): ImageError naming the file. */
export function checkPngData(bytes: Uint8Array, name: string): void {
  inflatePng(pngChunks(bytes, name), name);
}

/** Walk a PNG's chunks: signature, lengths, CRCs, IHDR first, IEND last. */
function pngChunks(bytes: Uint8Array, name: string): PngChunks {
  if (sniffFormat(bytes) !== 'png') throw new ImageError(`${name}: not a PNG file (bad signature)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8;
  let header: PngHeader | null = null;
  let palette: Uint8Array | null = null;
  let exif: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  for (;;) {
    if (pos + 8 > bytes.length) throw new ImageError(`${name}: truncated PNG (file ends at byte ${bytes.length} before the IEND chunk)`);
    const len = view.getUint32(pos, false);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    if (!/^[A-Za-z]{4}$/.test(type)) throw new ImageError(`${name}: corrupt PNG (invalid chunk type at byte ${pos})`);
    if (pos + 12 + len > bytes.length) {
      throw new ImageError(`${name}: truncated PNG (chunk ${type} at byte ${pos} needs ${len + 12} bytes, the file ends after ${bytes.length - pos})`);
    }
    const stored = view.getUint32(pos + 8 + len, false);
    if (crc32(bytes, pos + 4, pos + 8 + len) !== stored) throw new ImageError(`${name}: corrupt PNG (CRC mismatch in chunk ${type} at byte ${pos})`);
    const data = bytes.subarray(pos + 8, pos + 8 + len);
    if (!header && type !== 'IHDR') throw new ImageError(`${name}: corrupt PNG (first chunk is ${type}, not IHDR)`);
    if (type === 'IHDR') {
      if (len !== 13) throw new ImageError(`${name}: corrupt PNG (IHDR has ${len} bytes, not 13)`);
      const dv = new DataView(data.buffer, data.byteOffset, 13);
      header = { width: dv.getUint32(0), height: dv.getUint32(4), bitDepth: data[8], colorType: data[9], interlace: data[12] };
      const depths = PNG_DEPTHS[header.colorType];
      if (!depths || !depths.includes(header.bitDepth) || data[10] !== 0 || data[11] !== 0 || header.interlace > 1
        || header.width === 0 || header.height === 0) {
        throw new ImageError(`${name}: corrupt PNG (invalid IHDR: ${header.width}×${header.height}, colour type ${header.colorType}, bit depth ${header.bitDepth})`);
      }
    } else if (type === 'PLTE') {
      palette = data;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'eXIf') {
      // The PNG specification allows one eXIf chunk, before the image data.
      if (exif) throw new ImageError(`${name}: corrupt PNG (a second eXIf chunk at byte ${pos}: a PNG holds at most one)`);
      if (idat.length > 0) throw new ImageError(`${name}: corrupt PNG (eXIf chunk at byte ${pos} after the image data; it must come before IDAT)`);
      exif = data;
    } else if (type === 'IEND') {
      break;
    }
    pos += 12 + len;
  }
  if (!header) throw new ImageError(`${name}: corrupt PNG (no IHDR chunk)`);
  if (idat.length === 0) throw new ImageError(`${name}: corrupt PNG (no image data)`);
  if (header.colorType === 3 && !palette) throw new ImageError(`${name}: corrupt PNG (palette image without PLTE chunk)`);
  return { header, palette, idat, exif };
}

// Adam7 interlace passes as [y0, x0, dy, dx]: first row and column, row and column steps.
const ADAM7 = [
  [0, 0, 8, 8], [0, 4, 8, 8], [4, 0, 8, 4], [0, 2, 4, 4], [2, 0, 4, 2], [0, 1, 2, 2], [1, 0, 2, 1],
];

/**
 * Decode a PNG into its raw samples (no palette expansion, no rescaling): width × height ×
 * channels values of bitDepth bits each.
 */
function decodePngSamples(bytes: Uint8Array, name: string): { header: PngHeader; palette: Uint8Array | null; samples: Uint16Array; channels: number; exif: Uint8Array | null } {
  const chunks = pngChunks(bytes, name);
  const { header, palette, exif } = chunks;
  const { width, height, bitDepth, colorType, interlace } = header;
  const channels = PNG_CHANNELS[colorType];
  const raw = inflatePng(chunks, name);
  const samples = new Uint16Array(width * height * channels);
  const bitsPerPixel = channels * bitDepth;
  const bpp = Math.max(1, bitsPerPixel >> 3); // filter distance in bytes
  const passes = interlace ? ADAM7 : [[0, 0, 1, 1]];
  let pos = 0;
  for (const [y0, x0, dy, dx] of passes) {
    const pw = Math.ceil((width - x0) / dx);
    const ph = Math.ceil((height - y0) / dy);
    if (pw <= 0 || ph <= 0) continue;
    const rowBytes = Math.ceil((pw * bitsPerPixel) / 8);
    if (pos + ph * (rowBytes + 1) > raw.length) {
      throw new ImageError(`${name}: truncated PNG (image data holds ${raw.length} bytes, ${width}×${height} needs more)`);
    }
    let prev = new Uint8Array(rowBytes);
    for (let r = 0; r < ph; r++) {
      const filter = raw[pos];
      const row = raw.slice(pos + 1, pos + 1 + rowBytes);
      pos += rowBytes + 1;
      for (let i = 0; i < rowBytes; i++) {
        const a = i >= bpp ? row[i - bpp] : 0;
        const b = prev[i];
        const c = i >= bpp ? prev[i - bpp] : 0;
        switch (filter) {
          case 0: break;
          case 1: row[i] = (row[i] + a) & 0xff; break;
          case 2: row[i] = (row[i] + b) & 0xff; break;
          case 3: row[i] = (row[i] + ((a + b) >> 1)) & 0xff; break;
          case 4: {
            const p = a + b - c;
            const pa = Math.abs(p - a);
            const pb = Math.abs(p - b);
            const pc = Math.abs(p - c);
            row[i] = (row[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 0xff;
            break;
          }
          default:
            throw new ImageError(`${name}: corrupt PNG (unknown filter type ${filter} on a row)`);
        }
      }
      const y = y0 + r * dy;
      for (let q = 0; q < pw; q++) {
        const o = ((y * width) + x0 + q * dx) * channels;
        for (let ch = 0; ch < channels; ch++) {
          const s = q * channels + ch;
          let v: number;
          if (bitDepth === 8) v = row[s];
          else if (bitDepth === 16) v = (row[2 * s] << 8) | row[2 * s + 1];
          else {
            const bit = s * bitDepth;
            v = (row[bit >> 3] >> (8 - bitDepth - (bit & 7))) & ((1 << bitDepth) - 1);
          }
          samples[o + ch] = v;
        }
      }
      prev = row;
    }
  }
  return { header, palette, samples, channels, exif };
}

// ------------------------------------------------------------------------------------ JPEG structure

const EXIF_APP1_PREFIX = [0x45, 0x78, 0x69, 0x66, 0, 0]; // "Exif\0\0"

/** Walk a JPEG's markers: SOI, a frame header before the first scan, and an EOI after it. `exif`
 * is the first APP1 "Exif" segment's TIFF structure (null when there is none). */
function jpegInfo(bytes: Uint8Array, name: string): { width: number; height: number; exif: Uint8Array | null } {
  if (sniffFormat(bytes) !== 'jpeg') throw new ImageError(`${name}: not a JPEG file (no start-of-image marker)`);
  let pos = 2;
  let size: { width: number; height: number } | null = null;
  let exif: Uint8Array | null = null;
  for (;;) {
    if (pos + 4 > bytes.length) throw new ImageError(`${name}: truncated JPEG (file ends at byte ${bytes.length} before the image data)`);
    if (bytes[pos] !== 0xff) throw new ImageError(`${name}: corrupt JPEG (expected a marker at byte ${pos})`);
    const marker = bytes[pos + 1];
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xd9) throw new ImageError(`${name}: corrupt JPEG (end-of-image marker before any image data)`);
    const len = (bytes[pos + 2] << 8) | bytes[pos + 3];
    if (len < 2) throw new ImageError(`${name}: corrupt JPEG (segment length ${len} at byte ${pos})`);
    if (pos + 2 + len > bytes.length) {
      throw new ImageError(`${name}: truncated JPEG (segment 0xFF${marker.toString(16).toUpperCase()} at byte ${pos} runs past the end of the file)`);
    }
    if (marker === 0xe1 && !exif && len >= 2 + EXIF_APP1_PREFIX.length
      && EXIF_APP1_PREFIX.every((b, i) => bytes[pos + 4 + i] === b)) {
      exif = bytes.subarray(pos + 4 + EXIF_APP1_PREFIX.length, pos + 2 + len);
    }
    const isFrame = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isFrame) {
      if (len < 8) throw new ImageError(`${name}: corrupt JPEG (frame header too short)`);
      size = { height: (bytes[pos + 5] << 8) | bytes[pos + 6], width: (bytes[pos + 7] << 8) | bytes[pos + 8] };
      if (size.width === 0 || size.height === 0) throw new ImageError(`${name}: corrupt JPEG (frame size ${size.width}×${size.height})`);
    }
    if (marker === 0xda) {
      if (!size) throw new ImageError(`${name}: corrupt JPEG (scan before any frame header)`);
      // Entropy-coded data never contains FF D9 (FF is always stuffed with 00 or an RSTn there), so
      // an EOI near the end of the file marks a complete image; a cut file lacks it.
      // Up to 4 KiB of trailing bytes after the EOI are tolerated (some writers pad files).
      let found = false;
      for (let e = bytes.length - 2; e >= Math.max(pos + 2 + len, bytes.length - 4096) && !found; e--) {
        found = bytes[e] === 0xff && bytes[e + 1] === 0xd9;
      }
      if (!found) {
        throw new ImageError(`${name}: truncated JPEG (no end-of-image marker: the file is cut off)`);
      }
      return { ...size, exif };
    }
    pos += 2 + len;
  }
}

// ------------------------------------------------------------------------------------ orientation

/**
 * EXIF orientation: how the stored pixel grid is turned to be upright. 1 upright as stored;
 * 2 mirrored left-right; 3 turned 180°; 4 mirrored top-bottom; 5 mirrored along the main diagonal
 * (transposed); 6 to be turned 90° clockwise; 7 mirrored along the other diagonal; 8 to be turned
 * 90° counter-clockwise. 5..8 swap width and height.
 */
export type Orientation = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

/**
 * The orientation tag (0x0112 in IFD0) of an EXIF block (a TIFF structure, with or without the
 * "Exif\0\0" prefix); 1 when `exif` is null or has no tag. 0 ("unknown", written by some apps) is
 * taken as 1, as browsers do. Throws an ImageError naming the file for an EXIF block that cannot
 * be read or a tag outside 0..8.
 */
export function exifOrientation(exif: Uint8Array | null, name: string): Orientation {
  if (!exif) return 1;
  let value: unknown;
  try {
    value = exifReader(exifBytes(exif) as unknown as Parameters<typeof exifReader>[0]).Image?.Orientation;
  } catch (e) {
    throw new ImageError(`${name}: corrupt EXIF block (${(e as Error).message}): cannot tell which way up the photo is`);
  }
  if (value === undefined || value === 0) return 1;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= 8) return value as Orientation;
  throw new ImageError(`${name}: EXIF orientation ${JSON.stringify(value)} is not one of 1..8`);
}

/**
 * Turns a stored pixel grid upright: `data` holds `height` rows of `width` pixels, `channels`
 * bytes each, as stored in the file; the result holds the upright image (width and height
 * swapped for orientations 5..8). Orientation 1 returns the input itself.
 */
export function applyOrientation(img: RawImage, channels: number, orientation: Orientation): RawImage {
  const { width: w, height: h, data } = img;
  if (data.length !== w * h * channels) throw new ImageError(`applyOrientation: ${data.length} bytes for ${w}×${h}×${channels}`);
  if (orientation === 1) return img;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      // The stored pixel (sx, sy) shown at upright (x, y).
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: sx = w - 1 - x; sy = y; break;
        case 3: sx = w - 1 - x; sy = h - 1 - y; break;
        case 4: sx = x; sy = h - 1 - y; break;
        case 5: sx = y; sy = x; break;
        case 6: sx = y; sy = h - 1 - x; break;
        case 7: sx = w - 1 - y; sy = h - 1 - x; break;
        default: sx = w - 1 - y; sy = x; break; // 8
      }
      const o = (y * ow + x) * channels;
      const i = (sy * w + sx) * channels;
      for (let c = 0; c < channels; c++) out[o + c] = data[i + c];
    }
  }
  return { width: ow, height: oh, data: out };
}

// ------------------------------------------------------------------------------------ public API

/** What imageInfo tells without decoding pixels. */
export interface ImageInfo {
  format: ImageFormat;
  /** Upright size in pixels: the stored size, with width and height swapped for orientations 5..8. */
  width: number;
  height: number;
  /** The EXIF orientation tag (1 when the file has none). */
  orientation: Orientation;
  /** The stored pixel grid's size. */
  storedWidth: number;
  storedHeight: number;
}

/** Format, upright size and orientation from the file's structure, without decoding pixels;
 * throws an ImageError naming the file for corrupt or truncated files and unreadable EXIF blocks. */
export function imageInfo(bytes: Uint8Array, name: string): ImageInfo {
  const format = sniffFormat(bytes);
  let stored: { width: number; height: number; exif: Uint8Array | null };
  if (format === 'png') {
    const { header, exif } = pngChunks(bytes, name);
    stored = { width: header.width, height: header.height, exif };
  } else if (format === 'jpeg') {
    stored = jpegInfo(bytes, name);
  } else {
    if (bytes.length === 0) throw new ImageError(`${name}: empty file`);
    throw new ImageError(`${name}: not a PNG or JPEG file (unknown signature ${Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ')})`);
  }
  const orientation = exifOrientation(stored.exif, name);
  const swap = orientation >= 5;
  return {
    format, orientation, storedWidth: stored.width, storedHeight: stored.height,
    width: swap ? stored.height : stored.width, height: swap ? stored.width : stored.height,
  };
}

/**
 * Decode a label PNG to one class index per pixel: the palette index for palette PNGs, the value
 * for gray PNGs (16-bit ones must stay below 256), the VOC colour map's index for RGB(A) PNGs.
 * Like photos, the map is returned upright: an eXIf orientation tag is applied (annotation tools
 * write label maps without one, as drawn on the upright photo).
 */
export function decodeLabelPng(bytes: Uint8Array, name: string): RawImage {
  if (sniffFormat(bytes) !== 'png') {
    if (sniffFormat(bytes) === 'jpeg') throw new ImageError(`${name}: label maps must be PNG (JPEG compression corrupts class indices)`);
    imageInfo(bytes, name);
  }
  const { header, samples, channels, exif } = decodePngSamples(bytes, name);
  const orientation = exifOrientation(exif, name);
  return applyOrientation(labelIndices(header, samples, channels, name), 1, orientation);
}

function labelIndices(header: PngHeader, samples: Uint16Array, channels: number, name: string): RawImage {
  const { width, height, colorType, bitDepth } = header;
  const out = new Uint8Array(width * height);
  if (colorType === 0 || colorType === 3 || colorType === 4) {
    for (let i = 0; i < out.length; i++) {
      const v = samples[i * channels];
      if (v > 255) {
        throw new ImageError(`${name}: label value ${v} at (x ${i % width}, y ${Math.floor(i / width)}) does not fit in 8 bits (16-bit gray PNG)`);
      }
      out[i] = v;
    }
    return { width, height, data: out };
  }
  if (bitDepth !== 8) throw new ImageError(`${name}: 16-bit RGB label PNGs are not supported; use palette or gray PNGs`);
  const pal = vocPalette();
  const lookup = new Map<number, number>();
  for (let k = 0; k < 256; k++) lookup.set((pal[3 * k] << 16) | (pal[3 * k + 1] << 8) | pal[3 * k + 2], k);
  for (let i = 0; i < out.length; i++) {
    const o = i * channels;
    const key = (samples[o] << 16) | (samples[o + 1] << 8) | samples[o + 2];
    const k = lookup.get(key);
    if (k === undefined) {
      throw new ImageError(`${name}: RGB label colour (${samples[o]}, ${samples[o + 1]}, ${samples[o + 2]}) at (x ${i % width}, y ${Math.floor(i / width)}) is not in the VOC colour map`);
    }
    out[i] = k;
  }
  return { width, height, data: out };
}

