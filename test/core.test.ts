import { expect } from 'chai';
import { init, tensor, parameter, tidy, backward, add, engine, noGrad } from '../src/index.js';

describe('engine core', () => {
  before(async () => {
    await init();
  });

  it('runs a kernel and reads the result back', async () => {
    const out = tidy(() => add(tensor([1, 2, 3], [3]), tensor([10, 20, 30], [3])));
    expect(Array.from(await out.data())).to.deep.equal([11, 22, 33]);
    out.dispose();
  });

  it('accumulates gradients where a tensor feeds several consumers', async () => {
    const a = parameter([1, 2], [2]);
    const b = parameter([3, 4], [2]);
    tidy(() => {
      const c = add(a, b);
      const d = add(c, c); // c feeds two consumers
      const e = add(d, a); // a feeds two ops
      backward(e);
    });
    expect(Array.from(await a.grad!.data())).to.deep.equal([3, 3]);
    expect(Array.from(await b.grad!.data())).to.deep.equal([2, 2]);
    a.grad!.dispose();
    b.grad!.dispose();
    a.dispose();
    b.dispose();
  });

  it('records nothing under noGrad', () => {
    const a = parameter([1], [1]);
    const out = noGrad(() => add(a, a));
    expect(out.node).to.equal(null);
    expect(out.requiresGrad).to.equal(false);
    out.dispose();
    a.dispose();
  });

  it('frees every intermediate of a scope', async () => {
    const before = engine().stats().liveBuffers;
    tidy(() => {
      const x = tensor([1, 2, 3, 4], [4]);
      add(add(x, x), x);
    });
    expect(engine().stats().liveBuffers).to.equal(before);
  });
});
