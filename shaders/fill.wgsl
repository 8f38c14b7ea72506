// fill: out[i] = value for every i < n.
// Bindings: 0 params {n: u32, value: f32}; 1 out: f32[n].
// Dispatch: grid1d(n, WG), one invocation per element.
override WG: u32 = 64;
struct Params { n: u32, value: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n) { return; }
  out[i] = p.value;
}
