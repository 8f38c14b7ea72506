// Faults and lies: crashes leave nothing that breaks the next run, stop signals save, one writer
// per run, files that lie are refused naming the file and the field, full disks name the file.
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { readCheckpoint } from '../src/index.js';
import { RunDir, train, type RunInfo, type TrainOptions } from '../src/train/index.js';
import { runTraining } from '../src/cli/train.js';
import { stateDictToSafetensors } from '../src/io/checkpoint.js';
import { FileWriteError, processAlive } from '../src/io/files.js';
import { runCli as atrous, tinyOptions as tiny, newRun } from './helpers.js';

const tinyOptions = (o: Partial<TrainOptions> = {}): TrainOptions => tiny({ steps: 4, batch: 1, checkpointEvery: 2, logEvery: 1, ...o });

/** The PID of a process that has exited (so no process has it, barring reuse). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

function withFault<T>(pattern: string, fn: () => T): T {
  process.env.ATROUS_FAULT_ENOSPC = pattern;
  try {
    return fn();
  } finally {
    delete process.env.ATROUS_FAULT_ENOSPC;
  }
}

async function withFaultAsync<T>(pattern: string, fn: () => Promise<T>): Promise<T> {
  process.env.ATROUS_FAULT_ENOSPC = pattern;
  try {
    return await fn();
  } finally {
    delete process.env.ATROUS_FAULT_ENOSPC;
  }
}

const BIN = join(process.cwd(), 'bin', 'atrous.js');

describe('reliability: run directories after crashes and full disks', function () {
  let root: string;
  let trained: string;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'atrous-rel-'));
    trained = join(root, 'trained');
    await train(newRun(trained, tinyOptions()));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('a killed writer that is still a zombie (not yet reaped) counts as gone, so its lock is taken over', async function () {
    if (process.platform !== 'linux') this.skip();
    // `sleep 0` exits at once, and the shell it belonged to becomes `sleep 3`, which never reaps it.
    const p = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 3'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const pid = Number(await new Promise<string>((resolve) => p.stdout.once('data', (d) => resolve(String(d).trim()))));
    try {
      await new Promise((r) => setTimeout(r, 300));
      expect(readFileSync(`/proc/${pid}/stat`, 'latin1'), 'the child is a zombie').to.match(/\) Z /);
      expect(processAlive(pid)).to.equal(false);
      expect(processAlive(p.pid!)).to.equal(true);
      const dir = join(root, 'zombie-lock');
      const run = newRun(dir, tiny());
      writeFileSync(join(dir, 'train.lock'), `${JSON.stringify({ pid, host: hostname(), started: new Date().toISOString(), command: 'atrous train (killed)' })}\n`);
      run.lock();
      expect(JSON.parse(readFileSync(join(dir, 'train.lock'), 'utf8')).pid).to.equal(process.pid);
      run.unlock();
    } finally {
      p.kill('SIGKILL');
    }
  });

  it('leftovers of a killed writer (*.tmp-PID files and checkpoint directories) are removed on the next start; live ones are kept', async () => {
    const dir = join(root, 'leftovers');
    const r = await atrous('train', '--out', dir, '--steps', '2', '--batch', '1', '--crop', '33', '--checkpoint-every', '1');
    expect(r.code, r.err).to.equal(0);
    const dead = deadPid();
    mkdirSync(join(dir, 'checkpoints', `step-0000003.tmp-${dead}`));
    writeFileSync(join(dir, 'checkpoints', `step-0000003.tmp-${dead}`, 'model.safetensors'), 'partial');
    writeFileSync(join(dir, `latest.json.tmp-${dead}`), '{"st');
    writeFileSync(join(dir, `metrics.jsonl.tmp-${process.ppid}`), 'a live writer'); // a process that runs
    const again = await atrous('train', '--resume', dir, '--steps', '3');
    expect(again.code, again.err).to.equal(0);
    expect(again.out).to.contain(`removed 2 leftovers of an interrupted write: latest.json.tmp-${dead}, checkpoints/step-0000003.tmp-${dead}`);
    expect(readdirSync(join(dir, 'checkpoints'))).to.deep.equal(['step-0000002', 'step-0000003']);
    expect(existsSync(join(dir, `metrics.jsonl.tmp-${process.ppid}`))).to.equal(true);
  });

  it('a torn last line of metrics.jsonl is dropped with a warning on resume; a malformed line elsewhere names the file and line', async () => {
    const dir = join(root, 'torn');
    await train(newRun(dir, tinyOptions({ steps: 2 })));
    const f = join(dir, 'metrics.jsonl');
    const good = readFileSync(f, 'utf8');
    writeFileSync(f, `${good}{"step": 3, "lo`);
    const warnings: string[] = [];
    const run = RunDir.open(dir);
    expect(run.readMetrics(Infinity, (w) => warnings.push(w)).map((m) => m.step)).to.deep.equal([1, 2]);
    expect(warnings[0]).to.contain(`${f}:3: the last line is incomplete`);
    // eval --report reads the same file: it warns and works
    const rep = await atrous('eval', '--run', dir, '--count', '1', '--report', '--out', join(root, 'torn-report'));
    expect(rep.code, rep.err).to.equal(0);
    // resume repairs the file
    const res = await train(RunDir.open(dir), {}, { resume: true, options: { ...run.readRun<RunInfo>().options, steps: 3 } });
    expect(res.step).to.equal(3);
    expect(readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).step)).to.deep.equal([1, 2, 3]);
    writeFileSync(f, good.replace('\n', '\n{oops}\n'));
    expect(() => run.readMetrics()).to.throw(`${f}:2: not a metrics record`);
    const e = await atrous('eval', '--run', dir, '--count', '1', '--report', '--out', join(root, 'torn-report2'));
    expect(e.code).to.equal(1);
    expect(e.err).to.contain(`${f}:2`);
    writeFileSync(f, good);
  });

  it('a full disk during a checkpoint names the file, removes the partial checkpoint and keeps latest.json', () => {
    const run = RunDir.open(trained);
    const before = run.latest();
    let err: unknown = null;
    withFault('optimizer.safetensors', () => {
      try {
        run.writeCheckpoint(99, { 'model.safetensors': new Uint8Array(1000), 'optimizer.safetensors': new Uint8Array(5000), 'state.json': '{}' });
      } catch (e) {
        err = e;
      }
    });
    expect(err).to.be.instanceOf(FileWriteError);
    expect((err as Error).message).to.match(/^cannot write checkpoint file \(step 99\) .*checkpoints\/step-0000099\.tmp-\d+\/optimizer\.safetensors: no space left on device \(ENOSPC\)$/);
    expect(readdirSync(join(trained, 'checkpoints')).filter((d) => d.includes('0000099'))).to.deep.equal([]);
    expect(run.latest()).to.deep.equal(before);
  });

  it('a full disk while appending metrics names the file and leaves no torn line', () => {
    const run = RunDir.open(trained);
    const f = run.file('metrics.jsonl');
    const before = readFileSync(f, 'utf8');
    withFault('metrics.jsonl', () => {
      expect(() => run.appendMetrics([{ step: 9, loss: 1 }, { step: 10, loss: 1 }])).to.throw(`cannot write training metrics ${f}: no space left on device (ENOSPC)`);
    });
    expect(readFileSync(f, 'utf8')).to.equal(before);
  });

  it('a full disk during predict names the output and removes the outputs already written', async () => {
    const out = join(root, 'predict-out');
    const image = join(root, 'img.png');
    const { encodePng } = await import('../src/io/image.js');
    writeFileSync(image, encodePng(new Uint8Array(24 * 24 * 3).fill(90), 24, 24));
    const weights = join(trained, 'checkpoints', 'step-0000004', 'model.safetensors');
    const res = await withFaultAsync('overlay.png', () => atrous('predict', '--weights', weights, '--image', image, '--out', out));
    expect(res.code).to.equal(1);
    expect(res.err).to.match(/cannot write overlay image .*img\.overlay\.png: no space left on device \(ENOSPC\)/);
    expect(existsSync(out) ? readdirSync(out) : []).to.deep.equal([]);
  });

  it('a full disk during eval --report names the file and removes the outputs already written', async () => {
    const out = join(root, 'report-out');
    const res = await withFaultAsync('report.html', () => atrous('eval', '--run', trained, '--count', '2', '--report', '--overlays', '2', '--out', out));
    expect(res.code).to.equal(1);
    expect(res.err).to.match(/cannot write evaluation report .*report\.html: no space left on device \(ENOSPC\)/);
    expect(existsSync(join(out, 'eval.json'))).to.equal(false);
    expect(readdirSync(join(out, 'overlays'))).to.deep.equal([]);
  });

  it('a --resume --steps N that fails leaves run.json as it was', async () => {
    const dir = join(root, 'resume-fail');
    await train(newRun(dir, tinyOptions({ steps: 2 })));
    const runJson = readFileSync(join(dir, 'run.json'), 'utf8');
    writeFileSync(join(dir, 'checkpoints', 'step-0000002', 'model.safetensors'), 'not a checkpoint at all');
    let err: Error | null = null;
    try {
      await runTraining({ options: null, out: null, resume: dir, resumeChange: { steps: 9 } }, () => {});
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.contain('model.safetensors');
    expect(readFileSync(join(dir, 'run.json'), 'utf8')).to.equal(runJson);
    expect(existsSync(join(dir, 'train.lock'))).to.equal(false);
  });

  it('run files are checked against each other: latest.json inside the run and agreeing with state.json and the checkpoint', async () => {
    const dir = join(root, 'lies');
    await train(newRun(dir, tinyOptions({ steps: 2 })));
    const latest = join(dir, 'latest.json');
    const good = readFileSync(latest, 'utf8');
    const resume = async () => {
      try {
        await train(RunDir.open(dir), {}, { resume: true });
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    writeFileSync(latest, JSON.stringify({ step: 2, dir: '../trained/checkpoints/step-0000002' }));
    expect(await resume()).to.contain(`${latest}: 'dir' must name a checkpoint of this run`);
    writeFileSync(latest, JSON.stringify({ step: 2, dir: '/etc' }));
    expect(await resume()).to.contain(`${latest}: 'dir' must name a checkpoint of this run`);
    writeFileSync(latest, JSON.stringify({ step: 1, dir: 'checkpoints/step-0000002' }));
    expect(await resume()).to.contain(`${latest}: 'step' is 1 but 'dir' names checkpoints/step-0000002`);
    writeFileSync(latest, good);
    const sfile = join(dir, 'checkpoints', 'step-0000002', 'state.json');
    const state = JSON.parse(readFileSync(sfile, 'utf8'));
    writeFileSync(sfile, JSON.stringify({ ...state, step: 1 }));
    expect(await resume()).to.contain(`${sfile}: 'step' is 1 but ${latest} says 2`);
    writeFileSync(sfile, JSON.stringify({ ...state, seed: 4 }));
    expect(await resume()).to.contain(`${sfile}: 'seed' is 4 but the run's`);
    writeFileSync(sfile, JSON.stringify({ ...state, dropoutCalls: { 'classifier.0.project.3': -1 } }));
    expect(await resume()).to.contain(`${sfile}: 'dropoutCalls.classifier.0.project.3' must be a non-negative integer`);
    writeFileSync(sfile, JSON.stringify(state));
    // a checkpoint saved after training diverged is no "last good checkpoint"
    const mfile = join(dir, 'checkpoints', 'step-0000002', 'model.safetensors');
    const goodModel = readFileSync(mfile);
    const ck = readCheckpoint(goodModel);
    const w = ck.state.get('classifier.1.weight')!;
    const nanState = new Map(ck.state);
    nanState.set('classifier.1.weight', { shape: w.shape, data: Float32Array.from(w.data, (x, i) => (i === 5 ? NaN : x)) });
    writeFileSync(mfile, stateDictToSafetensors(nanState, ck.metadata));
    expect(await resume()).to.contain(`${mfile}: tensor 'classifier.1.weight' holds NaN at flat index 5`);
    writeFileSync(mfile, goodModel);
    const ofile = join(dir, 'checkpoints', 'step-0000002', 'optimizer.safetensors');
    const opt = readCheckpoint(readFileSync(ofile));
    const [name, t] = [...opt.state.entries()][0];
    const bad = new Map(opt.state);
    const data = Float32Array.from(t.data);
    bad.set(name, { shape: t.shape, data });
    writeFileSync(ofile, stateDictToSafetensors(bad, { ...opt.metadata, step: '1' }));
    expect(await resume()).to.contain(`${ofile}: __metadata__.step is "1" but ${latest} says 2`);
    data[0] = NaN;
    writeFileSync(ofile, stateDictToSafetensors(bad, opt.metadata));
    expect(await resume()).to.contain(`${ofile}: tensor '${name}' holds NaN at flat index 0`);
    data[0] = 0;
    bad.set('backbone.nothing.weight', { shape: [1], data: Float32Array.of(0) });
    writeFileSync(ofile, stateDictToSafetensors(bad, opt.metadata));
    expect(await resume()).to.contain(`${ofile}: momentum buffer 'backbone.nothing.weight' names no parameter of the model`);
  });
});

describe('reliability: one writer per run, stop signals', function () {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'atrous-rel2-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('a run is locked while a process trains into it: a second one is refused naming the holder; a dead holder is taken over', async () => {
    const dir = join(root, 'locked');
    const first = await atrous('train', '--out', dir, '--steps', '1', '--batch', '1', '--crop', '33');
    expect(first.code, first.err).to.equal(0);
    expect(existsSync(join(dir, 'train.lock')), 'released at the end').to.equal(false);
    // a live holder: the test runner's parent process
    const holder = { pid: process.ppid, host: hostname(), started: '2026-01-01T00:00:00.000Z', command: 'atrous train' };
    writeFileSync(join(dir, 'train.lock'), JSON.stringify(holder));
    const second = await atrous('train', '--resume', dir, '--steps', '2');
    expect(second.code).to.equal(1);
    expect(second.err).to.contain(`${dir} is in use: 'atrous train' (pid ${process.ppid} on ${hostname()}, since 2026-01-01T00:00:00.000Z)`);
    const third = await atrous('train', '--out', dir, '--steps', '1');
    expect(third.err).to.contain('is in use');
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean)).to.have.length(1);
    // the holder died: the lock is stale and is taken over
    writeFileSync(join(dir, 'train.lock'), JSON.stringify({ ...holder, pid: deadPid() }));
    const fourth = await atrous('train', '--resume', dir, '--steps', '2');
    expect(fourth.code, fourth.err).to.equal(0);
    expect(existsSync(join(dir, 'train.lock'))).to.equal(false);
  });

  it('two processes on the same --out: exactly one trains, the other is refused at once', async () => {
    const dir = join(root, 'two');
    const args = [BIN, 'train', '--out', dir, '--steps', '3', '--batch', '1', '--crop', '33', '--checkpoint-every', '1'];
    const run = () => new Promise<{ code: number | null; err: string }>((resolve) => {
      const p = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => resolve({ code, err }));
    });
    const results = await Promise.all([run(), run()]);
    const codes = results.map((r) => r.code).sort();
    expect(codes, results.map((r) => r.err).join('\n')).to.deep.equal([0, 1]);
    const refused = results.find((r) => r.code === 1)!;
    expect(refused.err).to.match(/is in use: 'atrous train' \(pid \d+|already holds a run/);
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).step)).to.deep.equal([1, 2, 3]);
  });

  for (const [sig, status] of [['SIGTERM', 143], ['SIGHUP', 129], ['SIGINT', 130]] as const) {
    it(`${sig} saves a checkpoint and exits with status ${status}`, async () => {
      const dir = join(root, sig);
      const p = spawn(process.execPath, [BIN, 'train', '--out', dir, '--steps', '500', '--batch', '1', '--crop', '33', '--checkpoint-every', '1000', '--log-every', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      let sent = 0;
      p.stderr.on('data', (d) => (err += d));
      p.stdout.on('data', (d) => {
        out += d;
        const m = /step (\d+)\/500/.exec(out);
        if (m && !sent) {
          sent = Number(m[1]);
          p.kill(sig);
        }
      });
      // A run whose progress line never shows (its format changed, say) is killed and fails here,
      // not at mocha's timeout with a 500-step process left running.
      const guard = setTimeout(() => p.kill('SIGKILL'), 240_000);
      const code = await new Promise<number | null>((resolve) => p.on('close', (c) => resolve(c))).finally(() => clearTimeout(guard));
      expect(sent, `no progress line seen to signal after:\n${out}\n${err}`).to.be.above(0);
      expect(code, `${out}\n${err}`).to.equal(status);
      const run = RunDir.open(dir);
      const step = run.latest()?.step ?? 0;
      expect(step).to.be.at.least(sent);
      expect(step).to.be.below(500);
      expect(err).to.contain('saving a checkpoint');
      expect(existsSync(join(dir, 'train.lock'))).to.equal(false);
    });
  }
});

/** A PNG chunk with its CRC. */
function pngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  out.set(Buffer.from(type, 'ascii'), 4);
  out.set(data, 8);
  let c = ~0;
  for (let i = 4; i < 8 + data.length; i++) {
    c ^= out[i];
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  dv.setUint32(8 + data.length, ~c >>> 0);
  return out;
}

