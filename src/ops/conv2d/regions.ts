// Region tables of the 'subgroup' forward and backward-data kernels (conv2d.fwd_sg.wgsl,
// conv2d.dx_sg.wgsl): the output (or input) map cut, along each axis, where a tap starts or stops
// reading inside the input, so that a workgroup's tile loops over exactly the useful taps. The
// tables travel in the kernels' Params (fields tiles, nr, nc, rb, cb, pre).

import { ceilDiv, type Conv2dGeometry } from './geometry.js';

/** Pixels per workgroup tile of the subgroup forward / backward-data kernels. */
export const SG_PIX = 32;
/** At most this many breakpoints per axis (the kernels' rb / cb arrays). */
const REGION_BREAKS = 16;
/** Length of the kernels' tile prefix-sum array (pre: (REGION_BREAKS − 1)² + 1 values, in vec4s). */
const REGION_PRE = Math.ceil(((REGION_BREAKS - 1) ** 2 + 1) / 4) * 4;

/** The region fields of the subgroup kernels' Params. */
export interface RegionTables {
  /** Tiles per image (per residue class for strided backward-data): pre[nr·nc]. */
  tiles: number;
  nr: number;
  nc: number;
  /** Row / column breakpoints, zero-padded to REGION_BREAKS. */
  rb: number[];
  cb: number[];
  /** Tile prefix sums of the regions (row-major), zero-padded to REGION_PRE. */
  pre: number[];
}

/** Breakpoints of one output axis, [0, ..., out]: where a tap starts or stops reading inside the
 * input. Between two of them every position reads inside the input for the same taps. More than
 * the kernel's tables hold (kernels wider than 7) gives one interval, pruned by masks. */
function axisBreaks(stride: number, pad: number, dil: number, size: number, out: number, lo: number, hi: number): number[] {
  const set = new Set<number>([0, out]);
  for (let t = lo; t < hi; t++) {
    const first = Math.max(0, Math.ceil((pad - t * dil) / stride));
    const last = Math.min(out - 1, Math.floor((size - 1 + pad - t * dil) / stride));
    if (first <= last) {
      set.add(first);
      set.add(last + 1);
    }
  }
  const b = [...set].sort((a, c) => a - c);
  return b.length > REGION_BREAKS ? [0, out] : b;
}

/** Breakpoints of one input axis for backward-data, [0, ..., size]: where a tap starts or stops
 * reaching inside dy (i + pad − t·dil in [0, out)). Only for stride 1: a strided axis is split
 * into residue classes of ceil(size / stride) positions, one interval each. */
function axisBreaksDx(stride: number, pad: number, dil: number, size: number, out: number, lo: number, hi: number): number[] {
  if (stride !== 1) return [0, ceilDiv(size, stride)];
  const set = new Set<number>([0, size]);
  for (let t = lo; t < hi; t++) {
    const first = Math.max(0, t * dil - pad);
    const last = Math.min(size - 1, out - 1 + t * dil - pad);
    if (first <= last) {
      set.add(first);
      set.add(last + 1);
    }
  }
  const b = [...set].sort((a, c) => a - c);
  return b.length > REGION_BREAKS ? [0, size] : b;
}

/** The region tables: tiles per image (per class), the region grid, its breakpoints and the
 * regions' tile prefix sums (conv2d.fwd_sg.wgsl). `taps(axis, at)` counts the taps of an axis
 * that read inside for position `at`. Exact regions cost tiles: on a small map (5×5: 9 regions of 1 to 9 pixels, each a 32-pixel tile) they multiply the lanes
 * more than pruning saves, so the cut is used only when it executes fewer lane-taps than one
 * region over the whole map (pruned by the global tap range and per-pixel masks). */
function regionTables(rb: number[], cb: number[], taps: (axis: 0 | 1, at: number) => number, all: [number, number]): RegionTables {
  const tilesOf = (rows: number[], cols: number[]) => {
    const pre = [0];
    let lanes = 0;
    for (let i = 0; i + 1 < rows.length; i++) {
      for (let j = 0; j + 1 < cols.length; j++) {
        const t = ceilDiv((rows[i + 1] - rows[i]) * (cols[j + 1] - cols[j]), SG_PIX);
        pre.push(pre[pre.length - 1] + t);
        // An uncut axis is pruned by the global tap range only.
        lanes += t * SG_PIX * (rows.length > 2 ? taps(0, rows[i]) : all[0]) * (cols.length > 2 ? taps(1, cols[j]) : all[1]);
      }
    }
    return { pre, lanes };
  };
  let cut = tilesOf(rb, cb);
  const whole = [[0, rb[rb.length - 1]], [0, cb[cb.length - 1]]];
  const one = tilesOf(whole[0], whole[1]);
  if (one.lanes <= cut.lanes) {
    rb = whole[0];
    cb = whole[1];
    cut = one;
  }
  const nr = rb.length - 1;
  const nc = cb.length - 1;
  const padTo = (a: number[], n: number): number[] => [...a, ...new Array<number>(n - a.length).fill(0)];
  return { tiles: cut.pre[nr * nc], nr, nc, rb: padTo(rb, REGION_BREAKS), cb: padTo(cb, REGION_BREAKS), pre: padTo(cut.pre, REGION_PRE) };
}

/** Taps t in [lo, hi) with 0 <= o·s − p + t·d < size (forward: output position o). */
const tapsInside = (o: number, s: number, p: number, d: number, size: number, lo: number, hi: number): number => {
  let n = 0;
  for (let t = lo; t < hi; t++) if (o * s - p + t * d >= 0 && o * s - p + t * d < size) n++;
  return n;
};
export const forwardRegions = (g: Conv2dGeometry): RegionTables =>
  regionTables(
    axisBreaks(g.sh, g.ph, g.dilationH, g.h, g.oh, g.kyLo, g.kyHi),
    axisBreaks(g.sw, g.pw, g.dilationW, g.w, g.ow, g.kxLo, g.kxHi),
    (axis, o) => (axis === 0 ? tapsInside(o, g.sh, g.ph, g.dilationH, g.h, g.kyLo, g.kyHi) : tapsInside(o, g.sw, g.pw, g.dilationW, g.w, g.kxLo, g.kxHi)),
    [g.kyHi - g.kyLo, g.kxHi - g.kxLo],
  );
/** Backward-data (stride 1 on a cut axis): taps t with 0 <= i + p − t·d < out for input position i. */
export const backwardDataRegions = (g: Conv2dGeometry): RegionTables =>
  regionTables(
    axisBreaksDx(g.sh, g.ph, g.dilationH, g.h, g.oh, g.kyLo, g.kyHi),
    axisBreaksDx(g.sw, g.pw, g.dilationW, g.w, g.ow, g.kxLo, g.kxHi),
    (axis, i) => (axis === 0 ? tapsInside(i, 1, -g.ph, -g.dilationH, g.oh, g.kyLo, g.kyHi) : tapsInside(i, 1, -g.pw, -g.dilationW, g.ow, g.kxLo, g.kxHi)),
    [g.kyHi - g.kyLo, g.kxHi - g.kxLo],
  );
