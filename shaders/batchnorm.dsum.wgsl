// batchnorm.dsum: per-slice sums for batch-norm backward, pass 1:
//   a = Σ dy,  b = Σ dy · xhat,  xhat = ((x − hi) − lo) · invstd,
// over slice s of channel ci (the slicing of batchnorm.stats: S slices of `chunk` values of the
// channel's M = n·h·w, value m at ((m / hw)·c + ci)·hw + m % hw). batchnorm.dfinal adds the slices.
// Bindings: 0 params {c, hw, m, chunk, s, q, s0, sn, n0, c0, cb, p0, xoff: u32}; 1 dy: f32[n, c, hw]; 2 x: f32[n, c, hw];
//           3 mean: f32[2, c] (hi, lo); 4 invstd: f32[c]; 5 part: f32[c, s, 2] = (a, b).
// Entry points as in batchnorm.stats (fixed order, no atomics):
//   tree:  workgroups [s, c]; WG threads stride over the slice, then a tree reduction in
//          workgroup memory (WG a power of two). For real GPUs.
//   lanes: grid1d(c·s, WG); one invocation per slice, no workgroup memory. For software adapters.
// Above the binding limit the slices are pieces of one plane (q = pieces per plane, chunk = the
// piece length; slice s is piece s % q of image s / q) and a launch covers slices [s0, s0 + sn) and
// channels [c0, c0 + cb): whole images [n0, n0 + sn) (q = 1, cb = c), or channels [c0, c0 + cb) of
// image n0 (sn = 1), or positions [p0, p0 + chunk) of one plane (cb = 1). x (and dy) are bound
// from an aligned element xoff before the launch's first value. Unsplit: q = 0, s0 = 0, sn = s,
// n0 = c0 = p0 = xoff = 0, cb = c. Dispatch: tree [sn, cb], lanes grid1d(cb·sn, WG).

override WG: u32 = 64;
struct Params { c: u32, hw: u32, m: u32, chunk: u32, s: u32, q: u32, s0: u32, sn: u32, n0: u32, c0: u32, cb: u32, p0: u32, xoff: u32 }
@group(0) @binding(0) var<uniform> p: Params;

// #include "common/bn-slices.wgsl"

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> invstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> part: array<f32>;

var<workgroup> red: array<vec2f, WG>;

fn term(i: u32, hi: f32, lo: f32, inv: f32) -> vec2f {
  let g = dy[i];
  return vec2f(g, g * ((x[i] - hi) - lo) * inv);
}

fn store(ci: u32, s: u32, sums: vec2f) {
  let o = (ci * p.s + s) * 2u;
  part[o] = sums.x;
  part[o + 1u] = sums.y;
}

@compute @workgroup_size(WG)
fn tree(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x + p.s0;
  let ci = p.c0 + wid.y;
  let b = bounds(s);
  let m0 = b.x;
  let m1 = b.y;
  let hi = mean[ci];
  let lo = mean[p.c + ci];
  let inv = invstd[ci];
  // Walk m = m0 + lid + j·WG as (image ni, pixel sp) without a division per value.
  let stepN = WG / p.hw;
  let stepS = WG % p.hw;
  let first = m0 + lid;
  var ni = first / p.hw;
  var sp = first - ni * p.hw;
  var acc = vec2f(0.0);
  for (var m = first; m < m1; m = m + WG) {
    acc = acc + term(at(ni, ci, sp), hi, lo, inv);
    ni = ni + stepN;
    sp = sp + stepS;
    if (sp >= p.hw) { sp = sp - p.hw; ni = ni + 1u; }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var span = WG / 2u; span > 0u; span = span / 2u) {
    if (lid < span) { red[lid] = red[lid] + red[lid + span]; }
    workgroupBarrier();
  }
  if (lid == 0u) { store(ci, s, red[0]); }
}

@compute @workgroup_size(WG)
fn lanes(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * (nwg.x * WG);
  if (t >= p.cb * p.sn) { return; }
  let cl = t / p.sn;
  let ci = p.c0 + cl;
  let s = p.s0 + t - cl * p.sn;
  let b = bounds(s);
  let m0 = b.x;
  let m1 = b.y;
  let hi = mean[ci];
  let lo = mean[p.c + ci];
  let inv = invstd[ci];
  let ni0 = m0 / p.hw;
  var sp = m0 - ni0 * p.hw;
  var i = at(ni0, ci, sp);
  var acc = vec2f(0.0);
  for (var m = m0; m < m1; m = m + 1u) {
    acc = acc + term(i, hi, lo, inv);
    // Next pixel of the plane, or the first pixel of this channel's plane in the next image.
    i = i + 1u;
    sp = sp + 1u;
    if (sp == p.hw) { sp = 0u; i = i + (p.c - 1u) * p.hw; }
  }
  store(ci, s, acc);
}
