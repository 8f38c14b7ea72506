// conv2d geometry: the argument checks, the output size and the exact tap range of one
// convolution. Everything here is plain arithmetic on shapes (no GPU work); the shape tracer
// (src/nn/module.ts) uses the same output-size function as the op.

import { Tensor, fmtShape } from '../../tensor.js';
import { OpError, checkTensor, checkNumber, pair } from '../check.js';

export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: number | [number, number];
  dilation?: number | [number, number];
  groups?: number;
}

/** Everything the kernels need to know about one convolution. */
export interface Conv2dGeometry {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  oh: number;
  ow: number;
  sh: number;
  sw: number;
  ph: number;
  pw: number;
  /** Dilation (the atrous rate) along rows and columns: tap (ky, kx) reads input row
   * oy·sh − ph + ky·dilationH and column ox·sw − pw + kx·dilationW. */
  dilationH: number;
  dilationW: number;
  /** Kernel rows [kyLo, kyHi) and columns [kxLo, kxHi) that touch the input for some output
   * position; every other tap only ever reads padding (exact tap pruning). */
  kyLo: number;
  kyHi: number;
  kxLo: number;
  kxHi: number;
}

const OP = 'conv2d';

export const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

/** Output size of one axis: floor((size + 2·pad − dil·(k − 1) − 1) / stride) + 1 (PyTorch's). */
export function convOutputSize(size: number, k: number, stride: number, pad: number, dil: number): number {
  return Math.floor((size + 2 * pad - dil * (k - 1) - 1) / stride) + 1;
}

/** Taps t in [0, k) for which some output o in [0, out) reads input o·s − p + t·d inside [0, size).
 * Returns the smallest range [lo, hi) that holds them all ([0, 0) when none does). */
export function tapRange(k: number, stride: number, pad: number, dil: number, size: number, out: number): [number, number] {
  let lo = -1;
  let hi = -1;
  for (let t = 0; t < k; t++) {
    const first = Math.max(0, Math.ceil((pad - t * dil) / stride));
    const last = Math.min(out - 1, Math.floor((size - 1 + pad - t * dil) / stride));
    if (first <= last) {
      if (lo < 0) lo = t;
      hi = t + 1;
    }
  }
  return lo < 0 ? [0, 0] : [lo, hi];
}

/** Validates the arguments (before any GPU work) and computes the geometry. */
export function conv2dGeometry(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, opts: Conv2dOptions = {}): Conv2dGeometry {
  checkTensor(OP, 'x', x, { rank: 4 });
  checkTensor(OP, 'weight', weight, { rank: 4 });
  const shapes = `x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}`;
  // The shared checks name the op and the option; the shapes are added to say which conv it was.
  const withShapes = <T>(check: () => T): T => {
    try {
      return check();
    } catch (e) {
      throw new OpError(OP, `${(e as Error).message.replace(`atrous: ${OP}: `, '')} (${shapes})`);
    }
  };
  if (opts === null || typeof opts !== 'object') throw new OpError(OP, `options must be an object, got ${JSON.stringify(opts)} (${shapes})`);
  const groups = opts.groups === undefined ? 1 : withShapes(() => checkNumber(OP, 'groups', opts.groups, { integer: true, min: 1 }));
  if (groups !== 1) throw new OpError(OP, `groups = ${groups} is not supported (only groups = 1); ${shapes}`);
  const [sh, sw] = withShapes(() => pair(OP, 'stride', opts.stride, 1, 1));
  const [ph, pw] = withShapes(() => pair(OP, 'padding', opts.padding, 0, 0));
  const [dilationH, dilationW] = withShapes(() => pair(OP, 'dilation', opts.dilation, 1, 1));
  const [n, cin, h, w] = x.shape;
  const [cout, wcin, kh, kw] = weight.shape;
  if (wcin !== cin) {
    throw new OpError(OP, `weight ${fmtShape(weight.shape)} expects ${wcin} input channels [cout, cin, kh, kw], but x ${fmtShape(x.shape)} has ${cin} [n, cin, h, w]`);
  }
  if (kh === 0 || kw === 0 || cout === 0) throw new OpError(OP, `weight ${fmtShape(weight.shape)} must have cout, kh and kw >= 1`);
  if (bias !== null && bias !== undefined) {
    checkTensor(OP, 'bias', bias);
    if (bias.rank !== 1 || bias.shape[0] !== cout) {
      throw new OpError(OP, `bias ${fmtShape(bias.shape)} must have shape [${cout}] (cout of weight ${fmtShape(weight.shape)})`);
    }
  }
  const oh = convOutputSize(h, kh, sh, ph, dilationH);
  const ow = convOutputSize(w, kw, sw, pw, dilationW);
  if (oh <= 0 || ow <= 0) {
    throw new OpError(
      OP,
      `output size ${oh}×${ow} is not positive: x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}, ` +
        `stride [${sh}, ${sw}], padding [${ph}, ${pw}], dilation [${dilationH}, ${dilationW}] (the dilated kernel is larger than the padded input)`,
    );
  }
  const [kyLo, kyHi] = tapRange(kh, sh, ph, dilationH, h, oh);
  const [kxLo, kxHi] = tapRange(kw, sw, pw, dilationW, w, ow);
  return { n, cin, h, w, cout, kh, kw, oh, ow, sh, sw, ph, pw, dilationH, dilationW, kyLo, kyHi, kxLo, kxHi };
}
