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
