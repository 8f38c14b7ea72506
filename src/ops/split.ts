// Splitting launches whose bindings exceed the device's maxStorageBufferBindingSize. A storage
// binding may be any aligned sub-range of a buffer (buffers go up to maxBufferSize), so a launch
// over a large tensor becomes several launches, each binding a slice that fits. A launch whose
// bindings all fit is left exactly as it was (same kernel, same bindings, same numerics).
// runFlat: flat chunks. runBlocks: blocks of independent items (images, planes). runPlanes: ops over
// [n, c, hw] planes, by blocks of images, else of channels of one image, else of positions of one
// plane. rowBlocks: one plane by blocks of rows, each with the band of rows it reads. sliceFrom:
// one aligned slice. Ops with other layouts (cross-entropy's class blocks, concat's chunks, matmul)
// build their launches from sliceFrom.

import { engine, type Bindable } from '../gpu/engine.js';

/**
 * Runs a flat launch over `units` units (one invocation's worth: an f32, or a vec4 of them), where
 * unit u lives at byte u * bytes[i] of bindings[i]. When every binding fits the device limit,
 * `launch(bindings, 0, units)` runs once; otherwise it runs per chunk of units, with each binding
 * sliced to the chunk (chunk starts are aligned to the device's binding offset alignment).
 */
export function runFlat(units: number, bindings: readonly Bindable[], bytes: readonly number[], launch: (b: Bindable[], start: number, count: number) => void): void {
  const e = engine();
  const max = e.limits.maxStorageBufferBindingSize;
  if (bindings.every((b) => b.byteLength <= max)) {
    launch([...bindings], 0, units);
    return;
  }
  const widest = Math.max(...bytes);
  // Every unit is a multiple of 4 bytes, so a chunk of a multiple of alignment / 4 units starts
  // every slice at an aligned byte offset.
  const step = Math.max(1, e.bindingAlignment / 4);
  const chunk = Math.floor(max / widest / step) * step;
  if (chunk < 1) throw new Error(`atrous: maxStorageBufferBindingSize (${max} bytes) is below one aligned chunk of ${step * widest} bytes`);
  for (let start = 0; start < units; start += chunk) {
    const count = Math.min(chunk, units - start);
    launch(bindings.map((b, i) => e.slice(b, start * bytes[i], count * bytes[i])), start, count);
  }
}

/**
 * Runs a launch over `count` independent items (images, planes) where item j is elements
 * [j * per[i], (j + 1) * per[i]) of bindings[i] (4-byte elements; per[i] = 0: bound whole in every
 * launch, e.g. weights). When every binding fits, `launch(bindings, zeros, 0, count)` runs once.
 * Otherwise it runs per block of items that fits: binding i is sliced from an aligned element at
 * most alignment / 4 - 1 elements before its first item, and offs[i] says where in the slice that
 * item starts (kernels add it to their indices). An item that cannot fit alone is an error that
 * names the binding, its bytes per item and the limit.
 */
export function runBlocks(
  op: string,
  count: number,
  bindings: readonly Bindable[],
  per: readonly number[],
  launch: (b: Bindable[], offs: number[], start: number, n: number) => void,
): void {
  const e = engine();
  const max = e.limits.maxStorageBufferBindingSize;
  if (bindings.every((b) => b.byteLength <= max)) {
    launch([...bindings], bindings.map(() => 0), 0, count);
    return;
  }
  const align = e.bindingAlignment / 4;
  const maxEl = Math.floor(max / 4) - (align - 1);
  let nb = count;
  bindings.forEach((b, i) => {
    if (per[i] === 0) {
      if (b.byteLength > max) throw new Error(`atrous: ${op}: ${b.label ?? `binding ${i}`} is ${b.byteLength} bytes, above the device limit maxStorageBufferBindingSize (${max} bytes), and cannot be split`);
      return;
    }
    const fit = Math.floor(maxEl / per[i]);
    if (fit < 1) {
      throw new Error(
        `atrous: ${op}: ${b.label ?? `binding ${i}`} is ${b.byteLength} bytes and one of its ${count} independent parts (${per[i] * 4} bytes) ` +
          `is above the device limit maxStorageBufferBindingSize (${max} bytes)`,
      );
    }
    nb = Math.min(nb, fit);
  });
  for (let j0 = 0; j0 < count; j0 += nb) {
    const n = Math.min(nb, count - j0);
    const offs: number[] = [];
    const bs = bindings.map((b, i) => {
      if (per[i] === 0) {
        offs.push(0);
        return b;
      }
      const start = j0 * per[i];
      const at = Math.floor(start / align) * align;
      offs.push(start - at);
      return e.slice(b, at * 4, (start - at + n * per[i]) * 4);
    });
    launch(bs, offs, j0, n);
  }
}

