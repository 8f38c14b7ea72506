// batchnorm.fwd: y = ((x − hi) − lo) · (invstd · weight) + bias, per channel ci.
// The mean is subtracted as two floats before scaling (see batchnorm.final): folding it into one
// scale-and-shift x·a + b would cancel catastrophically when |mean| ≫ std.
// Bindings: 0 params {total, c, cb, c0, hw, off: u32}; 1 x: f32[n, c, hw]; 2 mean: f32[2, c] (hi, lo);
//           3 invstd: f32[c]; 4 weight: f32[c]; 5 bias: f32[c]; 6 y: f32[n, c, hw].
// Two entry points, same bindings:
//   planes: workgroups [gx, c, n]; workgroup (·, ci, ni) covers plane (ni, ci), each invocation
//           every (gx·WG)-th pixel from gid.x. No division per element and the channel's
//           constants are uniform: on llvmpipe 3-10x faster than `main` for planes of 32+ pixels.
//   main:   grid1d(total, WG), one invocation per element, ci = (i / hw) % c (small planes).
// Above the binding limit a launch covers part of x (images, channels [c0, c0 + cb) of one image,
// or `hw` positions of one plane: src/ops/split.ts runPlanes) and off is where its first value is
// in the bound x / y / dy / dx; the per-channel vectors are bound whole (c channels). Unsplit:
// cb = c, c0 = 0, off = 0. Workgroups [gx, cb, n] for `planes`.
override WG: u32 = 64;
struct Params { total: u32, c: u32, cb: u32, c0: u32, hw: u32, off: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mean: array<f32>;
@group(0) @binding(3) var<storage, read> invstd: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn planes(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ci = p.c0 + wid.y;
  let base = p.off + (wid.z * p.cb + wid.y) * p.hw;
  let hi = mean[ci];
  let lo = mean[p.c + ci];
  let a = invstd[ci] * weight[ci];
  let b = bias[ci];
  for (var sp = gid.x; sp < p.hw; sp = sp + nwg.x * WG) {
    y[base + sp] = ((x[base + sp] - hi) - lo) * a + b;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.total) { return; }
  let ci = p.c0 + (i / p.hw) % p.cb;
  y[p.off + i] = ((x[p.off + i] - mean[ci]) - mean[p.c + ci]) * (invstd[ci] * weight[ci]) + bias[ci];
}
