// axpy (in place): y[i] += alpha * x[i]. Used to accumulate gradients into a leaf's .grad.
// Bindings: 0 params {n: u32, alpha: f32}; 1 x: f32[n]; 2 y: f32[n] (read-write).
// Dispatch: grid1d(n, WG), one invocation per element.
override WG: u32 = 64;
struct Params { n: u32, alpha: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n) { return; }
  y[i] = y[i] + p.alpha * x[i];
}
