// `--compare tfjs`: the same forward convolutions through TensorFlow.js's WebGPU backend
// (@tensorflow/tfjs-core + @tensorflow/tfjs-backend-webgpu, devDependencies), in the same process,
// on the same Dawn instance and therefore the same adapter as atrous (docs/software-gpu.md: TensorFlow.js
// runs in Node once `navigator.gpu` is set). Timed with tf.time(): the backend's GPU timestamp queries
// when the adapter has them (kernelMs), else wall clock. One warm-up, median of repeats. NHWC
// layout, explicit padding, so the shapes and the useful work are exactly those of atrous's rows.
// TensorFlow.js has no gradient of a dilated convolution (tfjs-core's Conv2D_grad asserts dilation
// 1), so its backward rows are reported as not applicable rather than timed.

import { webgpuInstance } from '../gpu/device.js';
import { median, values, type BenchRow } from './common.js';
import { convFlops, convOutSize, shapeFields, type ConvShape } from './conv2d.js';

export const TFJS_NO_BACKWARD = 'n/a: tfjs has no dilated conv gradient (Conv2D_grad asserts dilation 1)';

interface Tf {
  setBackend(name: string): Promise<boolean>;
  ready(): Promise<void>;
  getBackend(): string;
  tensor4d(v: Float32Array, shape: [number, number, number, number]): TfTensor;
  conv2d(x: TfTensor, w: TfTensor, strides: number, pad: number[][], dataFormat: 'NHWC', dilations: number): TfTensor;
  time(f: () => void): Promise<{ kernelMs: number | { error: string }; wallMs: number }>;
  version_core?: string;
}
interface TfTensor {
  dispose(): void;
  data(): Promise<unknown>;
}

let tfPromise: Promise<Tf> | null = null;

/** Loads TensorFlow.js on atrous's WebGPU instance (once per process). */
async function loadTf(adapter?: string): Promise<Tf> {
  tfPromise ??= (async () => {
    const gpu = await webgpuInstance({ adapter });
    const g = globalThis as { navigator?: { gpu?: GPU } };
    if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: { gpu, userAgent: 'node' }, configurable: true, writable: true });
    else if (!g.navigator.gpu) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    const core = '@tensorflow/tfjs-core';
    const backend = '@tensorflow/tfjs-backend-webgpu';
    let tf: Tf;
    try {
      tf = (await import(core)) as unknown as Tf;
      await import(backend);
    } catch (e) {
      throw new Error(`--compare tfjs needs the devDependencies @tensorflow/tfjs-core and @tensorflow/tfjs-backend-webgpu (npm install): ${(e as Error).message}`);
    }
    if (!(await tf.setBackend('webgpu'))) throw new Error('--compare tfjs: TensorFlow.js could not start its webgpu backend on this adapter');
    await tf.ready();
    return tf;
  })();
  return tfPromise;
}

export async function benchTfjsConv(shapes: ConvShape[], opts: { repeats: number; adapter: string; adapterOption?: string; onRow?: (r: BenchRow) => void }): Promise<BenchRow[]> {
  const tf = await loadTf(opts.adapterOption);
  const rows: BenchRow[] = [];
  const emit = (r: BenchRow) => {
    rows.push(r);
    opts.onRow?.(r);
  };
  for (const s of shapes) {
    const fields = shapeFields(s);
    const x = tf.tensor4d(values(s.n * s.h * s.h * s.cin, 1), [s.n, s.h, s.h, s.cin]);
    const w = tf.tensor4d(values(s.k * s.k * s.cin * s.cout, 2, 0.1), [s.k, s.k, s.cin, s.cout]);
    const pad = [[0, 0], [s.padding, s.padding], [s.padding, s.padding], [0, 0]];
    const conv = () => tf.conv2d(x, w, s.stride, pad, 'NHWC', s.dilation);
    try {
      let y = conv();
      await y.data(); // the warm-up: shaders compiled, and its GPU work finished
      y.dispose();
      const times: number[] = [];
      let gpu = true;
      for (let r = 0; r < Math.max(1, opts.repeats); r++) {
        const t = await tf.time(() => {
          y = conv();
        });
        y.dispose();
        if (typeof t.kernelMs === 'number') times.push(t.kernelMs);
        else {
          gpu = false;
          times.push(t.wallMs);
        }
      }
      const ms = median(times);
      const f = convFlops(s);
      const o = convOutSize(s);
      emit({
        kernel: 'conv2d', pass: 'forward', impl: 'tfjs', ...fields, ms, gflops: f.useful / (ms * 1e6), gflops_dense: f.dense / (ms * 1e6),
        gbs: (4 * (s.n * s.cin * s.h * s.h + s.n * s.cout * o * o + s.cout * s.cin * s.k * s.k)) / (ms * 1e6), useful_fraction: f.useful / f.dense,
        adapter: opts.adapter, timing: gpu ? 'gpu-timestamps' : 'wall-clock',
      });
    } finally {
      x.dispose();
      w.dispose();
    }
    for (const pass of ['backward-data', 'backward-weight'] as const) {
      // Strided 1×1/3×3 backbone convolutions at dilation 1 do have a tfjs gradient; the
      // comparison covers the forward only, as the issue asks, and says why for the rest.
      emit({ kernel: 'conv2d', pass, impl: 'tfjs', ...fields, ms: null, gflops: null, adapter: opts.adapter, note: s.dilation > 1 ? TFJS_NO_BACKWARD : 'n/a: forward-only comparison' });
    }
  }
  return rows;
}
