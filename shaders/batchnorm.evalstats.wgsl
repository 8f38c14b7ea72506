// batchnorm.evalstats: the per-channel statistics of eval ("frozen") batch norm, taken from the
// running statistics and copied, so backward still sees them if rm/rv are updated in place later.
//   mean[ci] = rm[ci] (hi), mean[c + ci] = 0 (lo);  invstd[ci] = 1 / sqrt(rv[ci] + eps)
// Bindings: 0 params {c: u32, eps: f32}; 1 rm: f32[c]; 2 rv: f32[c];
//           3 mean: f32[2, c] (row 0 hi, row 1 lo, as batchnorm.final writes it); 4 invstd: f32[c].
// Dispatch: grid1d(c, WG), one invocation per channel.
override WG: u32 = 64;
struct Params { c: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> rm: array<f32>;
@group(0) @binding(2) var<storage, read> rv: array<f32>;
@group(0) @binding(3) var<storage, read_write> mean: array<f32>;
@group(0) @binding(4) var<storage, read_write> invstd: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ci = gid.x + gid.y * (nwg.x * WG);
  if (ci >= p.c) { return; }
  mean[ci] = rm[ci];
  mean[p.c + ci] = 0.0;
  invstd[ci] = 1.0 / sqrt(rv[ci] + p.eps);
}
