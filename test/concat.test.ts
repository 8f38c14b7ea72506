// cat (channel concatenation): forward and per-input gradients vs a CPU reference, finite
// differences, errors.
import { expect } from 'chai';
import { tensor, parameter, tidy, backward, engine, cat, type Tensor } from '../src/index.js';
import { randn, numel, expectClose, gradCheck } from './helpers.js';

/** torch.cat(xs, 1) on the CPU, and each input's slice of dy. */
function reference(xs: Float32Array[], shapes: number[][], dy: Float32Array) {
  const [n, , h, w] = shapes[0];
  const hw = h * w;
  const cy = shapes.reduce((a, s) => a + s[1], 0);
  const y = new Float64Array(n * cy * hw);
  const dxs = shapes.map((s) => new Float64Array(numel(s)));
  let c0 = 0;
  shapes.forEach((s, i) => {
    for (let b = 0; b < n; b++) {
      for (let ch = 0; ch < s[1]; ch++) {
        for (let j = 0; j < hw; j++) {
          const src = (b * s[1] + ch) * hw + j;
          const dst = (b * cy + c0 + ch) * hw + j;
          y[dst] = xs[i][src];
          dxs[i][src] = dy[dst];
        }
      }
    }
    c0 += s[1];
  });
  return { y, dxs };
}

/** Forward and backward on the GPU; inputs with grad[i] false are plain tensors (no gradient). */
async function gpu(xs: Float32Array[], shapes: number[][], grad: boolean[], dim?: number) {
  const ts = xs.map((d, i) => (grad[i] ? parameter(d, shapes[i]) : tensor(d, shapes[i])));
  let dy: Float32Array = new Float32Array(0);
  const y = tidy(() => {
    const out = dim === undefined ? cat(ts) : cat(ts, dim);
    dy = randn(out.size, 99);
    backward(out, tensor(dy, out.shape));
    return out;
  });
  const res = { shape: [...y.shape], y: await y.float32(), dy, dxs: [] as (Float32Array | null)[] };
  for (const t of ts) {
    res.dxs.push(t.grad ? await t.grad.float32() : null);
    t.grad?.dispose();
    t.dispose();
  }
  y.dispose();
  return res;
}

async function check(shapes: number[][], grad: boolean[], dim?: number) {
  const xs = shapes.map((s, i) => randn(numel(s), 10 + i));
  const got = await gpu(xs, shapes, grad, dim);
  const ref = reference(xs, shapes, got.dy);
  expect(got.shape).to.deep.equal([shapes[0][0], shapes.reduce((a, s) => a + s[1], 0), shapes[0][2], shapes[0][3]]);
  expectClose(got.y, ref.y, 1e-4, 'y');
  shapes.forEach((_, i) => {
    if (grad[i]) expectClose(got.dxs[i]!, ref.dxs[i], 1e-3, `dx${i}`);
    else expect(got.dxs[i], `input ${i} needs no gradient`).to.equal(null);
  });
}

describe('cat (channels)', () => {
  it('two inputs of different channel counts, batch 2, odd spatial size', async () => {
    await check([[2, 3, 5, 7], [2, 5, 5, 7]], [true, true]);
  });

  it('three inputs, batch 3, the middle one a single channel', async () => {
    await check([[3, 4, 3, 3], [3, 1, 3, 3], [3, 6, 3, 3]], [true, true, true]);
  });

  it('five ASPP-like branches, dim -3', async () => {
    await check([[2, 8, 9, 9], [2, 8, 9, 9], [2, 8, 9, 9], [2, 8, 9, 9], [2, 8, 9, 9]], [true, true, true, true, true], -3);
  });

  it('computes gradients only for the inputs that need them', async () => {
    await check([[2, 3, 4, 5], [2, 2, 4, 5], [2, 4, 4, 5]], [false, true, false]);
  });

  it('accepts a single tensor (a copy, gradient passed through)', async () => {
    await check([[2, 3, 5, 4]], [true]);
  });

  it('accepts an input with zero channels', async () => {
    await check([[2, 3, 4, 4], [2, 0, 4, 4], [2, 2, 4, 4]], [true, true, true]);
  });

  it('records its forward as kernels only, so a forward pass can be timed in one compute pass', async function () {
    const e = engine();
    if (!e.hasTimestamps) this.skip();
    const a = tensor(randn(2 * 3 * 5 * 7, 1), [2, 3, 5, 7]);
    const b = tensor(randn(2 * 4 * 5 * 7, 2), [2, 4, 5, 7]);
    const ms = await e.timeGpu(() => tidy(() => void cat([a, b])));
    expect(ms).to.be.a('number');
    a.dispose();
    b.dispose();
  });

  it('passes a finite-difference check', async () => {
    await gradCheck((a, b) => cat([a, b]), [
      { data: randn(2 * 2 * 3 * 2, 71), shape: [2, 2, 3, 2] },
      { data: randn(2 * 1 * 3 * 2, 72), shape: [2, 1, 3, 2] },
    ]);
  });

  it('rejects bad arguments before any GPU work, naming the op, the index and the shapes', () => {
    const a = tensor(randn(2 * 3 * 4 * 5, 1), [2, 3, 4, 5]);
    const b = tensor(randn(2 * 2 * 4 * 6, 2), [2, 2, 4, 6]);
    const c = tensor(randn(1 * 2 * 4 * 5, 3), [1, 2, 4, 5]);
    const ai = tensor(new Int32Array(2 * 3 * 4 * 5), [2, 3, 4, 5], 'i32');
    const a3 = tensor(randn(12, 1), [3, 4, 1]);
    const e = engine();
    const before = e.stats();
    const bad: [() => Tensor, RegExp][] = [
      [() => cat([]), /cat: 'xs' must be a non-empty array of tensors/],
      [() => cat(a as unknown as Tensor[]), /cat: 'xs' must be a non-empty array of tensors/],
      [() => cat([a, b]), /cat: xs\[1\] has shape \[2, 2, 4, 6\] but xs\[0\] has shape \[2, 3, 4, 5\]/],
      [() => cat([a, a, c]), /cat: xs\[2\] has shape \[1, 2, 4, 5\] but xs\[0\] has shape \[2, 3, 4, 5\]/],
      [() => cat([a, a], 0), /cat: only dim 1 \(channels\) is supported.*got dim 0/],
      [() => cat([a, a], 2), /cat: only dim 1 \(channels\) is supported.*got dim 2/],
      [() => cat([a, ai]), /cat: argument 'xs\[1\]' must be f32, got i32/],
      [() => cat([a, a3]), /cat: argument 'xs\[1\]' must have rank 4.*\[3, 4, 1\]/],
      [() => cat([a, null as unknown as Tensor]), /cat: argument 'xs\[1\]' must be a Tensor/],
    ];
    for (const [f, msg] of bad) expect(f).to.throw(msg);
    const after = e.stats();
    expect(after.dispatches).to.equal(before.dispatches);
    expect(after.liveBuffers).to.equal(before.liveBuffers);
    for (const t of [a, b, c, ai, a3]) t.dispose();
  });
});
