// Class names and colour palettes: PASCAL VOC's colour map and Cityscapes' label ID → train ID table.
// Pure TypeScript: runs in browsers too.

/** The 21 PASCAL VOC 2012 classes, background first. */
export const VOC_CLASSES: readonly string[] = Object.freeze([
  'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
  'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor',
]);

/**
 * PASCAL VOC's colour map (the `labelcolormap` of the devkit): 256 RGB triples, 768 bytes.
 * Index k spreads its bits over the three channels from the most significant bit down, so
 * the first classes get saturated, distinct colours; 255 (ignore) is (224, 224, 192).
 * The map is injective, so RGB label images can be mapped back to indices.
 */
export function vocPalette(): Uint8Array {
  const p = new Uint8Array(768);
  for (let k = 0; k < 256; k++) {
    let r = 0;
    let g = 0;
    let b = 0;
    let c = k;
    for (let j = 7; j >= 0; j--) {
      r |= (c & 1) << j;
      g |= ((c >> 1) & 1) << j;
      b |= ((c >> 2) & 1) << j;
      c >>= 3;
    }
    p[3 * k] = r;
    p[3 * k + 1] = g;
    p[3 * k + 2] = b;
  }
  return p;
}

/** RGB (HWC, 3 bytes per pixel) picture of a label map through a palette, e.g. for overlays. */
export function colorize(label: Uint8Array, palette: Uint8Array = vocPalette()): Uint8Array {
  const out = new Uint8Array(label.length * 3);
  for (let i = 0; i < label.length; i++) {
    const k = 3 * label[i];
    out[3 * i] = palette[k];
    out[3 * i + 1] = palette[k + 1];
    out[3 * i + 2] = palette[k + 2];
  }
  return out;
}

/** The 19 Cityscapes evaluation classes (train IDs 0..18). */
export const CITYSCAPES_CLASSES: readonly string[] = Object.freeze([
  'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light', 'traffic sign', 'vegetation',
  'terrain', 'sky', 'person', 'rider', 'car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle',
]);

/**
 * Cityscapes `*_labelIds.png` value → train ID, as in cityscapesScripts' labels.py: 34 label IDs,
 * 19 of them evaluated, every other value (void classes, license plate, anything unknown) → 255.
 */
export function cityscapesLabelToTrainId(): Uint8Array {
  const m = new Uint8Array(256).fill(255);
  const evaluated: [number, number][] = [
    [7, 0], [8, 1], [11, 2], [12, 3], [13, 4], [17, 5], [19, 6], [20, 7], [21, 8], [22, 9],
    [23, 10], [24, 11], [25, 12], [26, 13], [27, 14], [28, 15], [31, 16], [32, 17], [33, 18],
  ];
  for (const [id, train] of evaluated) m[id] = train;
  return m;
}

/** Cityscapes' colours for the 19 train IDs, then black up to 255 (ignore). */
export function cityscapesPalette(): Uint8Array {
  const colours = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32],
  ];
  const p = new Uint8Array(768);
  colours.forEach((c, k) => p.set(c, 3 * k));
  return p;
}
