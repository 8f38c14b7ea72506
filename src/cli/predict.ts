// `atrous predict`: segments one image with a checkpoint and writes the label map, an overlay and
// optionally the logits. Outputs are written to temp names and renamed once complete.
import { readFileSync, mkdirSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../io/files.js';
import { join, basename, extname, dirname } from 'node:path';
import { init } from '../init.js';
import { modelFromCheckpoint } from '../io/checkpoint.js';
import { serializeSafetensors } from '../io/safetensors.js';
import { decodeImage, imageInfo, encodeIndexedPng, encodePng } from '../io/image.js';
import { describeInference } from '../io/checkpoint.js';
import { tripleOpt } from './eval.js';
import { vocPalette } from '../data/palette.js';
import { overlayLabels } from '../data/pixels.js';
import { segmentImage } from '../infer/segment.js';
import { PADDINGS, type InferenceSettings, type Padding } from '../nn/inference.js';
import { parse } from './args.js';
import type { Command } from './main.js';

const USAGE = [
  'usage: atrous predict --weights FILE --image IMG [--config NAME] [--output-stride N] [--scales 0.5,1,1.5]',
  '                      [--flip] [--out DIR] [--save-logits FILE] [--mean R,G,B --std R,G,B]',
  '                      [--padding stride+1|none] [--lenient] [--window H,W [--stride H,W]] [--max-side N]',
  '',
  'Reads a PNG or JPEG upright (its EXIF orientation applied, as browsers show it), runs the model and',
  'writes into DIR (default: the current directory)',
  '<name>.labels.png (palette-indexed, VOC palette) and <name>.overlay.png (colour overlay).',
  '--save-logits writes a safetensors file with `logits` [1, C, H, W] F32 at input resolution, before',
  'softmax (the mean over scales/flips when several are used). --config is needed for a checkpoint',
  'without a config in its metadata (e.g. an export of torchvision weights); --lenient ignores',
  'aux_classifier.* keys.',
  'The checkpoint says how it was trained to be used, and that is the default: the output stride of its',
  'last training stage, its input normalisation (--mean/--std, 0..1 units), its padding convention',
  '(stride+1: inputs padded to k × output stride + 1, as the paper pads to 513; none) and its class',
  'names. A checkpoint that does not say (a torchvision export) gets the configuration\'s output stride,',
  'ImageNet mean/std and no padding, as torchvision runs its weights. The first line printed names each',
  'setting and where it came from.',
  'The default is the whole image in one run, at full resolution. --window H,W runs sliding windows',
  '(mmseg\'s slide mode: windows cover the image, the logits are averaged where they overlap; --stride',
  'defaults to two thirds of the window); --max-side N first downscales so that the longer side is at',
  'most N pixels. The label PNG and overlay are at the full resolution either way.',
].join('\n');


export const predictCommand: Command = {
  summary: 'segment an image with a checkpoint (label PNG, overlay, logits)',
  usage: USAGE,
  async run(argv) {
    const { values } = parse('predict', argv, {
      weights: { type: 'string' }, image: { type: 'string' }, config: { type: 'string' }, 'output-stride': { type: 'string' },
      scales: { type: 'string' }, flip: { type: 'boolean' }, out: { type: 'string' }, 'save-logits': { type: 'string' },
      mean: { type: 'string' }, std: { type: 'string' }, padding: { type: 'string' }, lenient: { type: 'boolean' },
      window: { type: 'string' }, stride: { type: 'string' }, 'max-side': { type: 'string' },
    });
    const hwPair = (flag: string): [number, number] | undefined => {
      const v = (values as Record<string, unknown>)[flag] as string | undefined;
      if (v === undefined) return undefined;
      const p = v.split(',').map(Number);
      if ((p.length !== 1 && p.length !== 2) || p.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`atrous predict: --${flag} must be H,W or N (positive integers), got '${v}'`);
      return p.length === 1 ? [p[0], p[0]] : [p[0], p[1]];
    };
    const window = hwPair('window');
    const stride = hwPair('stride');
    if (stride && !window) throw new Error('atrous predict: --stride goes with --window');
    const maxSideArg = values['max-side'] as string | undefined;
    const maxSide = maxSideArg === undefined ? undefined : Number(maxSideArg);
    if (maxSide !== undefined && !(Number.isInteger(maxSide) && maxSide >= 1)) throw new Error(`atrous predict: --max-side must be a positive integer, got '${maxSideArg}'`);
    const weights = values.weights as string | undefined;
    const imagePath = values.image as string | undefined;
    if (!weights) throw new Error('atrous predict: --weights FILE is required');
    if (!imagePath) throw new Error('atrous predict: --image IMG is required');
    const scales = ((values.scales as string | undefined) ?? '1').split(',').map(Number);
    if (scales.some((s) => !(s > 0) || !Number.isFinite(s))) throw new Error(`atrous predict: --scales must be positive numbers, got '${String(values.scales)}'`);
    const os = values['output-stride'] === undefined ? undefined : Number(values['output-stride']);
    if (os !== undefined && !(Number.isInteger(os) && os >= 4)) throw new Error(`atrous predict: --output-stride must be an integer like 8 or 16, got '${String(values['output-stride'])}'`);
    const mean = tripleOpt('predict', 'mean', values.mean as string | undefined);
    const std = tripleOpt('predict', 'std', values.std as string | undefined);
    if ((mean === undefined) !== (std === undefined)) throw new Error('atrous predict: --mean and --std go together');
    if (std && std.some((x) => !(x > 0))) throw new Error(`atrous predict: --std must be positive, got '${String(values.std)}'`);
    const padding = values.padding as string | undefined;
    if (padding !== undefined && !(PADDINGS as readonly string[]).includes(padding)) throw new Error(`atrous predict: --padding must be ${PADDINGS.join(' or ')}, got '${padding}'`);
    const settings: Partial<InferenceSettings> = {
      ...(os !== undefined ? { outputStride: os } : {}),
      ...(mean && std ? { normalization: { mean, std } } : {}),
      ...(padding !== undefined ? { padding: padding as Padding } : {}),
    };

    // Read and check every input before the GPU starts.
    let wbytes: Uint8Array;
    let ibytes: Uint8Array;
    try {
      wbytes = new Uint8Array(readFileSync(weights));
    } catch (e) {
      throw new Error(`atrous predict: cannot read weights '${weights}': ${(e as Error).message}`);
    }
    try {
      ibytes = new Uint8Array(readFileSync(imagePath));
    } catch (e) {
      throw new Error(`atrous predict: cannot read image '${imagePath}': ${(e as Error).message}`);
    }
    const img = decodeImage(ibytes, imagePath); // upright: the EXIF orientation applied
    const { orientation } = imageInfo(ibytes, imagePath);
    const outDir = (values.out as string | undefined) ?? '.';
    // Made now, so that an unwritable place fails before the model runs; removed again (with the
    // parents it made) when the run fails before writing anything.
    const madeDir = mkdirSync(outDir, { recursive: true });
    const written: string[] = [];
    const segmentAndWrite = async (): Promise<number> => {
      await init({ adapter: values.adapter as string | undefined });
      const { model, config, inference } = modelFromCheckpoint(wbytes, {
        source: weights,
        config: values.config as string | undefined,
        settings,
        ignore: values.lenient ? ['aux_classifier.*'] : undefined,
      });
      try {
        model.eval();
        const hw = img.width * img.height;
        const t0 = performance.now();
        const seg = await segmentImage(model, img.data, img.height, img.width, { scales, flip: Boolean(values.flip), window, stride, maxSide });
        const ms = performance.now() - t0;
        const name = basename(imagePath, extname(imagePath));
        const palette = vocPalette();
        const labelsFile = join(outDir, `${name}.labels.png`);
        const overlayFile = join(outDir, `${name}.overlay.png`);
        // All outputs or none: a failed write (a full disk) removes the ones already written.
        const write = (file: string, what: string, data: () => Uint8Array) => {
          try {
            writeFileAtomic(file, data(), what);
          } catch (e) {
            for (const f of written) rmSync(f, { force: true });
            throw e;
          }
          written.push(file);
        };
        write(labelsFile, 'label image', () => encodeIndexedPng(seg.labels, img.width, img.height, palette));
        write(overlayFile, 'overlay image', () => encodePng(overlayLabels(img.data, seg.labels, palette), img.width, img.height));
        const logitsFile = values['save-logits'] as string | undefined;
        if (logitsFile) {
          mkdirSync(dirname(logitsFile), { recursive: true });
          write(logitsFile, 'logits', () => serializeSafetensors({ logits: { dtype: 'F32', shape: [1, seg.numClasses, img.height, img.width], data: seg.logits } }, { config: config.name, image: basename(imagePath) }));
        }
        const counts = new Map<number, number>();
        for (const l of seg.labels) counts.set(l, (counts.get(l) ?? 0) + 1);
        const names = inference.values.classes;
        const classes = [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${names[k]}: ${((100 * n) / hw).toFixed(1)}%`);
        console.log(`settings: ${describeInference(inference)}`);
        const turned = orientation !== 1 ? ` (upright, EXIF orientation ${orientation})` : '';
        console.log(`${imagePath}: ${img.width}x${img.height}${turned}, config ${config.name}, output stride ${model.outputStride}, scales ${scales.join(',')}${values.flip ? ' + flip' : ''}, ${ms.toFixed(0)} ms`);
        console.log(`classes: ${classes.join(', ')}`);
        for (const f of written) console.log(`wrote ${f}`);
        return 0;
      } finally {
        model.dispose();
      }
    };
    try {
      return await segmentAndWrite();
    } catch (e) {
      if (madeDir !== undefined && written.length === 0) rmSync(madeDir, { recursive: true, force: true });
      throw e;
    }
  },
};
