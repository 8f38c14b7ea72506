// batchnorm.stats: per-slice statistics of one channel, pass 1 of training-mode batch norm.
// A channel's M = n·h·w values are split into S contiguous slices of `chunk` values (the last may
// be shorter, none is empty); value m in [0, M) is x[((m / hw)·c + ci)·hw + m % hw].
// For slice s of channel ci, with k its count, in a fixed order:
//   ctr = Σx / k                         (rounded to f32: a centre close to the slice mean)
//   s1  = Σ(x − ctr),  s2 = Σ(x − ctr)²  (second read of the slice)
// x − ctr is exact in f32 when x and ctr are within a factor of 2 (Sterbenz), so s1 and s2 keep
// full precision even for x = 1000 + 0.01·noise, where Σx² − (Σx)²/k would lose every digit.
// batchnorm.final combines the slices.
// Bindings: 0 params {c, hw, m, chunk, s, q, s0, sn, n0, c0, cb, p0, xoff: u32}; 1 x: f32[n, c, hw] (NCHW);
//           2 part: f32[c, s, 3] = (ctr, s1, s2) per slice.
// Two entry points, same result layout, both deterministic (no atomics):
//   tree:  workgroups [s, c]; WG threads stride over the slice, then a tree reduction in
//          workgroup memory (WG a power of two). For real GPUs.
//   lanes: grid1d(c·s, WG); one invocation walks one whole slice, no workgroup memory or
//          barriers. For software adapters (llvmpipe runs a workgroup on one CPU thread and a
//          barrier is a coroutine switch: measured 2-4x faster than `tree` there).
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

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> part: array<f32>;

var<workgroup> red: array<vec2f, WG>;

// Sums v over the workgroup; every thread gets the total.
fn reduce(lid: u32, v: vec2f) -> vec2f {
  red[lid] = v;
  workgroupBarrier();
  for (var span = WG / 2u; span > 0u; span = span / 2u) {
    if (lid < span) { red[lid] = red[lid] + red[lid + span]; }
    workgroupBarrier();
  }
  let total = red[0];
  // Nobody may overwrite red[0] before every thread has read it.
  workgroupBarrier();
  return total;
}

fn store(ci: u32, s: u32, ctr: f32, sums: vec2f) {
  let o = (ci * p.s + s) * 3u;
  part[o] = ctr;
  part[o + 1u] = sums.x;
  part[o + 2u] = sums.y;
}

@compute @workgroup_size(WG)
fn tree(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x + p.s0;
  let ci = p.c0 + wid.y;
  let b = bounds(s);
  let m0 = b.x;
  let m1 = b.y;
  // Walk m = m0 + lid, m0 + lid + WG, ... as (image ni, pixel sp) without a division per value.
  let stepN = WG / p.hw;
  let stepS = WG % p.hw;
  let first = m0 + lid;
  let ni0 = first / p.hw;
  let sp0 = first - ni0 * p.hw;

  var acc = 0.0;
  var ni = ni0;
  var sp = sp0;
  for (var m = first; m < m1; m = m + WG) {
    acc = acc + x[at(ni, ci, sp)];
    ni = ni + stepN;
    sp = sp + stepS;
    if (sp >= p.hw) { sp = sp - p.hw; ni = ni + 1u; }
  }
  let ctr = reduce(lid, vec2f(acc, 0.0)).x / f32(m1 - m0);

  var d = vec2f(0.0);
  ni = ni0;
  sp = sp0;
  for (var m = first; m < m1; m = m + WG) {
    let v = x[at(ni, ci, sp)] - ctr;
    d = d + vec2f(v, v * v);
    ni = ni + stepN;
    sp = sp + stepS;
    if (sp >= p.hw) { sp = sp - p.hw; ni = ni + 1u; }
  }
  let sums = reduce(lid, d);
  if (lid == 0u) { store(ci, s, ctr, sums); }
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
  let ni0 = m0 / p.hw;
  let sp0 = m0 - ni0 * p.hw;

  var acc = 0.0;
  var i = at(ni0, ci, sp0);
  var sp = sp0;
  for (var m = m0; m < m1; m = m + 1u) {
    acc = acc + x[i];
    // Next pixel of the plane, or the first pixel of this channel's plane in the next image.
    i = i + 1u;
    sp = sp + 1u;
    if (sp == p.hw) { sp = 0u; i = i + (p.c - 1u) * p.hw; }
  }
  let ctr = acc / f32(m1 - m0);

  var d = vec2f(0.0);
  i = at(ni0, ci, sp0);
  sp = sp0;
  for (var m = m0; m < m1; m = m + 1u) {
    let v = x[i] - ctr;
    d = d + vec2f(v, v * v);
    i = i + 1u;
    sp = sp + 1u;
    if (sp == p.hw) { sp = 0u; i = i + (p.c - 1u) * p.hw; }
  }
  store(ci, s, ctr, d);
}
