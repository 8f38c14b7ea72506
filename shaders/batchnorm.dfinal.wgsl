// batchnorm.dfinal: per-channel gradient sums from the slices of batchnorm.dsum, in slice order:
//   dbias[ci] = Σ_s a_s = Σ dy,   dweight[ci] = Σ_s b_s = Σ dy · xhat.
// Bindings: 0 params {c, s: u32}; 1 part: f32[c, s, 2]; 2 dbias: f32[c]; 3 dweight: f32[c].
// Dispatch: grid1d(c, WG), one invocation per channel.
override WG: u32 = 64;
struct Params { c: u32, s: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbias: array<f32>;
@group(0) @binding(3) var<storage, read_write> dweight: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ci = gid.x + gid.y * (nwg.x * WG);
  if (ci >= p.c) { return; }
  var acc = vec2f(0.0);
  for (var s = 0u; s < p.s; s = s + 1u) {
    let o = (ci * p.s + s) * 2u;
    acc = acc + vec2f(part[o], part[o + 1u]);
  }
  dbias[ci] = acc.x;
  dweight[ci] = acc.y;
}
