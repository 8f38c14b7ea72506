// relu backward: dx[i] = dy[i] where y[i] > 0, else 0. It reads the saved output y, not the input:
// y > 0 exactly where x > 0, and the op then needs to keep only one tensor alive.
// Bindings: 0 params {n4: u32}; 1 y: vec4<f32>[n4]; 2 dy: vec4<f32>[n4]; 3 dx: vec4<f32>[n4]
// (flat, any shape; bound as ceil(size / 4) vec4s, see relu.fwd.wgsl).
// Dispatch: grid1d(n4, WG), one invocation per 4 elements.
override WG: u32 = 64;
struct Params { n4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<vec4f>;
@group(0) @binding(2) var<storage, read> dy: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dx: array<vec4f>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n4) { return; }
  dx[i] = select(vec4f(0.0), dy[i], y[i] > vec4f(0.0));
}
