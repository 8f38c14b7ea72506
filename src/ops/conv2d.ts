// conv2d with torch.nn.functional.conv2d semantics (groups = 1), forward and backward.
// Kernels: shaders/conv2d.wpack.wgsl + conv2d.fwd.wgsl (forward, implicit GEMM),
// conv2d.wpackdx.wgsl + conv2d.dx.wgsl (backward-data, transposed conv as a gather),
// conv2d.nhwc.wgsl + conv2d.dw.wgsl (backward-weight, reduction over n·oh·ow on channels-last
// copies of x and dy), conv2d.db.wgsl (bias gradient).
// Each gradient is computed only for the inputs that require one.

import { engine } from '../gpu/engine.js';
import { Tensor, empty, fmtShape } from '../tensor.js';
import { record } from '../autograd.js';
import { OpError, checkTensor, checkNumber, pair } from './check.js';
import { zeros } from './elementwise.js';

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
  dh: number;
  dw: number;
  /** Kernel rows [kyLo, kyHi) and columns [kxLo, kxHi) that touch the input for some output
   * position; every other tap only ever reads padding (exact tap pruning). */
  kyLo: number;
  kyHi: number;
  kxLo: number;
  kxHi: number;
}

const OP = 'conv2d';
/** Register tiles (see the shader headers): forward 16 output channels × 4 columns, backward-data
 * 16 input channels × 4 columns, backward-weight 8 output × 8 input channels. Channel counts are
 * padded to multiples of 4 (one vec4). */
const FWD_CO = 16;
const DX_CI = 16;
const DW_CO = 8;
const DW_CI = 8;
const COLS = 4;
/** Invocations per workgroup of the GEMM kernels: a multiple of lavapipe's 8-wide SIMD. */
const WG_GEMM = 8;
const WG_DB = 64;

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

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
  const [dh, dw] = withShapes(() => pair(OP, 'dilation', opts.dilation, 1, 1));
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
  const oh = Math.floor((h + 2 * ph - dh * (kh - 1) - 1) / sh) + 1;
  const ow = Math.floor((w + 2 * pw - dw * (kw - 1) - 1) / sw) + 1;
  if (oh <= 0 || ow <= 0) {
    throw new OpError(
      OP,
      `output size ${oh}×${ow} is not positive: x ${fmtShape(x.shape)}, weight ${fmtShape(weight.shape)}, ` +
        `stride [${sh}, ${sw}], padding [${ph}, ${pw}], dilation [${dh}, ${dw}] (the dilated kernel is larger than the padded input)`,
    );
  }
  const [kyLo, kyHi] = tapRange(kh, sh, ph, dh, h, oh);
  const [kxLo, kxHi] = tapRange(kw, sw, pw, dw, w, ow);
  return { n, cin, h, w, cout, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, kyLo, kyHi, kxLo, kxHi };
}

/** The parameter block shared by the three GEMM kernels (their Params structs, in order);
 * `tail` fills the per-kernel slots (channel padding, block counts). */
function gemmParams(g: Conv2dGeometry, pad4: number, tail: number[]): number[] {
  return [g.n, g.cin, g.h, g.w, g.cout, g.oh, g.ow, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, pad4, g.kyLo, g.kyHi, g.kxLo, g.kxHi, ...tail];
}

/** Forward kernels only (no autograd): y = conv(x, weight) + bias. */
export function conv2dForward(x: Tensor, weight: Tensor, bias: Tensor | null, g: Conv2dGeometry): Tensor {
  const e = engine();
  const y = empty([g.n, g.cout, g.oh, g.ow]);
  if (y.size === 0) return y;
  const coPad4 = ceilDiv(g.cout, 4);
  const coPad = coPad4 * 4;
  const K = g.kh * g.kw * g.cin;
  const wp = empty([K + 1, coPad]);
  // Without a bias the weight is bound in its place (never read: hasBias = 0).
  e.run({
    shader: 'conv2d.wpack',
    params: [g.cin, g.cout, g.kh, g.kw, coPad, bias ? 1 : 0],
    bindings: [weight, bias ?? weight, wp],
    workgroups: e.grid1d(wp.size, 64),
  });
  const owBlocks = ceilDiv(g.ow, COLS);
  const [gx, gy] = e.grid1d(g.n * g.oh * owBlocks, WG_GEMM);
  e.run({
    shader: 'conv2d.fwd',
    constants: { WG: WG_GEMM },
    params: gemmParams(g, coPad4, [owBlocks]),
    bindings: [x, wp, y],
    workgroups: [gx, gy, ceilDiv(g.cout, FWD_CO)],
  });
  wp.dispose();
  return y;
}

