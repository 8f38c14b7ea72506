// Launches above maxStorageBufferBindingSize where ONE image (and, for the position splits, one
// plane) does not fit the binding limit: each op runs on the same engine at the default limits (one
// launch) and with the limit lowered to a few KiB, and must match the unsplit run: to the last bit
// where the order of every sum is unchanged, else within 1e-6 of the tensor's max-abs.
import { expect } from 'chai';
import { reinit, engine, tensor, parameter, tidy, backward, interpolate, crossEntropy, matmul, Tensor } from '../src/index.js';
import { batchNorm, adaptiveAvgPool2d, cat, maxPool2d } from '../src/index.js';
import { batchNormReductionVariants, batchNormElementwiseVariants } from '../src/ops/batchnorm.js';
import { randn, relErr, withBindingLimit, expectBitEqual, read, expectBatchNormSplit } from './helpers.js';
import { mkdtempSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../src/cli/main.js';
import { encodePng } from '../src/io/image.js';

const LOW = 2048; // bytes: 512 f32 per binding
const both = (fn: () => Promise<ArrayLike<number>[]>, low = LOW) => withBindingLimit(fn, low);

const fmt = (s: readonly number[]) => `[${s.join(', ')}]`;




/** Checks that one image of `shape` is above LOW and, when `planeToo`, one plane as well. */
function expectTooLarge(shape: number[], planeToo: boolean): void {
  const [, c, h, w] = shape;
  expect(c * h * w * 4, 'one image above the lowered limit').to.be.above(LOW);
  if (planeToo) expect(h * w * 4, 'one plane above the lowered limit').to.be.above(LOW);
  else expect(h * w * 4, 'one plane within the lowered limit').to.be.below(LOW / 2);
}

describe('split launches inside one image (binding limit lowered below one image)', () => {
  before(async () => {
    await reinit();
    engine().pool.poison = true;
  });
  after(async () => {
    await reinit();
    engine().pool.poison = true;
  });

  // Channel blocks of one image; position ranges of one plane.
  const shapes = (n: number): Array<[number[], string]> => [
    [[n, 6, 9, 11], 'channel blocks'],
    [[n, 3, 23, 29], 'position ranges'],
  ];

  for (const [reduction, elementwise] of [['lanes', 'planes'], ['tree', 'flat']] as const) {
    for (const n of [1, 2]) {
      for (const [shape, what] of shapes(n)) {
        it(`batch norm (${reduction} / ${elementwise}), batch ${n}, ${what}: training <= 1e-6, eval y, dx and running statistics to the last bit`, async () => {
          expectTooLarge(shape, what === 'position ranges');
          await expectBatchNormSplit(shape, reduction, elementwise, LOW);
        });
      }
    }
  }

  for (const n of [1, 2]) {
    for (const [shape, what] of [[[n, 5, 30, 31], 'class blocks'], [[n, 3, 50, 47], 'position ranges of one class plane']] as const) {
      it(`cross-entropy, batch ${n}, ${what}: loss and gradient to the last bit`, async () => {
        const [, c, h, w] = shape;
        // The loss reduction needs 16 KiB (one group of 2048 pairs) per launch.
        const low = 16384;
        expect(c * h * w * 4).to.be.above(low);
        if (what !== 'class blocks') expect(h * w * 8).to.be.above(low);
        const size = n * c * h * w;
        const labels = Int32Array.from({ length: n * h * w }, (_, i) => (i % 7 === 0 ? 255 : i % 11 === 0 ? c + 2 : (i * 31) % c));
        const r = await both(async () => {
          const x = parameter(randn(size, 14, 3), [...shape]);
          const loss = tidy(() => {
            const l = crossEntropy(x, tensor(labels, [n, h, w], 'i32'));
            const k = l.ref();
            backward(l);
            return k;
          });
          const res = await read(loss, x.grad!);
          x.dispose();
          return res;
        }, low);
        expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 3);
        expectBitEqual(r.full, r.split);
      });
    }
  }

  it('global average pooling and concat refuse a limit below one aligned part of 4 values (instead of looping on empty parts)', () => {
    const limits = engine().limits as { maxStorageBufferBindingSize: number };
    const saved = limits.maxStorageBufferBindingSize;
    const x = tensor(randn(2 * 3 * 5 * 7, 3), [2, 3, 5, 7]);
    const before = engine().stats().dispatches;
    const live = engine().pool.stats().liveBuffers;
    limits.maxStorageBufferBindingSize = (3 + engine().bindingAlignment / 4 - 1) * 4; // 3 values a slice
    try {
      expect(() => adaptiveAvgPool2d(x, 1)).to.throw(/adaptiveAvgPool2d: maxStorageBufferBindingSize \(\d+ bytes\) is below one aligned part of 4 values or the 32 bytes/);
      expect(() => cat([x, x], 1)).to.throw(/cat: maxStorageBufferBindingSize \(\d+ bytes\) is below one aligned chunk of 4 values/);
      expect(engine().stats().dispatches, 'dispatches').to.equal(before);
      expect(engine().pool.stats().liveBuffers, 'live buffers').to.equal(live);
    } finally {
      limits.maxStorageBufferBindingSize = saved;
      x.dispose();
    }
  });

  it('cross-entropy refuses a limit below one group of its loss reduction before any GPU work, and frees nothing it did not allocate', () => {
    const limits = engine().limits as { maxStorageBufferBindingSize: number };
    const saved = limits.maxStorageBufferBindingSize;
    const [n, c, h, w] = [1, 5, 40, 31]; // pairs [1240, 2]: 9920 bytes
    const x = tensor(randn(n * c * h * w, 14, 3), [n, c, h, w]);
    const t = tensor(new Int32Array(n * h * w), [n, h, w], 'i32');
    const live = engine().pool.stats().liveBuffers;
    const before = engine().stats().dispatches;
    limits.maxStorageBufferBindingSize = 8192; // one group of the reduction binds 16 KiB
    try {
      expect(() => crossEntropy(x, t)).to.throw(/crossEntropy: maxStorageBufferBindingSize \(8192 bytes\) is below one group of the loss reduction \(16384 bytes\)/);
      expect(engine().stats().dispatches, 'dispatches').to.equal(before);
      expect(engine().pool.stats().liveBuffers, 'live buffers').to.equal(live);
    } finally {
      limits.maxStorageBufferBindingSize = saved;
      x.dispose();
      t.dispose();
    }
  });

  for (const n of [1, 2]) {
    for (const [h, w] of [[12, 16], [9, 13]]) {
      it(`concat along channels, batch ${n}, ${h}x${w} (${(h * w) % 4 === 0 ? 'vec4' : 'scalar'} kernel): chunks of one image, forward and backward to the last bit`, async () => {
        expect(6 * h * w * 4).to.be.above(LOW);
        const r = await both(async () => {
          const a = parameter(randn(n * 6 * h * w, 51), [n, 6, h, w]);
          const b = parameter(randn(n * 4 * h * w, 52), [n, 4, h, w]);
          const y = tidy(() => {
            const y = cat([a, b], 1);
            const k = y.ref();
            backward(y, tensor(randn(y.size, 53), y.shape));
            return k;
          });
          const res = await read(y, a.grad!, b.grad!);
          a.dispose();
          b.dispose();
          return res;
        });
        expect(r.launches[1]).to.be.greaterThan(r.launches[0]);
        expectBitEqual(r.full, r.split);
      });
    }
  }

  for (const n of [1, 2]) {
    for (const [shape, what] of shapes(n)) {
      it(`global average pooling, batch ${n}, ${what}: forward and backward to the last bit`, async () => {
        expectTooLarge(shape, what === 'position ranges');
        const size = shape.reduce((a, b) => a * b, 1);
        const r = await both(async () => {
          const x = parameter(randn(size, 41), shape);
          const y = tidy(() => {
            const y = adaptiveAvgPool2d(x, 1);
            const k = y.ref();
            backward(y, tensor(randn(y.size, 42), y.shape));
            return k;
          });
          const res = await read(y, x.grad!);
          x.dispose();
          return res;
        });
        expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 1);
        expectBitEqual(r.full, r.split);
      });
    }
  }

  for (const n of [1, 2]) {
    for (const [opts, what] of [
      [{ kernelSize: 3, stride: 2, padding: 1 }, '3x3 stride 2 padding 1'],
      [{ kernelSize: 2, stride: 2, padding: 0 }, '2x2 stride 2'],
      [{ kernelSize: 3, stride: 1, padding: 1 }, '3x3 stride 1 padding 1'],
    ] as const) {
      it(`max pooling (${what}), batch ${n}, row blocks of one plane: forward (with and without argmax) and backward to the last bit`, async () => {
        const shape = [n, 3, 23, 29];
        expectTooLarge(shape, true);
        const size = shape.reduce((a, b) => a * b, 1);
        const data = randn(size, 61);
        for (let i = 0; i < size; i += 13) data[i] = data[i + 1 < size ? i + 1 : i]; // ties
        const r = await both(async () => {
          const x = parameter(data, shape);
          const y = tidy(() => {
            const y = maxPool2d(x, opts);
            const k = y.ref();
            backward(y, tensor(randn(y.size, 62), y.shape));
            return k;
          });
          const x2 = tensor(data, shape);
          const y2 = maxPool2d(x2, opts);
          x2.dispose();
          const res = await read(y, x.grad!, y2);
          x.dispose();
          return res;
        });
        expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 3);
        expectBitEqual(r.full, r.split);
      });
    }
  }

  for (const alignCorners of [false, true]) {
    for (const [shape, size] of [
      [[1, 3, 23, 29], [41, 53]],
      [[2, 3, 23, 29], [11, 13]],
      [[2, 2, 9, 11], [29, 37]],
      [[1, 2, 30, 31], [30, 31]],
    ] as const) {
      it(`bilinear resize (alignCorners ${alignCorners}) ${fmt(shape)} to ${size.join('x')}: row blocks of one plane, forward and backward to the last bit`, async () => {
        const [, , h, w] = shape;
        expect(Math.max(h * w, size[0] * size[1]) * 4).to.be.above(LOW);
        const n = (shape as readonly number[]).reduce((a, b) => a * b, 1);
        const r = await both(async () => {
          const x = parameter(randn(n, 12), [...shape]);
          const y = tidy(() => {
            const y = interpolate(x, { size: [...size], alignCorners });
            const k = y.ref();
            backward(y, tensor(randn(y.size, 13), y.shape));
            return k;
          });
          const res = await read(y, x.grad!);
          x.dispose();
          return res;
        });
        expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 2);
        expectBitEqual(r.full, r.split);
      });
    }
  }

  for (const [m, k, n, what] of [
    [37, 24, 44, 'row blocks of a and c, column blocks of b (b above the limit)'],
    [50, 8, 16, 'row blocks of a and c (b fits)'],
  ] as const) {
    it(`matmul [${m}, ${k}] x [${k}, ${n}]: ${what}, to the last bit`, async () => {
      expect(m * n * 4).to.be.above(LOW);
      const r = await both(async () => {
        const a = tensor(randn(m * k, 71), [m, k]);
        const b = tensor(randn(k * n, 72), [k, n]);
        const c = matmul(a, b);
        a.dispose();
        b.dispose();
        return read(c);
      });
      expect(r.launches[1]).to.be.greaterThan(r.launches[0]);
      expectBitEqual(r.full, r.split);
    });
  }
});

