// TrainSession (src/train/session.ts): the browser demo's in-memory training, run here on the
// Node engine. Pause/resume must continue the same run, the checkpoint must load as a model with
// the dataset's class names, and dispose() must give back every GPU buffer the session made.
import { expect } from 'chai';
import { engine, modelFromCheckpoint, readCheckpoint, TrainSession } from '../src/index.js';

const SMALL = { steps: 4, batch: 1, crop: 33, evalEvery: 2, evalCount: 1, seed: 5 } as const;

describe('train session (in memory, browser-safe)', () => {
  it('pauses and resumes into the same loss sequence as an uninterrupted run; evaluates on schedule', async () => {
    const straight = new TrainSession(SMALL);
    const evalSteps: number[] = [];
    try {
      expect(await straight.run({ onEval: (r) => void evalSteps.push(r.step) })).to.equal(4);
    } finally {
      await straight.dispose();
    }
    expect(straight.losses.map((l) => l.step)).to.deep.equal([1, 2, 3, 4]);
    expect(evalSteps).to.deep.equal([2, 4]);

    const paused = new TrainSession(SMALL);
    try {
      const first = await paused.run({ onStep: (r) => r.step === 2 && paused.pause() });
      expect(first, 'steps before the pause').to.equal(2);
      expect(paused.isRunning).to.equal(false);
      expect(paused.done).to.equal(false);
      expect(await paused.run()).to.equal(2);
      expect(paused.done).to.equal(true);
      expect(await paused.run(), 'a finished session does nothing').to.equal(0);
    } finally {
      await paused.dispose();
    }
    const a = straight.losses.map((l) => l.loss);
    const b = paused.losses.map((l) => l.loss);
    for (let i = 0; i < 4; i++) expect(b[i], `loss at step ${i + 1}`).to.be.closeTo(a[i], 1e-5 * Math.max(1, Math.abs(a[i])));
    expect(paused.evals.map((e) => e.step)).to.deep.equal([2, 4]);
    for (const e of paused.evals) expect(e.miou).to.be.within(0, 1);
  });

  it('checkpoint bytes load as the trained model, with the dataset and class names in the metadata', async () => {
    const s = new TrainSession({ ...SMALL, steps: 1, evalEvery: 0 });
    try {
      await s.run();
      const bytes = await s.checkpoint();
      const ck = readCheckpoint(bytes);
      expect(ck.metadata.step).to.equal('1');
      expect(ck.metadata.dataset).to.equal('shapes');
      expect(JSON.parse(ck.metadata.classes)).to.deep.equal(['background', 'circle', 'square', 'triangle', 'star', 'cross', 'ring']);
      const { model, config } = modelFromCheckpoint(bytes);
      try {
        expect(config.name).to.equal('mini');
        expect(config.numClasses).to.equal(7);
        const want = await s.model.readStateDict();
        const got = await model.readStateDict();
        for (const [k, v] of want) expect(Array.from(got.get(k)!.data), k).to.deep.equal(Array.from(v.data));
      } finally {
        model.dispose();
      }
    } finally {
      await s.dispose();
    }
  });

  it('saveState() and a new session from it continue exactly: the losses of an uninterrupted run (the page resumes after a reload so)', async () => {
    const opts = { ...SMALL, steps: 5, evalEvery: 0, batch: 2 };
    const straight = new TrainSession(opts);
    try {
      await straight.run();
    } finally {
      await straight.dispose();
    }
    const first = new TrainSession(opts);
    let state;
    try {
      await first.run({ onStep: (r) => r.step === 2 && first.pause() });
      expect(first.step).to.equal(2);
      state = await first.saveState();
    } finally {
      await first.dispose();
    }
    expect(state.step).to.equal(2);
    const resumed = new TrainSession(opts, undefined, undefined, state);
    try {
      expect(resumed.step).to.equal(2);
      expect(resumed.initReport).to.equal('the saved session at step 2');
      expect(await resumed.run()).to.equal(3);
      expect(resumed.losses.map((l) => l.loss), 'losses 1..5, bit for bit').to.deep.equal(straight.losses.map((l) => l.loss));
    } finally {
      await resumed.dispose();
    }
  });

  it('dispose() frees the model, the optimizer state and the pool buffers it left; bad options are named', async () => {
    const e = engine();
    await e.sync();
    e.pool.trim();
    const before = e.stats();
    for (let cycle = 0; cycle < 2; cycle++) {
      const s = new TrainSession({ ...SMALL, steps: 1, evalEvery: 0 });
      await s.run();
      expect(e.stats().liveBytes).to.be.greaterThan(before.liveBytes);
      await s.dispose();
      const after = e.stats();
      expect(after.liveBuffers, `live buffers after cycle ${cycle + 1}`).to.equal(before.liveBuffers);
      expect(after.liveBytes, `live bytes after cycle ${cycle + 1}`).to.equal(before.liveBytes);
      expect(after.allocatedBytes, `pool bytes after cycle ${cycle + 1}`).to.equal(before.allocatedBytes);
      await s.dispose(); // twice is harmless
      let err: Error | null = null;
      try {
        await s.run();
      } catch (x) {
        err = x as Error;
      }
      expect(err?.message).to.match(/disposed/);
    }
    expect(() => new TrainSession({ batch: 0 })).to.throw(/batch must be an integer >= 1, got 0/);
    expect(() => new TrainSession({ lr: Number.NaN })).to.throw(/lr must be a number/);
    expect(() => new TrainSession({ config: 'nope' })).to.throw(/unknown model configuration 'nope'/);
  });
});