/** Backward-data kernels: dx = conv_transpose(dy, weight), shape [n, cin, h, w]. */
export function conv2dBackwardData(dy: Tensor, weight: Tensor, g: Conv2dGeometry): Tensor {
  const e = engine();
  const dx = empty([g.n, g.cin, g.h, g.w]);
  if (dx.size === 0) return dx;
  const ciPad4 = ceilDiv(g.cin, 4);
  const ciPad = ciPad4 * 4;
  const wq = empty([g.kh * g.kw * g.cout, ciPad]);
  e.run({
    shader: 'conv2d.wpackdx',
    params: [g.cin, g.cout, g.kh, g.kw, ciPad],
    bindings: [weight, wq],
    workgroups: e.grid1d(wq.size, 64),
  });
  const qBlocks = ceilDiv(ceilDiv(g.w, g.sw), COLS);
  const [gx, gy] = e.grid1d(g.n * g.h * g.sw * qBlocks, WG_GEMM);
  e.run({
    shader: 'conv2d.dx',
    constants: { WG: WG_GEMM },
    params: gemmParams(g, ciPad4, [qBlocks]),
    bindings: [dy, wq, dx],
    workgroups: [gx, gy, ceilDiv(g.cin, DX_CI)],
  });
  wq.dispose();
  return dx;
}

/** NCHW → channels-last [n, h·w, cPad] with the channels zero-padded to a multiple of 4. */
function channelsLast(t: Tensor): Tensor {
  const e = engine();
  const [n, c, h, w] = t.shape;
  const cPad = ceilDiv(c, 4) * 4;
  const out = empty([n, h * w, cPad]);
  e.run({ shader: 'conv2d.nhwc', params: [n, c, h * w, cPad], bindings: [t, out], workgroups: e.grid1d(out.size, 64) });
  return out;
}

/** Backward-weight kernels: dw[co, ci, ky, kx] = Σ dy · im2col(x), shape [cout, cin, kh, kw]. */
export function conv2dBackwardWeight(x: Tensor, dy: Tensor, g: Conv2dGeometry): Tensor {
  const e = engine();
  // An empty batch has nothing to sum (and its empty channels-last copies could not be bound
  // as vec4 arrays, whose minimum binding size is 16 bytes).
  if (g.n === 0) return zeros([g.cout, g.cin, g.kh, g.kw]);
  const dw = empty([g.cout, g.cin, g.kh, g.kw]);
  if (dw.size === 0) return dw;
  const xT = channelsLast(x);
  const dyT = channelsLast(dy);
  const ciBlocks = ceilDiv(g.cin, DW_CI);
  const [gx, gy] = e.grid1d(g.kh * g.kw * ciBlocks, WG_GEMM);
  e.run({
    shader: 'conv2d.dw',
    constants: { WG: WG_GEMM },
    params: gemmParams(g, ciBlocks, []),
    bindings: [xT, dyT, dw],
    workgroups: [gx, gy, ceilDiv(g.cout, DW_CO)],
  });
  xT.dispose();
  dyT.dispose();
  return dw;
}

/** Bias gradient: db[co] = Σ_{n, oy, ox} dy[n, co, oy, ox]. */
export function conv2dBackwardBias(dy: Tensor, g: Conv2dGeometry): Tensor {
  const e = engine();
  const db = empty([g.cout]);
  e.run({
    shader: 'conv2d.db',
    constants: { WG: WG_DB },
    params: [g.n, g.cout, g.oh * g.ow],
    bindings: [dy, db],
    workgroups: [g.cout],
  });
  return db;
}

/**
 * 2-D convolution, torch.nn.functional.conv2d semantics with groups = 1.
 * x [n, cin, h, w], weight [cout, cin, kh, kw] (PyTorch layout), bias [cout] or null;
 * returns [n, cout, oh, ow] with oh = floor((h + 2·padH − dilH·(kh − 1) − 1) / strideH) + 1.
 */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  const b = bias ?? null;
  const g = conv2dGeometry(x, weight, b, opts);
  const y = conv2dForward(x, weight, b, g);
  const inputs = b ? [x, weight, b] : [x, weight];
  // Save only what the needed gradients read: dx needs the weight, dw needs x.
  const needX = x.requiresGrad;
  const needW = weight.requiresGrad;
  const saved = [...(needW ? [x] : []), ...(needX ? [weight] : [])];
  return record(OP, y, inputs, saved, (dy, s, needs) => {
    const xs = needW ? s[0] : null;
    const ws = needX ? s[needW ? 1 : 0] : null;
    return [
      needs[0] && ws ? conv2dBackwardData(dy, ws, g) : null,
      needs[1] && xs ? conv2dBackwardWeight(xs, dy, g) : null,
      ...(b ? [needs[2] ? conv2dBackwardBias(dy, g) : null] : []),
    ];
  });
}
