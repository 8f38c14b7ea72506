// conv2d split inside one image: with the binding limit lowered below one image of x, y, dy or dx
// (a batch-1 photo above 128 MiB), the three passes run by bands of rows (holding every channel,
// or one plane when a plane is above the limit) or per block of channels of each image. Each case
// runs twice on the same adapter, at the default limits (one launch per pass) and with the limit
// lowered, and the results are compared: sums split across bands, channel or image blocks within
// 1e-6 of the tensor's max-abs, results that sum nothing across the split to the last bit.
import { expect } from 'chai';
import { reinit, engine, tensor, parameter, tidy, backward, conv2d, Tensor } from '../src/index.js';
import { setConv2dVariant, type Conv2dOptions } from '../src/ops/conv2d/index.js';
import { randn, withBindingLimit as both } from './helpers.js';


function expectBitEqual(a: ArrayLike<number>, b: ArrayLike<number>, what: string): void {
  expect(a.length, what).to.equal(b.length);
  let bad = -1;
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) { bad = i; break; }
  expect(bad, `${what}: first difference at ${bad}: ${a[bad]} vs ${b[bad]}`).to.equal(-1);
}

/** max |a − b| <= tol · max |b|, and no non-finite value. */
function expectNear(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string): void {
  expect(a.length, what).to.equal(b.length);
  let m = 0;
  let d = 0;
  for (let i = 0; i < a.length; i++) {
    expect(Number.isFinite(a[i]), `${what}: element ${i} is ${a[i]}`).to.equal(true);
    m = Math.max(m, Math.abs(b[i]));
    d = Math.max(d, Math.abs(a[i] - b[i]));
  }
  expect(m, `${what}: all zero`).to.be.greaterThan(0);
  expect(d / m, `${what}: max abs difference ${d} against max abs ${m}`).to.be.at.most(tol);
}

async function read(...ts: Tensor[]): Promise<ArrayLike<number>[]> {
  const out: ArrayLike<number>[] = [];
  for (const t of ts) {
    out.push(await t.data());
    t.dispose();
  }
  return out;
}

/** y, dx, dw (and db) of one conv2d with a seeded upstream gradient. */
function convCase(shape: [number, number, number, number, number], opts: Conv2dOptions, withBias: boolean, seed: number): () => Promise<ArrayLike<number>[]> {
  const [n, cin, cout, h, w] = shape;
  return async () => {
    const x = parameter(randn(n * cin * h * w, seed), [n, cin, h, w]);
    const wt = parameter(randn(cout * cin * 9, seed + 1, 0.1), [cout, cin, 3, 3]);
    const b = withBias ? parameter(randn(cout, seed + 2), [cout]) : null;
    const y = tidy(() => {
      const y = conv2d(x, wt, b, opts);
      const k = y.ref();
      backward(y, tensor(randn(y.size, seed + 3), y.shape));
      return k;
    });
    const res = await read(y, x.grad!, wt.grad!, ...(b ? [b.grad!] : []));
    for (const t of [x, wt, b]) t?.dispose();
    return res;
  };
}

