// cross_entropy, per-pixel pass. x is [n, C, hw] (hw = h * w, or 1 for [n, C] inputs), target is
// [n, hw] (bound as `labels`); pixel q = ni * hw + s. With t = labels[q] and m = max_c x[ni, c, s]:
//   logsum[q] = log(sum_c exp(x[ni, c, s] - m))            (max-subtracted: no overflow at ±1e4)
//   term[q]   = (m - x[ni, t, s]) + logsum[q]               (= logsumexp - x_t, without the
//                                                             cancellation of a large m)
//   valid[q]  = 1 if t != ignoreIndex and 0 <= t < C, else 0 (term = 0 where invalid).
// Targets outside [0, C) that are not ignoreIndex count as ignored: the data layer validates
// labels up front, and a GPU kernel has no way to raise an error.
// Bindings: 0 params {npix: u32 = n * hw, c: u32, hw: u32, ignoreIndex: i32, xoff, loff, poff, k0, kn,
//   phase: u32 (k0, kn, phase: entry `block` only)};
//   1 x: f32[n, C, hw]; 2 labels: i32[n, hw];
//   3 pairs: vec2<f32>[npix] = (term, valid), summed next by cross_entropy.reduce.wgsl;
//   4 stats: vec2<f32>[npix] = (m, logsum), saved for the backward pass.
// Above the binding limit the images run in blocks, each binding slices whose first image starts
// at xoff (x), loff (labels) and poff (pairs and stats, in vec2s); all 0 unsplit.
// Entry `block`, when one image is above the binding limit: a launch covers npix positions of one
// image and classes [k0, k0 + kn), x bound from xoff = class k0's plane at the first position
// (classes hw apart), labels from loff, pairs and stats from poff. Phase 0, class blocks in order:
// running maximum stats.x (stats.y = 0 from the first block). Phase 1, class blocks in order:
// running sum of exp(x - m) in stats.y, in the order of `main` (so bit-identical to it); the target
// logit is kept in pairs.x when the block holds it; the last block writes logsum, term and valid.
// Dispatch: grid1d(npix, WG), one invocation per pixel looping over C; neighbouring invocations
// read neighbouring s, so every step of the loop is a contiguous load across the workgroup.
override WG: u32 = 64;
struct Params { npix: u32, c: u32, hw: u32, ignoreIndex: i32, xoff: u32, loff: u32, poff: u32, k0: u32, kn: u32, phase: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read_write> pairs: array<vec2f>;
@group(0) @binding(4) var<storage, read_write> stats: array<vec2f>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = gid.x + gid.y * (nwg.x * WG);
  if (q >= p.npix) { return; }
  let ni = q / p.hw;
  let s = q - ni * p.hw;
  let base = p.xoff + ni * p.c * p.hw + s;
  var m = x[base];
  for (var c = 1u; c < p.c; c++) {
    m = max(m, x[base + c * p.hw]);
  }
  var sum = 0.0;
  for (var c = 0u; c < p.c; c++) {
    sum += exp(x[base + c * p.hw] - m);
  }
  let logsum = log(sum);
  stats[p.poff + q] = vec2f(m, logsum);
  let t = labels[p.loff + q];
  if (t == p.ignoreIndex || t < 0 || t >= i32(p.c)) {
    pairs[p.poff + q] = vec2f(0.0, 0.0);
  } else {
    pairs[p.poff + q] = vec2f((m - x[base + u32(t) * p.hw]) + logsum, 1.0);
  }
}

fn valid(t: i32) -> bool {
  return !(t == p.ignoreIndex || t < 0 || t >= i32(p.c));
}

@compute @workgroup_size(WG)
fn block(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = gid.x + gid.y * (nwg.x * WG);
  if (q >= p.npix) { return; }
  let base = p.xoff + q;
  let o = p.poff + q;
  if (p.phase == 0u) {
    var m = x[base];
    if (p.k0 > 0u) { m = max(stats[o].x, m); }
    for (var c = 1u; c < p.kn; c++) {
      m = max(m, x[base + c * p.hw]);
    }
    stats[o] = vec2f(m, 0.0);
    return;
  }
  let st = stats[o];
  var sum = st.y;
  for (var c = 0u; c < p.kn; c++) {
    sum += exp(x[base + c * p.hw] - st.x);
  }
  let t = labels[p.loff + q];
  let ok = valid(t);
  if (ok && u32(t) >= p.k0 && u32(t) < p.k0 + p.kn) {
    pairs[o] = vec2f(x[base + (u32(t) - p.k0) * p.hw], 1.0);
  }
  if (p.k0 + p.kn < p.c) {
    stats[o] = vec2f(st.x, sum);
    return;
  }
  let logsum = log(sum);
  stats[o] = vec2f(st.x, logsum);
  if (ok) {
    pairs[o] = vec2f((st.x - pairs[o].x) + logsum, 1.0);
  } else {
    pairs[o] = vec2f(0.0, 0.0);
  }
}
