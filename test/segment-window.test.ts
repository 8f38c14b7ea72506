// segment() options for large photos: sliding windows (mmseg's slide mode) and a downscale of the
// longer side, checked against segment() run by hand on the crops and at the equivalent scale.
import { expect } from 'chai';
import { modelConfig, DeepLabV3, segment } from '../src/index.js';
import { randn } from './helpers.js';

describe('segment(): sliding windows and maxSide', function () {
  const [h, w] = [40, 50];
  let model: DeepLabV3;
  let image: Float32Array;
  before(() => {
    model = new DeepLabV3(modelConfig('mini', { numClasses: 5 }));
    model.materialize(3);
    model.eval();
    image = randn(3 * h * w, 71);
  });
  after(() => model.dispose());

  it('window 33 and stride 17: the logits are the mean of the overlapping windows\' logits, each window run alone', async () => {
    const got = await segment(model, image, h, w, { window: 33, stride: [17, 17], padMultiple: 0 });
    const c = 5;
    const sum = new Float32Array(c * h * w);
    const count = new Uint16Array(h * w);
    // mmseg's grid: ceil((n - 33) / 17) + 1 windows per axis, the last one ending at the edge.
    const starts = (n: number) => [0, n - 33];
    for (const y0 of starts(h)) {
      for (const x0 of starts(w)) {
        const crop = new Float32Array(3 * 33 * 33);
        for (let k = 0; k < 3; k++) for (let y = 0; y < 33; y++) for (let x = 0; x < 33; x++) crop[(k * 33 + y) * 33 + x] = image[(k * h + y0 + y) * w + x0 + x];
        const part = await segment(model, crop, 33, 33, { padMultiple: 0 });
        for (let k = 0; k < c; k++) for (let y = 0; y < 33; y++) for (let x = 0; x < 33; x++) sum[(k * h + y0 + y) * w + x0 + x] += part.logits[(k * 33 + y) * 33 + x];
        for (let y = 0; y < 33; y++) for (let x = 0; x < 33; x++) count[(y0 + y) * w + x0 + x]++;
      }
    }
    for (let i = 0; i < sum.length; i++) sum[i] /= count[i % (h * w)];
    expect(count.every((k) => k >= 1)).to.equal(true);
    expect(Math.max(...count)).to.equal(4);
    let bad = -1;
    for (let i = 0; i < sum.length; i++) if (sum[i] !== got.logits[i]) { bad = i; break; }
    expect(bad, `first difference at ${bad}`).to.equal(-1);
    expect(got.labels.length).to.equal(h * w);
    const whole = await segment(model, image, h, w, { padMultiple: 0 });
    expect(whole.logits.some((v, i) => v !== got.logits[i]), 'windows see less context than the whole image').to.equal(true);
  });

  it('a window as large as the image is the whole-image run', async () => {
    const a = await segment(model, image, h, w, { window: [h, w] });
    const b = await segment(model, image, h, w);
    expect(Buffer.from(a.logits.buffer).equals(Buffer.from(b.logits.buffer))).to.equal(true);
  });

  it('maxSide 25 runs at scale 25/50 and answers at full resolution', async () => {
    const a = await segment(model, image, h, w, { maxSide: 25 });
    const b = await segment(model, image, h, w, { scales: [0.5] });
    expect([a.height, a.width, a.labels.length]).to.deep.equal([h, w, h * w]);
    expect(Buffer.from(a.logits.buffer).equals(Buffer.from(b.logits.buffer))).to.equal(true);
    await segment(model, image, h, w, { window: 0 }).then(
      () => expect.fail('window 0 must be rejected'),
      (e: Error) => expect(e.message).to.match(/window must be a positive integer/),
    );
  });
});