describe('conv2d split inside one image (binding limit below one image)', () => {
  before(async () => {
    await reinit();
    engine().pool.poison = true;
  });
  after(async () => {
    await reinit();
    engine().pool.poison = true;
  });

  /** Runs every case of a group with every variant and batch 1 and 2 against the unsplit run:
   * y, dx, dw (and db) within 1e-6 of the tensor's max-abs, y to the last bit where `exactY`. */
  function group(title: string, shape: [number, number, number, number], low: () => number, cases: [Conv2dOptions, boolean, boolean, string][], minExtra: number): void {
    for (const variant of ['register', 'tiled', 'subgroup'] as const) {
      for (const n of [1, 2]) {
        for (const [opts, withBias, exactY, what] of cases) {
          it(`${variant}, batch ${n}, ${title}, ${what}: ${exactY ? 'y to the last bit; ' : ''}y, dx, dw${withBias ? ', db' : ''} within 1e-6 of the unsplit run`, async function () {
            if (variant === 'subgroup' && !engine().hasSubgroups) this.skip();
            setConv2dVariant(variant);
            try {
              const r = await both(convCase([n, ...shape], opts, withBias, 100 + n), low());
              expect(r.launches[1], 'dispatches').to.be.greaterThan(r.launches[0] + minExtra);
              const names = ['y', 'dx', 'dw', 'db'];
              for (let k = 0; k < r.full.length; k++) expectNear(r.split[k], r.full[k], 1e-6, names[k]);
              if (exactY) expectBitEqual(r.split[0], r.full[0], 'y');
            } finally {
              setConv2dVariant('auto');
            }
          });
        }
      }
    }
  }
  /** A limit that leaves `el` elements to a slice after the alignment slack. */
  const limit = (el: number) => (): number => (el + engine().bindingAlignment / 4 - 1) * 4;

  // Blocks of channels: 37 input and 38 output channels on 5×53 (one image of x 39220 bytes, of y
  // 40280 at stride 1) with 9700 elements per slice. Bands of rows holding every channel would
  // read too many shared rows (at most 4 output rows per band), so each image runs per block of
  // channels: 29 to 36 channels per block, so that the subgroup kernels run on the full blocks
  // (their tiles at least half full) and the register ones on the ragged rest; input channel
  // blocks are summed.
  group('blocks of channels', [37, 38, 5, 53], limit(9700), [
    [{ padding: 1 }, true, false, 'stride 1, padding 1, bias'],
    [{ stride: 2, padding: 1 }, false, false, 'stride 2, padding 1, no bias'],
    [{ dilation: 2, padding: 2 }, true, false, 'dilation 2, padding 2, bias'],
    [{ dilation: [3, 2], padding: [1, 2], stride: [1, 2] }, false, false, 'dilation 3×2, stride 1×2, padding 1×2, no bias'],
  ], 6);

  // Bands of rows holding every channel: 5 and 6 channels on 29×13 with 900 elements per slice
  // (11 output rows per band at stride 1). y sums nothing across bands, so it is bit-identical;
  // dx adds the rows that neighbouring bands share, dw and db the bands' sums. Where a band would
  // read too many shared rows (dilation 2) the pass falls back to blocks of channels, and the
  // weight gradient (channels-last copies, 4 planes per channel block) to bands of one plane.
  group('bands of every channel', [5, 6, 29, 13], limit(900), [
    [{ padding: 1 }, true, true, 'stride 1, padding 1, bias'],
    [{ stride: 2, padding: 1 }, true, true, 'stride 2, padding 1, bias'],
    [{ dilation: 2, padding: 2 }, false, false, 'dilation 2, padding 2, no bias'],
    [{ dilation: 2, padding: [3, 0], stride: 2 }, true, false, 'dilation 2, stride 2, padding 3×0, bias'],
    [{ padding: [4, 1] }, false, true, 'padding 4×1 (rows that read only padding), no bias'],
  ], 10);

  // Bands of one plane: one channel plane (29×13 = 377 elements) above the 300 elements of a
  // slice. Each band is a conv of its own, split into blocks of channels; neighbouring bands share
  // input rows (dx adds them); bands whose output rows read only padding stay empty (forward
  // fills them with the bias, the gradients skip them).
  group('bands of one plane', [5, 6, 29, 13], limit(300), [
    [{ padding: 1 }, true, false, 'stride 1, padding 1, bias'],
    [{ stride: 2, padding: 1 }, true, false, 'stride 2, padding 1, bias'],
    [{ dilation: 2, padding: 2 }, false, false, 'dilation 2, padding 2, no bias'],
    [{ dilation: 2, padding: [3, 0], stride: 2 }, true, false, 'dilation 2, stride 2, padding 3×0, bias'],
    [{ padding: [4, 1] }, false, false, 'padding 4×1 (rows that read only padding), no bias'],
  ], 10);

  // A weight above the limit (40×40×3×3: 57600 bytes; packed for the forward kernels 57760) with
  // images that fit: the packed weight is bound whole by the kernels, so the passes run per block
  // of channels, cutting the weight (and dw) by rows of output channels.
  group('weight above the limit', [40, 40, 4, 4], limit(4000), [
    [{ padding: 1 }, true, false, 'stride 1, padding 1, bias'],
    [{ stride: 2, padding: 2, dilation: 2 }, false, false, 'stride 2, dilation 2, padding 2, no bias'],
  ], 6);

  // The weight (6×5×3×3: 1080 bytes) and one channel plane (29×13 = 377 elements) both above the
  // 200 elements of a slice: the weight gradient runs by bands of one plane, each band's dw by
  // blocks of channels (not blocks of channels of the whole image, whose 4-channel channels-last
  // copy cannot fit).
  group('weight and one plane above the limit', [5, 6, 29, 13], limit(200), [
    [{ padding: 1 }, true, false, 'stride 1, padding 1, bias'],
    [{ stride: 2, padding: 1 }, false, false, 'stride 2, padding 1, no bias'],
  ], 10);

  it('names the tensor, its bytes and the limit when the rows one output row reads cannot fit, before any GPU work', () => {
    const limits = engine().limits as { maxStorageBufferBindingSize: number };
    const saved = limits.maxStorageBufferBindingSize;
    const x = tensor(randn(2 * 40 * 300, 7), [1, 2, 40, 300]);
    x.label = 'photo';
    const wt = tensor(randn(4 * 2 * 9, 8), [4, 2, 3, 3]);
    limits.maxStorageBufferBindingSize = 2048;
    const before = engine().stats().dispatches;
    try {
      expect(() => conv2d(x, wt, null, { padding: 1 })).to.throw(
        /conv2d: photo is 96000 bytes and the 3 rows of one channel that one output row reads \(3600 bytes\) is above the device limit maxStorageBufferBindingSize \(2048 bytes\)/,
      );
      expect(engine().stats().dispatches).to.equal(before);
    } finally {
      limits.maxStorageBufferBindingSize = saved;
      x.dispose();
      wt.dispose();
    }
  });

  it('the weight gradient names x, its bytes and the limit when its channels-last rows cannot fit', () => {
    const limits = engine().limits as { maxStorageBufferBindingSize: number };
    const saved = limits.maxStorageBufferBindingSize;
    const x = parameter(randn(2 * 40 * 100, 9), [1, 2, 40, 100]);
    x.label = 'photo';
    const wt = parameter(randn(3 * 2 * 9, 10), [3, 2, 3, 3]);
    // 500 elements a slice: the forward pass and dx run in bands (3 input rows of one channel:
    // 300 elements), the weight gradient's channels-last copies need 4 channels of them.
    limits.maxStorageBufferBindingSize = (500 + engine().bindingAlignment / 4 - 1) * 4;
    try {
      expect(() =>
        tidy(() => {
          const y = conv2d(x, wt, null, { padding: 1 });
          backward(y, tensor(randn(y.size, 11), y.shape));
        }),
      ).to.throw(
        /conv2d weight gradient: photo is 32000 bytes and the 3 rows of 4 channels in channels-last layout that one output row reads \(4800 bytes\) is above the device limit maxStorageBufferBindingSize \(\d+ bytes\)/,
      );
    } finally {
      limits.maxStorageBufferBindingSize = saved;
      x.grad?.dispose();
      x.dispose();
      wt.dispose();
    }
  });

  it('a backward pass that throws there (outside tidy) frees dx, computed before, and the gradients in flight', () => {
    const limits = engine().limits as { maxStorageBufferBindingSize: number };
    const saved = limits.maxStorageBufferBindingSize;
    const live = engine().pool.stats().liveBuffers;
    const x = parameter(randn(2 * 40 * 100, 9), [1, 2, 40, 100]);
    const wt = parameter(randn(3 * 2 * 9, 10), [3, 2, 3, 3]);
    limits.maxStorageBufferBindingSize = (500 + engine().bindingAlignment / 4 - 1) * 4;
    const y = conv2d(x, wt, null, { padding: 1 });
    const dy = tensor(randn(y.size, 11), y.shape);
    try {
      expect(() => backward(y, dy)).to.throw(/conv2d weight gradient/);
    } finally {
      limits.maxStorageBufferBindingSize = saved;
      for (const t of [y, dy, x.grad, wt.grad, x, wt]) t?.dispose();
    }
    expect(engine().pool.liveList(), 'live buffers after the error').to.have.length(live);
  });
});
