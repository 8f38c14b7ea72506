// The paper's Fig. 4, computed exactly: a 3×3 filter with atrous rate r applied to a 65×65 feature
// map with padding r (the output is 65×65 too). At each output position a weight is "valid" when
// its tap reads inside the map rather than the zero padding. As r grows towards the map size, the
// filter degenerates: fewer weights are valid, and once r >= 65 only the centre one is (a 1×1
// convolution). For each rate the table gives the fraction of output positions with 9, 6, 4, 3,
// 2 and 1 valid weights, the normalised count of valid weights (valid (position, tap) pairs over
// 9 · 65 · 65), and the taps that never read inside the map at any position: those atrous prunes
// from the forward and both backward passes, exactly (src/ops/conv2d/geometry.ts, tapRange).

import { tapRange } from '../ops/conv2d/index.js';

export interface Fig4Row {
  rate: number;
  size: number;
  /** Fraction of output positions with exactly `c` valid weights, for c = 9, 6, 4, 3, 2, 1. */
  positions: Record<number, number>;
  /** Valid (position, tap) pairs / (9 · size²). */
  validFraction: number;
  /** Taps (of 9) that only ever read padding: pruned from every pass. */
  prunedTaps: number;
  /** The same on a 33×33 map (the ASPP input at 513 / output stride 16, and the benchmark's). */
  prunedTaps33: number;
}

export const FIG4_RATES = [1, 2, 4, 6, 8, 12, 16, 18, 24, 32, 36, 48, 64, 65];

/** Per output coordinate o, how many of the 3 taps along one axis read inside [0, size). */
function validPerAxis(size: number, rate: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < size; o++) {
    let c = 0;
    for (let t = 0; t < 3; t++) {
      const i = o - rate + t * rate;
      if (i >= 0 && i < size) c++;
    }
    out.push(c);
  }
  return out;
}

/** Taps of a 3×3 filter (rate r, padding r, stride 1) that never read inside a size × size map. */
export function prunedTaps(rate: number, size: number): number {
  const [lo, hi] = tapRange(3, 1, rate, rate, size, size);
  return 9 - (hi - lo) * (hi - lo);
}

export function fig4Row(rate: number, size = 65): Fig4Row {
  const ax = validPerAxis(size, rate);
  const counts: Record<number, number> = { 9: 0, 6: 0, 4: 0, 3: 0, 2: 0, 1: 0 };
  let valid = 0;
  for (const a of ax) {
    for (const b of ax) {
      counts[a * b] = (counts[a * b] ?? 0) + 1;
      valid += a * b;
    }
  }
  const positions: Record<number, number> = {};
  for (const c of [9, 6, 4, 3, 2, 1]) positions[c] = counts[c] / (size * size);
  return { rate, size, positions, validFraction: valid / (9 * size * size), prunedTaps: prunedTaps(rate, size), prunedTaps33: prunedTaps(rate, 33) };
}

export function fig4Table(rates = FIG4_RATES, size = 65): Fig4Row[] {
  return rates.map((r) => fig4Row(r, size));
}

export function fig4Markdown(rows: Fig4Row[]): string {
  const lines = [
    `| rate | 9 valid | 6 | 4 | 3 | 2 | 1 valid | valid weights (normalised) | taps pruned | pruned on 33×33 |`,
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const f = (v: number) => v.toFixed(3);
  for (const r of rows) {
    const p = r.positions;
    lines.push(`| ${r.rate} | ${f(p[9])} | ${f(p[6])} | ${f(p[4])} | ${f(p[3])} | ${f(p[2])} | ${f(p[1])} | ${f(r.validFraction)} | ${r.prunedTaps} of 9 | ${r.prunedTaps33} of 9 |`);
  }
  return lines.join('\n');
}