/** A slice of `b` holding `count` elements of `size` bytes from element `start`, bound from the
 * aligned element at or before it; returns the slice and where `start` is in it (elements). */
export function sliceFrom(b: Bindable, start: number, count: number, size = 4): [Bindable, number] {
  const e = engine();
  const align = Math.max(1, e.bindingAlignment / size);
  const at = Math.floor(start / align) * align;
  return [e.slice(b, at * size, (start - at + count) * size), start - at];
}

/** How a binding of an op over planes is laid out: 'plane' holds [n, c, hw] (4-byte elements,
 * NCHW), 'vector' one element per plane [n, c], 'whole' is bound whole in every launch. */
export type PlaneKind = 'plane' | 'vector' | 'whole';

/** The part of [n, c, hw] tensors one launch of runPlanes covers: images [n0, n0 + n); channels
 * [c0, c0 + cb) of each (cb = c when n > 1); positions [p0, p0 + len) of each plane (p0 = 0 and
 * len = hw unless one plane alone is above the limit, when n = cb = 1). */
export interface PlanePart {
  n0: number;
  n: number;
  c0: number;
  cb: number;
  p0: number;
  len: number;
}

/** The length of the position ranges runPlanes cuts a plane of hw values into when one plane is
 * above the binding limit (equal ranges, the last possibly shorter), else hw. */
export function planeRange(hw: number): number {
  const e = engine();
  const maxEl = Math.floor(e.limits.maxStorageBufferBindingSize / 4) - (e.bindingAlignment / 4 - 1);
  if (hw <= maxEl) return hw;
  if (maxEl < 1) throw new Error(`atrous: maxStorageBufferBindingSize (${e.limits.maxStorageBufferBindingSize} bytes) is below one aligned element`);
  return Math.ceil(hw / Math.ceil(hw / maxEl));
}

/**
 * Runs a launch over the n·c planes of hw values of [n, c, hw] tensors (`kinds` says how each
 * binding is laid out). When every binding fits the device limit, `launch(bindings, zeros, whole)`
 * runs once. Otherwise the launch runs per block of whole images when one image fits, else per
 * block of channels of one image (contiguous in NCHW) when one plane fits, else per range of
 * positions of one plane (ranges of planeRange(hw)). Each 'plane' / 'vector' binding is sliced from
 * an aligned element at most alignment / 4 - 1 elements before the part's first value, and offs[i]
 * says where in the slice that value is (kernels add it to their indices). A 'whole' binding above
 * the limit is an error naming it, its bytes and the limit.
 */
