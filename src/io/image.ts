// Image files: PNG and JPEG decoding and encoding for the data pipeline (Node: uses node:zlib).
//
// - Photos: JPEG through jpeg-js, PNG through pngjs, both to 8-bit RGB (alpha dropped).
// - Label maps: PNG decoded by atrous itself (image-core.ts), not through pngjs, because pngjs
//   expands palette images to RGBA and segmentation labels are the raw palette indices (PASCAL
//   VOC's SegmentationClass). Gray PNGs (SegmentationClassAug, Cityscapes labelIds) give their
//   values; RGB PNGs are mapped back through the VOC colour map.
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
//
// The structure checks, label-map decoding and orientation are browser-safe and live in
// image-core.ts (re-exported here); this module adds what needs Node: photo decoding and encoding.
import { deflateSync } from 'node:zlib';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { vocPalette } from '../data/palette.js';
import { ImageError, PNG_SIGNATURE, MAX_IMAGE_PIXELS, applyOrientation, checkPixels, checkPngData, crc32, imageInfo, type RawImage } from './image-core.js';

export * from './image-core.js';

/** Decode a PNG or JPEG photo to 8-bit RGB, 3 bytes per pixel, row-major, upright (its EXIF
 * orientation applied). Throws an ImageError naming the file when it cannot be decoded. */
export function decodeImage(bytes: Uint8Array, name: string): RawImage {
  const { format, storedWidth: width, storedHeight: height, orientation } = imageInfo(bytes, name);
  let rgba: Uint8Array;
  try {
    if (format === 'png') {
      checkPngData(bytes, name); // sizes against bytes, before pngjs allocates
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
