// Photo decoding with the browser's decoder, usable in the page and in a worker (createImageBitmap,
// OffscreenCanvas; no document).
import { rgbaToRgb, type RawImage } from '../src/index.js';

/** A photo as 8-bit RGB, upright, with the stored values (no colour-space conversion, no scaling). */
export async function decodePhoto(bytes: Uint8Array, name: string): Promise<RawImage> {
  let bmp: ImageBitmap;
  try {
    bmp = await createImageBitmap(new Blob([bytes as BlobPart]), { imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    throw new Error(`${name}: not an image this browser can decode`);
  }
  const { width, height } = bmp;
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bmp, 0, 0);
  bmp.close();
  return { width, height, data: rgbaToRgb(ctx.getImageData(0, 0, width, height).data) };
}

