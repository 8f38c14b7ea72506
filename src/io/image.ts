// Image files: PNG and JPEG decoding and encoding for the data pipeline (Node: uses node:zlib).
//
// - Photos: JPEG through jpeg-js, PNG through pngjs, both to 8-bit RGB (alpha dropped).
// - Label maps: PNG decoded HERE, not through pngjs, because pngjs expands palette images to RGBA
//   and segmentation labels are the raw palette indices (PASCAL VOC's SegmentationClass). Gray
//   PNGs (SegmentationClassAug, Cityscapes labelIds) give their values; RGB PNGs are mapped
//   back through the VOC colour map.
// - Writing: RGB PNG through pngjs, JPEG through jpeg-js, palette PNG by hand (pngjs cannot write
//   palette images): IHDR colour type 3, PLTE, one zlib IDAT of unfiltered rows, IEND.
//
// Before decoding, a structural check walks the file (PNG chunks with their CRCs up to IEND, JPEG
// markers up to the scan and the end-of-image marker), so corrupt and truncated files get an error
// that names the file and the problem instead of a decoder's internal message.
//
// Orientation: phone photos are stored as the sensor saw them, with an EXIF orientation tag (1..8)
// saying how to turn them upright; browsers show them turned. Every decode here (photos and label
// maps alike) applies the tag, so one file gives one upright image in the CLI, the dataset reader
// and the page: the EXIF block of a JPEG (APP1 "Exif") or of a PNG (eXIf chunk) is read with
// exif-reader, and the pixels are mirrored/rotated after decoding. Sizes reported are upright.
import { deflateSync, inflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import exifReader from 'exif-reader';
import { vocPalette } from '../data/palette.js';

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

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

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

function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
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

function checkPixels(width: number, height: number, name: string, format: string): void {
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
 * file) or more than W×H needs is refused naming the file. */
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
    raw = inflateSync(Buffer.concat(c.idat), { maxOutputLength: need });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) {
      throw new ImageError(`${name}: corrupt PNG (the image data inflates to more than the ${need} bytes ${width}×${height} needs)`);
    }
    if (/unexpected end of file/i.test((e as Error).message)) {
      throw new ImageError(`${name}: truncated PNG (the image data stops before the ${need} bytes ${width}×${height} needs)`);
    }
    throw new ImageError(`${name}: corrupt PNG (image data does not inflate: ${(e as Error).message})`);
  }
  if (raw.length < need) throw new ImageError(`${name}: truncated PNG (image data holds ${raw.length} bytes, ${width}×${height} needs ${need})`);
  return raw;
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
    value = exifReader(Buffer.from(exif.buffer, exif.byteOffset, exif.byteLength)).Image?.Orientation;
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

/** Decode a PNG or JPEG photo to 8-bit RGB, 3 bytes per pixel, row-major, upright (its EXIF
 * orientation applied). Throws an ImageError naming the file when it cannot be decoded. */
export function decodeImage(bytes: Uint8Array, name: string): RawImage {
  const { format, storedWidth: width, storedHeight: height, orientation } = imageInfo(bytes, name);
  let rgba: Uint8Array;
  try {
    if (format === 'png') {
      inflatePng(pngChunks(bytes, name), name); // sizes against bytes, before pngjs allocates
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      rgba = png.data;
    } else {
      checkPixels(width, height, name, 'JPEG');
      rgba = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxResolutionInMP: MAX_IMAGE_PIXELS / 1e6, maxMemoryUsageInMB: 1024 }).data;
    }
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`${name}: corrupt ${format === 'png' ? 'PNG' : 'JPEG'} (${(e as Error).message})`);
  }
  if (rgba.length !== width * height * 4) {
    throw new ImageError(`${name}: corrupt ${format} (decoded ${rgba.length} bytes for ${width}×${height})`);
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgb[i] = rgba[j];
    rgb[i + 1] = rgba[j + 1];
    rgb[i + 2] = rgba[j + 2];
  }
  return applyOrientation({ width, height, data: rgb }, 3, orientation);
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

function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length, false);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out, 4, 8 + data.length), false);
  return out;
}

/** Encode one byte per pixel as an 8-bit palette PNG with the given 256-colour (768-byte) palette. */
export function encodeIndexedPng(indices: Uint8Array, width: number, height: number, palette: Uint8Array = vocPalette()): Uint8Array {
  if (indices.length !== width * height) throw new ImageError(`encodeIndexedPng: ${indices.length} indices for ${width}×${height}`);
  if (palette.length !== 768) throw new ImageError(`encodeIndexedPng: the palette must have 768 bytes (256 RGB), got ${palette.length}`);
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width, false);
  dv.setUint32(4, height, false);
  ihdr.set([8, 3, 0, 0, 0], 8); // depth 8, palette, deflate, adaptive filters, no interlace
  // Label maps are flat regions: filter 0 (none) on every row deflates them well.
  const rows = new Uint8Array(height * (width + 1));
  for (let y = 0; y < height; y++) rows.set(indices.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const parts = [
    Uint8Array.from(PNG_SIGNATURE), pngChunk('IHDR', ihdr), pngChunk('PLTE', palette),
    pngChunk('IDAT', deflateSync(rows, { level: 9 })), pngChunk('IEND', new Uint8Array(0)),
  ];
  return Buffer.concat(parts);
}

function toRgba(rgb: Uint8Array, width: number, height: number, fn: string): Buffer {
  if (rgb.length !== width * height * 3) throw new ImageError(`${fn}: ${rgb.length} bytes for ${width}×${height} RGB`);
  const rgba = Buffer.alloc(width * height * 4, 255);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    rgba[j] = rgb[i];
    rgba[j + 1] = rgb[i + 1];
    rgba[j + 2] = rgb[i + 2];
  }
  return rgba;
}

/** Encode 8-bit RGB (3 bytes per pixel) as an RGB PNG (lossless). */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  const png = new PNG({ width, height });
  png.data = toRgba(rgb, width, height, 'encodePng');
  return PNG.sync.write(png, { colorType: 2 });
}

/** Encode 8-bit RGB as a baseline JPEG (quality 1..100). */
export function encodeJpeg(rgb: Uint8Array, width: number, height: number, quality = 95): Uint8Array {
  if (!(quality >= 1 && quality <= 100)) throw new ImageError(`encodeJpeg: quality must be in 1..100, got ${quality}`);
  return jpeg.encode({ width, height, data: toRgba(rgb, width, height, 'encodeJpeg') }, quality).data;
}

// The pixel-layout helpers live in src/data/pixels.ts (browser-safe); re-exported for the CLI.
export { rgbToChw, chwToRgb } from '../data/pixels.js';