export function runPlanes(
  op: string,
  n: number,
  c: number,
  hw: number,
  bindings: readonly Bindable[],
  kinds: readonly PlaneKind[],
  launch: (b: Bindable[], offs: number[], part: PlanePart) => void,
): void {
  const e = engine();
  const max = e.limits.maxStorageBufferBindingSize;
  if (bindings.every((b) => b.byteLength <= max)) {
    launch([...bindings], bindings.map(() => 0), { n0: 0, n, c0: 0, cb: c, p0: 0, len: hw });
    return;
  }
  bindings.forEach((b, i) => {
    if (kinds[i] === 'whole' && b.byteLength > max) {
      throw new Error(`atrous: ${op}: ${b.label ?? `binding ${i}`} is ${b.byteLength} bytes, above the device limit maxStorageBufferBindingSize (${max} bytes), and cannot be split`);
    }
  });
  const align = e.bindingAlignment / 4;
  const maxEl = Math.floor(max / 4) - (align - 1);
  if (c * hw <= maxEl) {
    const per = kinds.map((k) => (k === 'plane' ? c * hw : k === 'vector' ? c : 0));
    runBlocks(op, n, bindings, per, (bs, offs, n0, k) => launch(bs, offs, { n0, n: k, c0: 0, cb: c, p0: 0, len: hw }));
    return;
  }
  const part = (ni: number, c0: number, cb: number, p0: number, len: number) => {
    const offs: number[] = [];
    const bs = bindings.map((b, i) => {
      if (kinds[i] === 'whole') {
        offs.push(0);
        return b;
      }
      const [start, count] = kinds[i] === 'plane' ? [(ni * c + c0) * hw + p0, (cb - 1) * hw + len] : [ni * c + c0, cb];
      const at = Math.floor(start / align) * align;
      offs.push(start - at);
      return e.slice(b, at * 4, (start - at + count) * 4);
    });
    launch(bs, offs, { n0: ni, n: 1, c0, cb, p0, len });
  };
  if (hw <= maxEl) {
    const cbMax = Math.floor(maxEl / hw);
    for (let ni = 0; ni < n; ni++) for (let c0 = 0; c0 < c; c0 += cbMax) part(ni, c0, Math.min(cbMax, c - c0), 0, hw);
    return;
  }
  const len = planeRange(hw);
  for (let ni = 0; ni < n; ni++) for (let ci = 0; ci < c; ci++) for (let p0 = 0; p0 < hw; p0 += len) part(ni, ci, 1, p0, Math.min(len, hw - p0));
}

/** One launch of a plane split by rows: output rows [r0, r0 + rows) and the band [b0, b1) of input
 * rows they read. */
export interface RowBlock {
  r0: number;
  rows: number;
  b0: number;
  b1: number;
}

/**
 * Splits a plane of `outRows` rows of `outLen` values, each block of rows reading a band of input
 * rows of `inLen` values (`band(r0, r1)`: the input rows [b0, b1) that output rows [r0, r1) read),
 * into blocks whose output rows and input band both fit the binding limit (with the slack of an
 * aligned slice start). A single output row whose band does not fit is an error that names `op`,
 * `what`, the band's bytes and the limit.
 */
export function rowBlocks(op: string, what: string, outRows: number, outLen: number, inLen: number, band: (r0: number, r1: number) => [number, number]): RowBlock[] {
  const e = engine();
  const max = e.limits.maxStorageBufferBindingSize;
  const maxEl = Math.floor(max / 4) - (e.bindingAlignment / 4 - 1);
  const out: RowBlock[] = [];
  for (let r0 = 0; r0 < outRows; ) {
    let rows = Math.min(outRows - r0, Math.floor(maxEl / outLen));
    if (rows < 1) throw new Error(`atrous: ${op}: one output row of ${what} (${outLen * 4} bytes) is above the device limit maxStorageBufferBindingSize (${max} bytes)`);
    for (;;) {
      const [b0, b1] = band(r0, r0 + rows);
      if ((b1 - b0) * inLen <= maxEl) {
        out.push({ r0, rows, b0, b1 });
        break;
      }
      if (rows === 1) {
        throw new Error(`atrous: ${op}: the ${b1 - b0} input rows of ${what} that one output row reads (${(b1 - b0) * inLen * 4} bytes) are above the device limit maxStorageBufferBindingSize (${max} bytes)`);
      }
      rows = Math.max(1, Math.min(rows - 1, Math.floor(rows * 0.9)));
    }
    r0 += rows;
  }
  return out;
}
