// Launches above maxStorageBufferBindingSize are split into launches that bind slices of the same
// buffers. Each op runs twice on the same adapter, at the default limits (one launch) and with the
// binding limit lowered to a few KiB (many launches), and the results must be equal to the last bit
// (these ops sum nothing across a split, so the order of every sum is unchanged).
import { expect } from 'chai';
import { reinit, engine, tensor, parameter, tidy, backward, add, full, axpy_, relu, dropout, argmax, interpolate, crossEntropy, conv2d, SGD, Tensor } from '../src/index.js';
import { setConv2dVariant } from '../src/ops/conv2d/index.js';
import { batchNorm, adaptiveAvgPool2d, cat, maxPool2d } from '../src/index.js';
import { batchNormReductionVariants, batchNormElementwiseVariants } from '../src/ops/batchnorm.js';
import { randn, relErr, withBindingLimit, expectBitEqual, read, expectBatchNormSplit } from './helpers.js';

const LOW = 4096; // bytes: 1024 f32 per binding
const both = (fn: () => Promise<ArrayLike<number>[]>, low = LOW) => withBindingLimit(fn, low);




describe('split launches (binding limit lowered)', () => {
  after(async () => {
    await reinit();
    engine().pool.poison = true;
  });
  before(async () => {
    await reinit();
    engine().pool.poison = true;
  });

  const n = 5 * 1024 + 37; // several slices and a ragged last one

  it('add, fill and axpy_, forward and backward', async () => {
    const r = await both(async () => {
      const a = parameter(randn(n, 1), [n]);
      const b = parameter(randn(n, 2), [n]);
      const [y, f] = tidy(() => {
        const out = add(a, b);
        const k = out.ref();
        backward(out, tensor(randn(n, 3), [n]));
        const f = full([n], 0.5);
        axpy_(f, k, -3);
        return [k, f];
      });
      const res = await read(y, f, a.grad!, b.grad!);
      a.dispose();
      b.dispose();
      return res;
    });
    expect(r.launches[1]).to.be.greaterThan(r.launches[0]);
    expectBitEqual(r.full, r.split);
  });

  it('relu and dropout, forward and backward (the mask does not depend on the split)', async () => {
    const r = await both(async () => {
      const x = parameter(randn(n, 4), [n]);
      const x2 = parameter(randn(n, 5), [n]);
      const [y, z] = tidy(() => {
        const y = relu(x);
        const z = dropout(x2, { p: 0.3, training: true, seed: 7 });
        const k = [y.ref(), z.ref()];
        backward(add(y, z), tensor(randn(n, 6), [n]));
        return k;
      });
      const res = await read(y, z, x.grad!, x2.grad!);
      x.dispose();
      x2.dispose();
      return res;
    });
    expect(r.launches[1]).to.be.greaterThan(r.launches[0]);
    expectBitEqual(r.full, r.split);
  });

  it('SGD with and without momentum', async () => {
    const r = await both(async () => {
      const out: ArrayLike<number>[] = [];
      for (const momentum of [0, 0.9]) {
        const w = parameter(randn(n, 8), [n]);
        const opt = new SGD([w], { lr: 0.1, momentum, weightDecay: 1e-4 });
        for (let s = 0; s < 2; s++) {
          w.grad?.dispose();
          w.grad = tensor(randn(n, 9 + s), [n]);
          opt.step();
        }
        out.push(await w.data());
        opt.zeroGrad();
        w.dispose();
      }
      return out;
    });
    expect(r.launches[1]).to.be.greaterThan(r.launches[0]);
    expectBitEqual(r.full, r.split);
  });

  const cases: Array<[number[], string]> = [
    [[2, 5, 33, 41], 'several channels per slice'],
    [[1, 3, 50, 70], 'one channel per slice, positions split'],
  ];
  for (const [shape, what] of cases) {
    it(`argmax over classes: ${what}`, async () => {
      const size = shape.reduce((a, b) => a * b, 1);
      const data = randn(size, 11);
      for (let i = 0; i < size; i += 17) data[i] = data[(i + shape[2] * shape[3]) % size]; // ties
      const r = await both(async () => {
        const x = tensor(data, shape);
        const y = argmax(x, 1);
        x.dispose();
        return read(y);
      });
      expect(r.launches[1]).to.be.greaterThan(r.launches[0]);
      expectBitEqual(r.full, r.split);
    });
  }

  for (const alignCorners of [false, true]) {
    it(`bilinear resize in blocks of planes, forward and backward (alignCorners ${alignCorners})`, async () => {
      const shape = [2, 3, 13, 17];
      const size = 2 * 3 * 13 * 17;
      const r = await both(async () => {
        const x = parameter(randn(size, 12), shape);
        const y = tidy(() => {
          const y = interpolate(x, { size: [29, 23], alignCorners });
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

  it('cross-entropy in blocks of images (and a split loss reduction), forward and backward', async () => {
    const shape = [6, 3, 24, 24];
    const size = 6 * 3 * 24 * 24;
    const labels = Int32Array.from({ length: 6 * 24 * 24 }, (_, i) => (i % 7 === 0 ? 255 : (i * 31) % 3));
    const r = await both(async () => {
      const x = parameter(randn(size, 14, 3), shape);
      const loss = tidy(() => {
        const l = crossEntropy(x, tensor(labels, [6, 24, 24], 'i32'));
        const k = l.ref();
        backward(l);
        return k;
      });
      const res = await read(loss, x.grad!);
      x.dispose();
      return res;
    }, 16384);
    expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 3);
    expectBitEqual(r.full, r.split);
  });

  it('names the tensor, its bytes and the limit when the smallest part of a launch cannot fit', async () => {
    const limits = engine().limits as { maxStorageBufferBindingSize: number };
    const saved = limits.maxStorageBufferBindingSize;
    limits.maxStorageBufferBindingSize = LOW;
    // One plane is above the limit, so the resize runs by rows; one output row reads two input rows
    // of 2000 values (16000 bytes), which cannot be split further.
    const x = tensor(randn(2 * 2000), [1, 1, 2, 2000]);
    x.label = 'photo';
    const before = engine().stats().dispatches;
    try {
      expect(() => interpolate(x, { size: [8, 8] })).to.throw(/interpolate: the 2 input rows of photo that one output row reads \(16000 bytes\) are above the device limit maxStorageBufferBindingSize \(4096 bytes\)/);
      expect(engine().stats().dispatches).to.equal(before);
    } finally {
      limits.maxStorageBufferBindingSize = saved;
      x.dispose();
    }
  });

  for (const variant of ['register', 'tiled', 'subgroup'] as const) {
    for (const [opts, what] of [
      [{ padding: 2, dilation: 2 }, '3x3 dilation 2'],
      [{ stride: 2, padding: 1 }, '3x3 stride 2'],
    ] as const) {
      it(`conv2d (${variant}, ${what}) in blocks of images: forward and dx to the last bit, dw and db <= 1e-6`, async function () {
        if (variant === 'subgroup' && !engine().hasSubgroups) this.skip();
        const [n, cin, cout, h, w] = [7, 32, 32, 9, 11];
        setConv2dVariant(variant);
        try {
          const r = await both(async () => {
            const x = parameter(randn(n * cin * h * w, 21), [n, cin, h, w]);
            const wt = parameter(randn(cout * cin * 9, 22, 0.1), [cout, cin, 3, 3]);
            const b = parameter(randn(cout, 23), [cout]);
            const y = tidy(() => {
              const y = conv2d(x, wt, b, opts);
              const k = y.ref();
              backward(y, tensor(randn(y.size, 24), y.shape));
              return k;
            });
            const res = await read(y, x.grad!, wt.grad!, b.grad!);
            for (const t of [x, wt, b]) t.dispose();
            return res;
          }, 49152);
          expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 6);
          expectBitEqual(r.full.slice(0, 2), r.split.slice(0, 2));
          expect(relErr(r.split[2], r.full[2])).to.be.below(1e-6);
          expect(relErr(r.split[3], r.full[3])).to.be.below(1e-6);
        } finally {
          setConv2dVariant('auto');
        }
      });
    }
  }

  for (const [reduction, elementwise] of [['lanes', 'planes'], ['tree', 'flat']] as const) {
    it(`batch norm in blocks of images (${reduction} / ${elementwise}): training statistics over the whole batch (<= 1e-6), eval y and dx to the last bit`, async () => {
      await expectBatchNormSplit([6, 5, 11, 13], reduction, elementwise, LOW);
    });
  }

  it('global average pooling in blocks of planes, forward and backward', async () => {
    const shape = [3, 7, 19, 23];
    const size = 3 * 7 * 19 * 23;
    const r = await both(async () => {
      const x = parameter(randn(size, 41), shape);
      const y = tidy(() => {
        const y = adaptiveAvgPool2d(x, 1);
        const k = y.ref();
        backward(y, tensor(randn(21, 42), y.shape));
        return k;
      });
      const res = await read(y, x.grad!);
      x.dispose();
      return res;
    }, 16384);
    expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 2);
    expectBitEqual(r.full, r.split);
  });

  for (const [h, w] of [[12, 16], [9, 13]]) {
    it(`concat along channels in blocks of images (${h}x${w}: ${(h * w) % 4 === 0 ? 'vec4' : 'scalar'} kernel), forward and backward`, async () => {
      const r = await both(async () => {
        const a = parameter(randn(5 * 3 * h * w, 51), [5, 3, h, w]);
        const b = parameter(randn(5 * 2 * h * w, 52), [5, 2, h, w]);
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
      expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 2);
      expectBitEqual(r.full, r.split);
    });
  }

  it('max pooling in blocks of planes, forward (with and without argmax) and backward', async () => {
    const shape = [2, 5, 17, 19];
    const size = 2 * 5 * 17 * 19;
    const r = await both(async () => {
      const x = parameter(randn(size, 61), shape);
      const y = tidy(() => {
        const y = maxPool2d(x, { kernelSize: 3, stride: 2, padding: 1 });
        const k = y.ref();
        backward(y, tensor(randn(y.size, 62), y.shape));
        return k;
      });
      const x2 = tensor(randn(size, 61), shape);
      const y2 = maxPool2d(x2, { kernelSize: 3, stride: 2, padding: 1 });
      x2.dispose();
      const res = await read(y, x.grad!, y2);
      x.dispose();
      return res;
    });
    expect(r.launches[1]).to.be.greaterThan(r.launches[0] + 3);
    expectBitEqual(r.full, r.split);
  });
});
