// add: out[i] = a[i] + alpha * b[i]   (alpha = 1 for the `add` op, -1 for subtraction).
// Bindings: 0 params {n: u32, alpha: f32}; 1 a: f32[n]; 2 b: f32[n]; 3 out: f32[n].
// Dispatch: grid1d(n, WG), one invocation per element.
override WG: u32 = 64;
struct Params { n: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n) { return; }
  out[i] = a[i] + p.alpha * b[i];
}
