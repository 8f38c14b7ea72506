// Pixel layouts and the colour overlay, shared by the CLI and the page. Pure TypeScript: runs in
// browsers too.
//   RGB   interleaved bytes, row-major [h, w, 3] (what image decoders return)
//   CHW   planar floats 0..255, [3, h, w] (what the model's input and Samples hold)

/** Interleaved RGB bytes [h, w, 3] → planar CHW floats 0..255 [3, h, w]. */
export function rgbToChw(rgb: Uint8Array, height: number, width: number): Float32Array {
  const plane = height * width;
  if (rgb.length !== 3 * plane) throw new Error(`rgbToChw: ${rgb.length} bytes for ${height}×${width}×3`);
  const out = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    out[i] = rgb[3 * i];
    out[plane + i] = rgb[3 * i + 1];
    out[2 * plane + i] = rgb[3 * i + 2];
  }
  return out;
}

/** Planar CHW floats 0..255 [3, h, w] → interleaved RGB bytes [h, w, 3] (rounded, clamped). */
export function chwToRgb(image: Float32Array, height: number, width: number): Uint8Array {
  const plane = height * width;
  if (image.length !== 3 * plane) throw new Error(`chwToRgb: ${image.length} values for 3×${height}×${width}`);
  const out = new Uint8Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.round(image[c * plane + i]);
      out[3 * i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
  }
  return out;
}

/**
 * The colour overlay of a label map on an image: per pixel round((1 − alpha) · rgb + alpha ·
 * palette[label]), interleaved RGB bytes [h, w, 3]. `labels` is [h, w] class ids; `palette` holds
 * 3 bytes per class id (vocPalette() covers 0..255, so 255 = ignore has a colour too).
 */
export function overlayLabels(rgb: Uint8Array, labels: Uint8Array, palette: Uint8Array, alpha = 0.5): Uint8Array {
  if (rgb.length !== 3 * labels.length) throw new Error(`overlayLabels: ${rgb.length} RGB bytes for ${labels.length} labels`);
  const out = new Uint8Array(rgb.length);
  for (let i = 0; i < labels.length; i++) {
    const k = labels[i];
    for (let c = 0; c < 3; c++) out[3 * i + c] = Math.round((1 - alpha) * rgb[3 * i + c] + alpha * palette[3 * k + c]);
  }
  return out;
}

/** Interleaved RGBA (a canvas's ImageData) to interleaved RGB, alpha dropped. */
export function rgbaToRgb(rgba: ArrayLike<number>): Uint8Array {
  const rgb = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i];
    rgb[j + 1] = rgba[i + 1];
    rgb[j + 2] = rgba[i + 2];
  }
  return rgb;
}
