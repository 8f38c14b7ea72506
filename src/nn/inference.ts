// How a model's weights are meant to be used: the settings its training ended with. A checkpoint
// carries them in its metadata (src/io/checkpoint.ts), `modelFromCheckpoint` puts them on the model
// (`DeepLabV3.inference`), and `segment()`, `atrous eval`, `atrous predict` and the page take them
// as their defaults; an explicit option still wins. torchvision's weights carry the same kind of
// metadata (`Weights.meta["categories"]`, `Weights.transforms()`).

/** Padding convention at inference:
 *  - 'stride+1': each input is padded at the bottom and right to k × output stride + 1 pixels
 *    (the paper's 513 = 32 · 16 + 1, §4.2; the geometry of 16k+1 training crops, on which the
 *    stride-2 layers' outputs land on the first and the last pixel); the logits are cropped back;
 *  - 'none': the image runs as it is. */
export type Padding = 'stride+1' | 'none';
export const PADDINGS: readonly Padding[] = ['stride+1', 'none'];

export interface InferenceSettings {
  /** Output stride of the last training stage: the backbone's stride when the checkpoint was saved. */
  outputStride: number;
  /** Per-channel input normalisation in 0..1 units: x' = (rgb / 255 − mean) / std
   * (torchvision's `transforms.Normalize`). */
  normalization: { mean: [number, number, number]; std: [number, number, number] };
  /** Class names; index = class id; as many as the model has classes. */
  classes: string[];
  padding: Padding;
}

/** The padding convention of training on crops of `crop` pixels at `outputStride`: 'stride+1' when
 * the crops were k × outputStride + 1 (65 = 4 · 16 + 1), else 'none'. */
export function paddingForCrop(crop: number, outputStride: number): Padding {
  return (crop - 1) % outputStride === 0 ? 'stride+1' : 'none';
}

/** The padding multiple `segment()` uses for a convention at an output stride (0: no padding). */
export function padMultipleOf(padding: Padding, outputStride: number): number {
  return padding === 'stride+1' ? outputStride : 0;
}

function isTriple(v: unknown, positive: boolean): v is [number, number, number] {
  return Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0));
}

/**
 * Checks settings (all fields optional), naming the first bad field: `where` prefixes the message
 * (a file name, or 'atrous predict'). Throws Error.
 */
export function checkInferenceSettings(s: Partial<InferenceSettings>, numClasses: number | null, where: string): void {
  if (s.outputStride !== undefined && (!Number.isInteger(s.outputStride) || s.outputStride < 4 || (s.outputStride & (s.outputStride - 1)) !== 0)) {
    throw new Error(`${where}: outputStride must be a power of two >= 4, got ${JSON.stringify(s.outputStride)}`);
  }
  if (s.normalization !== undefined) {
    const n = s.normalization as { mean?: unknown; std?: unknown };
    if (!n || typeof n !== 'object') throw new Error(`${where}: normalization must be {mean: [r, g, b], std: [r, g, b]}, got ${JSON.stringify(n)}`);
    if (!isTriple(n.mean, false)) throw new Error(`${where}: normalization.mean must be three numbers (0..1 units), got ${JSON.stringify(n.mean)}`);
    if (!isTriple(n.std, true)) throw new Error(`${where}: normalization.std must be three positive numbers (0..1 units), got ${JSON.stringify(n.std)}`);
  }
  if (s.padding !== undefined && !PADDINGS.includes(s.padding)) {
    throw new Error(`${where}: padding must be one of ${PADDINGS.map((p) => `'${p}'`).join(', ')}, got ${JSON.stringify(s.padding)}`);
  }
  if (s.classes !== undefined) {
    if (!Array.isArray(s.classes) || !s.classes.every((c) => typeof c === 'string')) throw new Error(`${where}: classes must be a list of names, got ${JSON.stringify(s.classes)}`);
    if (numClasses !== null && s.classes.length !== numClasses) {
      throw new Error(`${where}: classes names ${s.classes.length} classes but the model predicts ${numClasses}`);
    }
  }
}
