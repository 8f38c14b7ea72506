// A dataset brought to the page as files (src/data/dropped.ts over voc-core.ts): the page's
// checks must be `atrous data check`'s (the same report, the same problem messages, the same
// label map), and a session must fine-tune on it from a checkpoint as `atrous train --init` does.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDropped, unzipFiles, TrainSession, readCheckpoint, labelReport } from '../src/index.js';
import { openVoc } from '../src/data/voc.js';
import { run as runCli } from '../src/cli/main.js';
import { decodeImage } from '../src/io/image.js';
import { zipSync } from 'fflate';
import { writeVocFolder, writePairsFolder, folderEntries, MERGED_META } from './dropped-fixtures.js';

describe('your own data (dropped folder or zip, browser-safe reader)', function () {
  let tmp: string;
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'atrous-dropped-'));
    await writeVocFolder(join(tmp, 'myvoc'), 12, 4);
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('reads a VOC folder as data check does: same report, the val list held out, the label map', async () => {
    const ds = await openDropped(folderEntries(join(tmp, 'myvoc')), decodeImage);
    expect(ds.layout).to.equal('voc');
    expect(ds.root).to.equal('myvoc');
    expect([ds.train.length, ds.val.length]).to.deep.equal([12, 4]);
    expect(ds.classNames).to.deep.equal(MERGED_META.classNames);
    expect(ds.labelMap, 'the values it changes').to.deep.equal({ 3: 2, 4: 2, 5: 2, 6: 1 });
    const cli = await labelReport(openVoc(join(tmp, 'myvoc'), { split: 'train' }));
    expect(ds.lines.map((l) => l.replaceAll(`${tmp}/`, ''))).to.deep.equal(cli.lines.map((l) => l.replaceAll(`${tmp}/`, '')));
    const a = await ds.train.get(3);
    const b = await openVoc(join(tmp, 'myvoc'), { split: 'train' }).get(3);
    expect(a.label).to.deep.equal(b.label);
    expect(a.image).to.deep.equal(b.image);
  });

  it('reads the same folder from a zip (one top folder), and holds out every Nth pair without lists', async () => {
    const files = Object.fromEntries(folderEntries(join(tmp, 'myvoc')).filter(([p]) => !p.includes('ImageSets')));
    const zip = zipSync(files);
    const ds = await openDropped(unzipFiles(zip, 'myvoc.zip'), decodeImage, { heldOutEvery: 4 });
    expect(ds.voc.split).to.equal('all');
    expect([ds.train.length, ds.val.length]).to.deep.equal([12, 4]);
    expect(ds.heldOutFrom).to.equal('one image in 4 of 16');
    expect(() => unzipFiles(new Uint8Array([1, 2, 3, 4]), 'x.zip')).to.throw(/x\.zip: not a readable zip archive/);
  });

  it('gives a pairs folder with a broken mask the message atrous data check gives', async () => {
    const pairs = join(tmp, 'pairs');
    const name = writePairsFolder(join(tmp, 'myvoc'), pairs, 2)!;
    let cli = '';
    try {
      openVoc(pairs, { split: 'all', imageDir: 'images', labelDir: 'masks' });
    } catch (e) {
      cli = (e as Error).message;
    }
    expect(cli).to.match(new RegExp(`masks/${name}: truncated PNG`));
    // The command says the same for the same folder.
    const errors: string[] = [];
    const err = console.error;
    console.error = (...a: unknown[]) => void errors.push(a.join(' '));
    try {
      expect(await runCli(['data', 'check', '--dataset', `voc:${pairs}`, '--split', 'all', '--image-dir', 'images', '--label-dir', 'masks'])).to.equal(1);
    } finally {
      console.error = err;
    }
    expect(errors.join('\n')).to.equal(`atrous data: ${cli}`);
    let page = '';
    try {
      await openDropped(folderEntries(pairs), decodeImage);
    } catch (e) {
      page = (e as Error).message;
    }
    expect(page).to.equal(cli.replaceAll(`${tmp}/`, ''));
    let msg = '';
    await openDropped([['x/a/readme.txt', new Uint8Array(1)], ['x/b.txt', new Uint8Array(1)]], decodeImage).catch((e) => (msg = e.message));
    expect(msg).to.match(/^x: no dataset layout found \(it holds a, b\.txt\): expected JPEGImages\//);
  });

  it('fine-tunes from the shipped checkpoint: head re-initialised for 3 classes, loss falls, checkpoint keeps classes and label map', async () => {
    const ds = await openDropped(folderEntries(join(tmp, 'myvoc')), decodeImage);
    const shipped = readFileSync('weights/mini-shapes.safetensors');
    const s = new TrainSession({ dataset: 'given', steps: 6, batch: 2, crop: 33, evalEvery: 0, evalCount: 4, seed: 3, lr: 0.01 },
      { train: ds.train, val: ds.val, labelMap: ds.labelMap }, { bytes: shipped, source: 'mini-shapes.safetensors' });
    try {
      expect(s.initReport).to.match(/re-initialised .* for 3 classes instead of 7/);
      await s.run();
      expect(s.losses.length).to.equal(6);
      expect(s.losses[5].loss).to.be.below(s.losses[0].loss);
      expect(s.evals.length).to.equal(1);
      const ck = readCheckpoint(await s.checkpoint(), 'ft');
      expect(ck.config?.numClasses).to.equal(3);
      expect(ck.inference.classes).to.deep.equal(MERGED_META.classNames);
      expect(JSON.parse(ck.metadata.labelMap)).to.deep.equal(ds.labelMap);
    } finally {
      await s.dispose();
    }
  });
});
