// batchnorm.dx_eval: input gradient of eval ("frozen") batch norm, whose statistics are constants:
//   dx = dy · (weight · invstd),  invstd = 1 / sqrt(running_var + eps).
// Bindings: 0 params {total, c, cb, c0, hw, off: u32}; 1 dy: f32[n, c, hw]; 2 invstd: f32[c];
//           3 weight: f32[c]; 4 dx: f32[n, c, hw].
// Two entry points, same bindings (see batchnorm.fwd):
//   planes: workgroups [gx, c, n], workgroup (·, ci, ni) strides over plane (ni, ci).
//   main:   grid1d(total, WG), one invocation per element, ci = (i / hw) % c.
// Above the binding limit a launch covers part of x (images, channels [c0, c0 + cb) of one image,
// or `hw` positions of one plane: src/ops/split.ts runPlanes) and off is where its first value is
// in the bound x / y / dy / dx; the per-channel vectors are bound whole (c channels). Unsplit:
// cb = c, c0 = 0, off = 0. Workgroups [gx, cb, n] for `planes`.
override WG: u32 = 64;
struct Params { total: u32, c: u32, cb: u32, c0: u32, hw: u32, off: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> invstd: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn planes(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ci = p.c0 + wid.y;
  let base = p.off + (wid.z * p.cb + wid.y) * p.hw;
  let k = weight[ci] * invstd[ci];
  for (var sp = gid.x; sp < p.hw; sp = sp + nwg.x * WG) {
    dx[base + sp] = dy[base + sp] * k;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.total) { return; }
  let ci = p.c0 + (i / p.hw) % p.cb;
  dx[p.off + i] = dy[p.off + i] * (weight[ci] * invstd[ci]);
}
