// conv2d bias gradient: db[co] = Σ_{n, oy, ox} dy[n, co, oy, ox]   (per-channel sum of dy).
// One workgroup per output channel: each of its WG invocations sums a strided share of the
// channel's pixels in a fixed order, then a tree reduction in workgroup memory adds the WG
// partial sums. Deterministic (no atomics), and every channel's rows are read contiguously.
// Bindings: 0 params {n, cout, ohw, off}; 1 dy: f32[n, cout, oh, ow] starting at element off of the
// bound slice (a block of images above the binding limit, summed per block and added; else 0);
// 2 db: f32[cout].
// Dispatch: workgroup (WG), WG a power of two; (cout, 1, 1) workgroups.
override WG: u32 = 64;
struct Params { n: u32, cout: u32, ohw: u32, off: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;
var<workgroup> part: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let co = wid.x;
  var s = 0.0;
  for (var nb = 0u; nb < p.n; nb++) {
    let base = p.off + (nb * p.cout + co) * p.ohw;
    for (var i = lid; i < p.ohw; i += WG) { s += dy[base + i]; }
  }
  part[lid] = s;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { part[lid] += part[lid + stride]; }
    workgroupBarrier();
  }
  if (lid == 0u) { db[co] = part[0]; }
}
