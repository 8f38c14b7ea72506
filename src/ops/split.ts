// Splitting launches whose bindings exceed the device's maxStorageBufferBindingSize. A storage
// binding may be any aligned sub-range of a buffer (buffers go up to maxBufferSize), so a launch
// over a large tensor becomes several launches, each binding a slice that fits. A launch whose
// bindings all fit is left exactly as it was (same kernel, same bindings, same numerics).

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