/** `png` with its IHDR claiming width × height (CRC fixed), the image data kept. */
function lyingPng(png: Uint8Array, width: number, height: number): Uint8Array {
  const dv = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const ihdr = Uint8Array.from(png.subarray(16, 16 + 13));
  new DataView(ihdr.buffer).setUint32(0, width);
  new DataView(ihdr.buffer).setUint32(4, height);
  const len = dv.getUint32(8);
  return Uint8Array.from([...png.subarray(0, 8), ...pngChunk('IHDR', ihdr), ...png.subarray(8 + 12 + len)]);
}

describe('reliability: files that lie', function () {
  let root: string;
  before(() => {
    root = mkdtempSync(join(tmpdir(), 'atrous-rel3-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('a PNG whose header claims more pixels than its data holds is refused before allocating, naming the file', async () => {
    const { encodePng, decodeImage, decodeLabelPng } = await import('../src/io/image.js');
    const px = Uint8Array.from({ length: 100 * 100 * 3 }, (_, i) => (i * 37) & 255);
    const png = encodePng(px, 100, 100);
    expect(decodeImage(png, 'ok.png').width).to.equal(100);
    expect(() => decodeImage(lyingPng(png, 5000, 100), 'wide.png')).to.throw(/^wide\.png: truncated PNG \(image data holds \d+ bytes, 5000×100 needs \d+\)$/);
    expect(() => decodeImage(lyingPng(png, 8000, 8000), 'huge.png')).to.throw(/^huge\.png: corrupt PNG \(IHDR claims 8000×8000, \d+ bytes of pixel data, but the \d+ bytes of image data cannot hold that much\)$/);
    expect(() => decodeImage(lyingPng(png, 16384, 16384), 'giant.png')).to.throw('giant.png: PNG header claims 16384×16384 pixels, above the limit of 100 megapixels');
    expect(() => decodeImage(lyingPng(png, 50, 50), 'small.png')).to.throw('small.png: corrupt PNG (the image data inflates to more than');
    expect(() => decodeLabelPng(lyingPng(png, 5000, 100), 'label.png')).to.throw(/^label\.png: truncated PNG/);
    // predict refuses it, exit 1, nothing written
    const f = join(root, 'wide.png');
    writeFileSync(f, lyingPng(png, 5000, 100));
    const r = await atrous('predict', '--weights', 'weights/mini-shapes.safetensors', '--image', f, '--out', join(root, 'pred'));
    expect(r.code).to.equal(1);
    expect(r.err).to.contain(`${f}: truncated PNG`);
    expect(existsSync(join(root, 'pred'))).to.equal(false);
  });

  it('a JPEG with a corrupt entropy-coded bit is found by data check; train fails naming it and leaves nothing that blocks the same command', async () => {
    const { encodeJpeg, decodeImage, imageInfo } = await import('../src/io/image.js');
    const dir = join(root, 'voc');
    const e = await atrous('data', 'export', '--dataset', 'shapes', '--split', 'train', '--count', '2', '--size', '33', '--out', dir, '--format', 'jpg');
    expect(e.code, e.err).to.equal(0);
    const ids = readFileSync(join(dir, 'ImageSets', 'Segmentation', 'train.txt'), 'utf8').split('\n').filter(Boolean);
    const file = join(dir, 'JPEGImages', `${ids[0]}.jpg`);
    const px = Uint8Array.from({ length: 33 * 33 * 3 }, (_, i) => (i * 7 + (i >> 6) * 13) & 255);
    const jpg = encodeJpeg(px, 33, 33, 90);
    // the first single-bit flip in the scan data that the structure check passes and the decoder refuses
    let bad: Uint8Array | null = null;
    for (let at = jpg.length - 3; at > jpg.length / 2 && !bad; at--) {
      for (let bit = 0; bit < 8 && !bad; bit++) {
        const b = Uint8Array.from(jpg);
        b[at] ^= 1 << bit;
        try {
          imageInfo(b, 'x');
        } catch {
          continue;
        }
        try {
          decodeImage(b, 'x');
        } catch {
          bad = b;
        }
      }
    }
    expect(bad, 'a flip the decoder refuses').to.not.equal(null);
    writeFileSync(file, bad!);
    const c = await atrous('data', 'check', '--dataset', `voc:${dir}`);
    expect(c.code).to.equal(1);
    expect(c.err).to.contain(`${file}: corrupt JPEG`);
    const out = join(root, 'run');
    const args = ['train', '--out', out, '--dataset', `voc:${dir}`, '--steps', '2', '--batch', '2', '--crop', '33'];
    const t1 = await atrous(...args);
    expect(t1.code).to.equal(1);
    expect(t1.err).to.contain(`${file}: corrupt JPEG`);
    expect(existsSync(out)).to.equal(false);
    const t2 = await atrous(...args);
    expect(t2.err).to.not.contain('already holds a run');
    expect(t2.err).to.contain(`${file}: corrupt JPEG`);
  });

  it('checkpoints with values a model cannot have (NaN, Inf, negative running_var), the wrong dtype or out-of-range integers are refused naming the file and tensor', async () => {
    const src = 'weights/mini-shapes.safetensors';
    const ck = readCheckpoint(readFileSync(src), src);
    const { serializeSafetensors } = await import('../src/io/safetensors.js');
    const write = (name: string, edit: (m: Map<string, { shape: number[]; data: Float32Array | Int32Array }>) => void, dtypes: Record<string, string> = {}) => {
      const m = new Map([...ck.state].map(([k, v]) => [k, { shape: [...v.shape], data: v.data.slice() }]));
      edit(m);
      const tensors = new Map([...m].map(([k, v]) => [k, dtypes[k] === 'I32' ? { dtype: 'I32' as const, shape: v.shape, data: Int32Array.from(v.data) }
        : v.data instanceof Int32Array ? { dtype: 'I64' as const, shape: v.shape, data: BigInt64Array.from(v.data, (x) => BigInt(x)) }
          : { dtype: 'F32' as const, shape: v.shape, data: v.data }]));
      const f = join(root, name);
      writeFileSync(f, serializeSafetensors(tensors, ck.metadata));
      return f;
    };
    const image = join(root, 'img.png');
    const { encodePng } = await import('../src/io/image.js');
    writeFileSync(image, encodePng(new Uint8Array(17 * 17 * 3).fill(100), 17, 17));
    const cases: [string, string, RegExp][] = [
      ['nan.safetensors', 'classifier.1.weight', /tensor 'classifier\.1\.weight' holds NaN at flat index 3/],
      ['inf.safetensors', 'backbone.conv1.weight', /tensor 'backbone\.conv1\.weight' holds Infinity at flat index 3/],
      ['negvar.safetensors', 'backbone.bn1.running_var', /tensor 'backbone\.bn1\.running_var' holds the variance -1 at flat index 3/],
    ];
    for (const [name, tensor, re] of cases) {
      const f = write(name, (m) => {
        m.get(tensor)!.data[3] = name.startsWith('nan') ? NaN : name.startsWith('inf') ? Infinity : -1;
      });
      expect(() => readCheckpoint(readFileSync(f), f)).to.throw(re);
      const p = await atrous('predict', '--weights', f, '--image', image, '--out', join(root, 'p'));
      expect(p.code, name).to.equal(1);
      expect(p.err).to.contain(f);
      expect(p.err).to.match(re);
      const ev = await atrous('eval', '--weights', f, '--count', '1');
      expect(ev.code, name).to.equal(1);
      expect(ev.err).to.match(re);
    }
    const { modelFromCheckpoint } = await import('../src/index.js');
    const intWeights = write('int.safetensors', () => {}, { 'classifier.1.bias': 'I32' });
    expect(() => modelFromCheckpoint(readFileSync(intWeights), { source: intWeights })).to.throw(`${intWeights}: loadStateDict: 'classifier.1.bias' holds integers, but the model's parameter is floating point`);
    const floatCount = write('floatcount.safetensors', (m) => {
      const k = [...m.keys()].find((x) => x.endsWith('num_batches_tracked'))!;
      m.set(k, { shape: [], data: Float32Array.of(3) });
    });
    expect(() => modelFromCheckpoint(readFileSync(floatCount), { source: floatCount })).to.throw(/holds floats, but the model's batch count is an integer/);
    const big = write('big.safetensors', () => {});
    const bytes = new Uint8Array(readFileSync(big));
    // num_batches_tracked of 2^40 (I64): out of the int32 range
    const { parseSafetensors } = await import('../src/io/safetensors.js');
    const st = parseSafetensors(bytes);
    const key = [...st.tensors.keys()].find((x) => x.endsWith('num_batches_tracked'))!;
    const t = st.tensors.get(key)!;
    new DataView(t.data.buffer, t.data.byteOffset, 8).setBigInt64(0, 2n ** 40n, true);
    writeFileSync(big, bytes);
    expect(() => readCheckpoint(readFileSync(big), big)).to.throw(`${big}: tensor '${key}' (I64 []): value 1099511627776 at flat index 0 is outside the int32 range`);
  });
});

describe('reliability: device faults', () => {
  after(async () => {
    const { reinit, engine } = await import('../src/index.js');
    await reinit();
    engine().pool.poison = true;
  });

  it('out of GPU memory names the tensor, its bytes and the adapter (the error scope around a pool miss)', async () => {
    const { engine, tensor } = await import('../src/index.js');
    const dev = engine().device;
    const real = dev.popErrorScope.bind(dev);
    let injected = 0;
    // lavapipe allocates lazily and never reports out-of-memory: the device's answer is replaced
    // with the error a GPU gives once its memory is exhausted (the real scope is still popped).
    (dev as { popErrorScope: () => Promise<GPUError | null> }).popErrorScope = async () => {
      const err = await real();
      return injected++ === 0 ? ({ message: 'Out of memory (injected)' } as GPUError) : err;
    };
    try {
      // No free buffer at all: the odd-size tensor below is then a pool miss.
      engine().flush();
      engine().pool.trim();
      const t = tensor(new Float32Array(12345 * 7), [7, 12345]);
      let msg = '';
      try {
        await t.data();
      } catch (e) {
        msg = (e as Error).message;
      }
      t.dispose();
      expect(injected, 'an error scope around the creation').to.be.at.least(1);
      expect(msg).to.match(/^atrous: out of GPU memory: could not allocate \d+ bytes for a tensor \[7, 12345\] \(f32\) on .+ \(\d+ bytes in \d+ tensors were live; \d+ bytes held by the pool\): Out of memory \(injected\)\. Use a smaller batch, crop or model$/);
    } finally {
      delete (dev as { popErrorScope?: unknown }).popErrorScope;
    }
  });

  it('after engine().destroy() the error says the engine was destroyed', async () => {
    const { engine, tensor } = await import('../src/index.js');
    engine().destroy();
    expect(() => engine()).to.throw('atrous: the GPU engine was destroyed (engine().destroy()): call `await init()` to open a new one');
    expect(() => tensor(new Float32Array(4), [4])).to.throw('the GPU engine was destroyed');
  });
});

describe('reliability: config files', () => {
  it("a training config's unknown key, integers beyond 2^53, an unknown dataset or model are named as the file's key", async () => {
    const { parseTrainArgs } = await import('../src/cli/train.js');
    const dir = mkdtempSync(join(tmpdir(), 'atrous-rel4-'));
    try {
      const f = (name: string, json: unknown) => {
        const p = join(dir, name);
        writeFileSync(p, JSON.stringify(json));
        return p;
      };
      const unknown = f('unknown.json', { lr: 0.1, nope: 1 });
      expect(() => parseTrainArgs(['--config', unknown, '--out', join(dir, 'o')])).to.throw(`atrous train: ${unknown}: unknown key 'nope'`);
      const huge = f('huge.json', { checkpointEvery: 1e30 });
      expect(() => parseTrainArgs(['--config', huge, '--out', join(dir, 'o')])).to.throw(`atrous train: ${huge}: 'checkpointEvery' must be an integer >= 1, got 1e+30`);
      const stage = f('stage.json', { stages: [{ steps: 2, lr: 0.1 }, { steps: 2 ** 60, lr: 0.1 }] });
      expect(() => parseTrainArgs(['--config', stage, '--out', join(dir, 'o')])).to.throw(`stages[1].steps must be an integer >= 1`);
      const types = f('types.json', { lr: [0.1] });
      expect(() => parseTrainArgs(['--config', types, '--out', join(dir, 'o')])).to.throw(`${types}: 'lr' must be a number >= 0, got [0.1]`);
      const dataset = f('dataset.json', { dataset: 'x', lr: 0.1 });
      expect(() => parseTrainArgs(['--config', dataset, '--out', join(dir, 'o')])).to.throw(`atrous train: ${dataset}: 'dataset': unknown dataset 'x'`);
      const model = f('model.json', { model: dir });
      expect(() => parseTrainArgs(['--config', model, '--out', join(dir, 'o')])).to.throw(`atrous train: ${model}: 'model': ${dir}: not a JSON config`);
      const named = f('named.json', { model: 'NaN' });
      expect(() => parseTrainArgs(['--config', named, '--out', join(dir, 'o')])).to.throw(`atrous train: ${named}: 'model': unknown model configuration 'NaN'`);
      expect(existsSync(join(dir, 'o'))).to.equal(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
