// batchnorm.dx: input gradient of training-mode batch norm, through the batch statistics:
//   dx = weight · invstd · (dy − Σdy / M − xhat · Σ(dy · xhat) / M),  xhat = ((x − hi) − lo) · invstd
// (the mean's and the variance's gradients folded in; d var / d mean = 0 since Σ(x − mean) = 0).
// Σdy and Σ(dy · xhat) are dbias and dweight from batchnorm.dfinal.
// Bindings: 0 params {total, c, cb, c0, hw, m, off: u32}; 1 dy: f32[n, c, hw]; 2 x: f32[n, c, hw];
//           3 mean: f32[2, c] (hi, lo); 4 invstd: f32[c]; 5 weight: f32[c];
//           6 dbias: f32[c]; 7 dweight: f32[c]; 8 dx: f32[n, c, hw].
// Two entry points, same bindings (see batchnorm.fwd):
//   planes: workgroups [gx, c, n], workgroup (·, ci, ni) strides over plane (ni, ci).
//   main:   grid1d(total, WG), one invocation per element, ci = (i / hw) % c.
// Above the binding limit a launch covers part of x (images, channels [c0, c0 + cb) of one image,
// or `hw` positions of one plane: src/ops/split.ts runPlanes) and off is where its first value is
// in the bound x / y / dy / dx; the per-channel vectors are bound whole (c channels). Unsplit:
// cb = c, c0 = 0, off = 0. Workgroups [gx, cb, n] for `planes`.
override WG: u32 = 64;
struct Params { total: u32, c: u32, cb: u32, c0: u32, hw: u32, m: u32, off: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> mean: array<f32>;
@group(0) @binding(4) var<storage, read> invstd: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> dbias: array<f32>;
@group(0) @binding(7) var<storage, read> dweight: array<f32>;
@group(0) @binding(8) var<storage, read_write> dx: array<f32>;

// Channel constants: (hi, lo, invstd, weight·invstd) and (Σdy / M, Σ(dy·xhat) / M).
struct Chan { hi: f32, lo: f32, inv: f32, k: f32, a: f32, b: f32 }

fn chan(ci: u32) -> Chan {
  let inv = invstd[ci];
  let rm = 1.0 / f32(p.m);
  return Chan(mean[ci], mean[p.c + ci], inv, weight[ci] * inv, dbias[ci] * rm, dweight[ci] * rm);
}

fn grad(i: u32, q: Chan) -> f32 {
  let xhat = ((x[i] - q.hi) - q.lo) * q.inv;
  return q.k * (dy[i] - q.a - xhat * q.b);
}

@compute @workgroup_size(WG)
fn planes(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ci = p.c0 + wid.y;
  let base = p.off + (wid.z * p.cb + wid.y) * p.hw;
  let q = chan(ci);
  for (var sp = gid.x; sp < p.hw; sp = sp + nwg.x * WG) {
    dx[base + sp] = grad(base + sp, q);
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.total) { return; }
  dx[p.off + i] = grad(p.off + i, chan(p.c0 + (i / p.hw) % p.cb));
}
