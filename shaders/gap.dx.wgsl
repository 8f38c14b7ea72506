// gap.dx: gradient of global average pooling, dx[n, c, h, w] = dy[n, c, 0, 0] / (h·w),
// a gather: each dx element reads its plane's dy.
// Bindings: 0 params {total, c, hw: u32, scale: f32 = 1 / hw, off, dyoff: u32 (where image 0
//   starts in the bound dx and dy: a block of images above the binding limit; 0 unsplit)}; 1 dy: f32[n, c];
//           2 dx: f32[n, c, hw] (NCHW).
// Two entry points, same bindings:
//   planes: workgroups [gx, c, n]; workgroup (·, ci, ni) covers plane (ni, ci), each invocation
//           every (gx·WG)-th pixel from gid.x (no division per element; faster on llvmpipe).
//   main:   grid1d(total, WG), one invocation per element (small planes).
override WG: u32 = 64;
struct Params { total: u32, c: u32, hw: u32, scale: f32, off: u32, dyoff: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn planes(@builtin(global_invocation_id) gid: vec3u, @builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = wid.z * p.c + wid.y;
  let g = dy[p.dyoff + q] * p.scale;
  for (var sp = gid.x; sp < p.hw; sp = sp + nwg.x * WG) {
    dx[p.off + q * p.hw + sp] = g;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.total) { return; }
  dx[p.off + i] = dy[p.dyoff + i / p.hw] * p.scale;
}