describe('tensors above maxBufferSize: errors that name the tensor', () => {
  after(async () => {
    await reinit();
    engine().pool.poison = true;
  });

  it('an allocation names the tensor (shape, dtype), its bytes and the limit', async () => {
    await reinit({ limits: { maxBufferSize: 1 << 16 } });
    expect(() => tensor(new Float32Array(1 << 15), [4, 8, 32, 32])).to.throw(/a tensor \[4, 8, 32, 32\] \(f32\) needs 131072 bytes, above the device limit maxBufferSize \(65536 bytes\)/);
  });

  it('atrous predict refuses, before any GPU work, a photo whose logits would exceed maxBufferSize', async () => {
    // The fixture model's largest weight is 36864 bytes; its largest tensor on a 160x120 photo is
    // the logits [1, 4, 120, 160] (307200 bytes).
    await reinit({ limits: { maxBufferSize: 1 << 16 } });
    const weights = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures', 'model', 'small_weights.safetensors');
    const dir = mkdtempSync(join(tmpdir(), 'atrous-bigphoto-'));
    const [h, w] = [120, 160];
    const image = join(dir, 'photo.png');
    writeFileSync(image, encodePng(new Uint8Array(h * w * 3).map((_, i) => (i * 31) % 256), w, h));
    const out = join(dir, 'out');
    const errors: string[] = [];
    const [log, err] = [console.log, console.error];
    console.log = () => {};
    console.error = (...a: unknown[]) => errors.push(a.join(' '));
    const before = engine().stats().dispatches;
    let code: number;
    try {
      code = await run(['predict', '--weights', weights, '--image', image, '--out', out]);
    } finally {
      console.log = log;
      console.error = err;
    }
    expect(code).to.equal(1);
    expect(errors.join('\n')).to.match(/the logits \[1, 4, 120, 160\] \(f32\) for this 160x120 image needs 307200 bytes, above the device limit maxBufferSize \(65536 bytes\)/);
    expect(engine().stats().dispatches).to.equal(before);
    expect(existsSync(out) ? readdirSync(out) : []).to.deep.equal([]);
  });
});
