// Photos with an EXIF orientation tag are read upright everywhere: decodeImage, label maps,
// imageInfo's sizes, the VOC reader (labels checked against the upright photo) and `atrous
// predict`. One upright photo is stored 8 ways (the stored grid turned the other way, plus the
// tag); every way must give the same upright pixels and the same label map. The page does the same
// in Chromium (test/browser/browser.test.ts).
import { expect } from 'chai';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  applyOrientation, decodeImage, decodeLabelPng, encodeIndexedPng, encodeJpeg, encodePng, exifOrientation, imageInfo,
  ImageError, type Orientation,
} from '../src/io/image.js';
import { openVoc } from '../src/data/voc.js';
import { exifOrientationBlock, orientationVariants, runCli, storedGrid, thrown, withExif } from './helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SHIPPED = join(ROOT, 'weights', 'mini-shapes.safetensors');
const ORIENTATIONS = [1, 2, 3, 4, 5, 6, 7, 8] as const;

function expectImageError(fn: () => unknown, ...parts: string[]): void {
  const err = thrown(fn);
  expect(err, 'expected an ImageError').to.be.instanceOf(ImageError);
  for (const p of parts) expect((err as Error).message).to.include(p);
}

describe('photos with an EXIF orientation are read upright', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrous-orient-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // 16 wide × 24 tall, every byte different from its neighbours: any wrong pixel shows.
  const W = 16;
  const H = 24;
  const upright = { width: W, height: H, data: new Uint8Array(W * H * 3).map((_, i) => (i * 7919 + 13 * ((i / 3) | 0)) % 256) };

  it('turns the stored grid as the EXIF specification says (a 3×2 grid, each orientation written out)', () => {
    // Stored: a b c / d e f (3 wide, 2 tall), one byte per pixel.
    const [a, b, c, d, e, f] = [1, 2, 3, 4, 5, 6];
    const stored = { width: 3, height: 2, data: Uint8Array.from([a, b, c, d, e, f]) };
    const expected: Record<Orientation, [number, number, number[]]> = {
      1: [3, 2, [a, b, c, d, e, f]],
      2: [3, 2, [c, b, a, f, e, d]], // mirrored left-right
      3: [3, 2, [f, e, d, c, b, a]], // turned 180°
      4: [3, 2, [d, e, f, a, b, c]], // mirrored top-bottom
      5: [2, 3, [a, d, b, e, c, f]], // transposed
      6: [2, 3, [d, a, e, b, f, c]], // turned 90° clockwise: the stored first row is the right column
      7: [2, 3, [f, c, e, b, d, a]], // transverse
      8: [2, 3, [c, f, b, e, a, d]], // turned 90° counter-clockwise: the stored first row is the left column
    };
    for (const o of ORIENTATIONS) {
      const got = applyOrientation(stored, 1, o);
      expect([got.width, got.height, Array.from(got.data)], `orientation ${o}`).to.deep.equal(expected[o]);
      // The test helper that writes the variants is the inverse.
      const back = storedGrid({ width: got.width, height: got.height, data: got.data }, 1, o);
      expect(Array.from(back.data), `storedGrid inverts orientation ${o}`).to.deep.equal(Array.from(stored.data));
    }
  });

  it('decodeImage gives the identical upright RGB for all 8 orientations of a PNG (eXIf) and of a JPEG (APP1), either byte order', () => {
    const jpegs: Uint8Array[] = [];
    for (const o of ORIENTATIONS) {
      const s = storedGrid(upright, 3, o);
      if (o !== 1) expect(Array.from(s.data), `the stored grid of orientation ${o} differs from the upright one`).to.not.deep.equal(Array.from(upright.data));
      for (const le of [false, true]) {
        const png = withExif(encodePng(s.data, s.width, s.height), exifOrientationBlock(o, le));
        const got = decodeImage(png, `o${o}.png`);
        expect([got.width, got.height], `orientation ${o}`).to.deep.equal([W, H]);
        expect(Array.from(got.data), `orientation ${o}, ${le ? 'little' : 'big'}-endian EXIF`).to.deep.equal(Array.from(upright.data));
        expect(imageInfo(png, 'x.png')).to.deep.equal({
          format: 'png', width: W, height: H, orientation: o, storedWidth: o >= 5 ? H : W, storedHeight: o >= 5 ? W : H,
        });
      }
      // JPEG: 8×8 blocks of one colour each, so all 8 stored grids compress to the same blocks.
      const blocks = { width: W, height: H, data: new Uint8Array(W * H * 3) };
      for (let i = 0; i < W * H; i++) {
        const block = ((i / W) >> 3) * 2 + ((i % W) >> 3);
        blocks.data.set([(block * 40 + 10) % 256, (block * 90 + 30) % 256, 250 - block * 35], 3 * i);
      }
      const sb = storedGrid(blocks, 3, o);
      const jpg = decodeImage(withExif(encodeJpeg(sb.data, sb.width, sb.height, 95), exifOrientationBlock(o, o % 2 === 0)), `o${o}.jpg`);
      expect([jpg.width, jpg.height]).to.deep.equal([W, H]);
      for (let i = 0; i < jpg.data.length; i++) expect(Math.abs(jpg.data[i] - blocks.data[i]), `orientation ${o} JPEG byte ${i}`).to.be.at.most(2);
      jpegs.push(jpg.data);
    }
    for (const o of ORIENTATIONS) expect(Array.from(jpegs[o - 1]), `JPEG orientation ${o} vs 1`).to.deep.equal(Array.from(jpegs[0]));
  });

  it('label maps are read upright too (an eXIf chunk in a palette PNG)', () => {
    const idx = { width: W, height: H, data: new Uint8Array(W * H).map((_, i) => (i * 7) % 21) };
    for (const o of ORIENTATIONS) {
      const s = storedGrid(idx, 1, o);
      const got = decodeLabelPng(withExif(encodeIndexedPng(s.data, s.width, s.height), exifOrientationBlock(o)), `l${o}.png`);
      expect([got.width, got.height, Array.from(got.data)], `orientation ${o}`).to.deep.equal([W, H, Array.from(idx.data)]);
    }
  });

  it('takes no tag, or the tag 0, as upright; ignores APP1 segments that are not EXIF (XMP)', () => {
    const png = encodePng(upright.data, W, H);
    expect(imageInfo(png, 'p.png').orientation).to.equal(1);
    expect(Array.from(decodeImage(withExif(png, exifOrientationBlock(0)), 'p.png').data)).to.deep.equal(Array.from(upright.data));
    expect(exifOrientation(null, 'x')).to.equal(1);
    const jpg = encodeJpeg(upright.data, W, H);
    const xmp = new TextEncoder().encode('http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>');
    const seg = Uint8Array.from([0xff, 0xe1, (xmp.length + 2) >> 8, (xmp.length + 2) & 0xff, ...xmp]);
    const withXmp = Buffer.concat([jpg.subarray(0, 2), seg, jpg.subarray(2)]);
    expect(imageInfo(withXmp, 'x.jpg')).to.include({ orientation: 1, width: W, height: H });
    // XMP first, EXIF after it: the EXIF segment is found.
    const s = storedGrid(upright, 3, 6);
    const both = withExif(encodeJpeg(s.data, s.width, s.height), exifOrientationBlock(6));
    expect(imageInfo(Buffer.concat([both.subarray(0, 2), seg, both.subarray(2)]), 'x.jpg')).to.include({ orientation: 6, width: W, height: H });
  });

  it('names the file and the problem for an unreadable EXIF block, a tag outside 1..8, a misplaced or second eXIf chunk', () => {
    const png = encodePng(upright.data, W, H);
    expectImageError(() => decodeImage(withExif(png, exifOrientationBlock(9)), 'nine.png'), 'nine.png', 'EXIF orientation 9 is not one of 1..8');
    const broken = exifOrientationBlock(6);
    broken.set([0x58, 0x58], 0); // no byte-order mark
    expectImageError(() => imageInfo(withExif(png, broken), 'broken.png'), 'broken.png', 'corrupt EXIF block');
    expectImageError(() => decodeImage(withExif(encodeJpeg(upright.data, W, H), broken), 'broken.jpg'), 'broken.jpg', 'corrupt EXIF block');
    expectImageError(() => decodeImage(withExif(withExif(png, exifOrientationBlock(6)), exifOrientationBlock(3)), 'two.png'),
      'two.png', 'a second eXIf chunk');
    // An eXIf chunk after IDAT: moved to just before IEND.
    const tagged = withExif(png, exifOrientationBlock(6));
    const chunkLen = 12 + 26;
    const late = Buffer.concat([png.subarray(0, png.length - 12), tagged.subarray(33, 33 + chunkLen), png.subarray(png.length - 12)]);
    expectImageError(() => decodeImage(late, 'late.png'), 'late.png', 'eXIf chunk', 'after the image data');
  });

  describe('VOC reader: labels are checked against the upright photo', () => {
    // A JPEG stored 24×16 with orientation 6 is 16×24 upright; one stored 16×24 with orientation 3 keeps its size.
    const idx = { width: W, height: H, data: new Uint8Array(W * H).map((_, i) => ((i % W) < 8 ? 1 : 2) * (i < W * 4 ? 0 : 1)) };
    function dataset(name: string, photos: [string, number][], label: (id: string) => Uint8Array): string {
      const root = join(dir, name);
      mkdirSync(join(root, 'JPEGImages'), { recursive: true });
      mkdirSync(join(root, 'SegmentationClass'), { recursive: true });
      for (const [id, o] of photos) {
        const s = storedGrid(upright, 3, o);
        writeFileSync(join(root, 'JPEGImages', `${id}.jpg`), withExif(encodeJpeg(s.data, s.width, s.height, 95), exifOrientationBlock(o)));
        writeFileSync(join(root, 'SegmentationClass', `${id}.png`), label(id));
      }
      return root;
    }

    it('pairs the upright photo with a label drawn on it, for every orientation', async () => {
      const root = dataset('upright', ORIENTATIONS.map((o) => [`o${o}`, o]), () => encodeIndexedPng(idx.data, W, H));
      const ds = openVoc(root, { split: 'all', validate: 'full' });
      expect(ds.length).to.equal(8);
      const first = await ds.get(0);
      for (let i = 0; i < 8; i++) {
        const smp = await ds.get(i);
        expect([smp.id, smp.w, smp.h]).to.deep.equal([`o${i + 1}`, W, H]);
        expect(Array.from(smp.label)).to.deep.equal(Array.from(idx.data));
        // The same upright pixels (within JPEG's loss) for every orientation: the mean difference to o1 is small.
        let diff = 0;
        for (let k = 0; k < smp.image.length; k++) diff += Math.abs(smp.image[k] - first.image[k]);
        expect(diff / smp.image.length, `photo o${i + 1} vs o1`).to.be.below(6);
      }
    });

    it('reports a label drawn on the stored grid when the orientation swaps the sides', () => {
      const root = dataset('stored', [['turned', 6]], () => encodeIndexedPng(storedGrid(idx, 1, 6).data, H, W));
      const msg = (thrown(() => openVoc(root, { split: 'all' })) as Error).message;
      expect(msg).to.include(join(root, 'SegmentationClass', 'turned.png'));
      expect(msg).to.include(`label is ${H}×${W} but its image`);
      expect(msg).to.include(`is ${W}×${H} upright (stored ${H}×${W} with EXIF orientation 6)`);
    });
  });

  describe('atrous predict', function () {
    this.timeout(600_000);
    it('gives the identical upright label map for all 8 orientations of a PNG and of a JPEG', async () => {
      const v = orientationVariants(dir, ROOT);
      const labelsOf = async (file: string): Promise<{ width: number; height: number; data: Uint8Array; out: string }> => {
        const out = join(dir, 'pred');
        const r = await runCli('predict', '--weights', SHIPPED, '--image', file, '--out', out);
        expect(r.code, r.err).to.equal(0);
        const name = file.slice(file.lastIndexOf('/') + 1).replace(/\.[a-z]+$/, '');
        const lbl = decodeLabelPng(new Uint8Array(readFileSync(join(out, `${name}.labels.png`))), name);
        return { ...lbl, out: r.out };
      };
      for (const files of [v.png, v.jpg]) {
        const first = await labelsOf(files[0]);
        expect([first.width, first.height]).to.deep.equal([48, 72]);
        // The map must tell the orientations apart: it is not symmetric under any turn or mirror.
        const classes = new Set(first.data);
        expect(classes.size, 'a label map with several classes').to.be.at.least(2);
        for (const o of [2, 3, 4] as const) {
          expect(Array.from(applyOrientation({ width: 48, height: 72, data: first.data }, 1, o).data), `label map vs its orientation ${o}`)
            .to.not.deep.equal(Array.from(first.data));
        }
        for (const o of ORIENTATIONS.slice(1)) {
          const got = await labelsOf(files[o - 1]);
          expect([got.width, got.height], files[o - 1]).to.deep.equal([48, 72]);
          expect(Array.from(got.data), files[o - 1]).to.deep.equal(Array.from(first.data));
          expect(got.out).to.include(`48x72 (upright, EXIF orientation ${o})`);
        }
      }
    });
  });
});
