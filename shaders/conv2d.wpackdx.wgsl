// conv2d weight packing for the backward-data pass: the weight seen as the transposed conv's
// A matrix, with 4 consecutive input channels as one aligned vec4.
//   wq[r, ci] = w[co, ci, ky, kx]   with r = (ky·kw + kx)·cout + co   (tap-major, co fastest)
//   wq[r, ci] = 0 for cin <= ci < ciPad
// Bindings: 0 params {cin, cout, kh, kw, ciPad}; 1 w: f32[cout, cin, kh, kw] (PyTorch layout);
// 2 wq: vec4f[kh·kw·cout, ciPad / 4], ciPad = cin rounded up to a multiple of 4.
// Dispatch: [ceil(ciPad / 4 / WG), y, z] with y·z >= cout rows (co = wid.y + wid.z·nwg.y), one
// invocation per 4 input channels of one co, looping over the taps (rows tap·cout + co); it reads
// 4·taps contiguous floats (see conv2d.wpack.wgsl for why).
override WG: u32 = 64;
struct Params { cin: u32, cout: u32, kh: u32, kw: u32, ciPad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> wq: array<vec4f>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let taps = p.kh * p.kw;
  let ciPad4 = p.ciPad / 4u;
  let co = wid.y + wid.z * nwg.y;
  let c4 = wid.x * WG + lid.x;
  if (co >= p.cout || c4 >= ciPad4) { return; }
  for (var tap = 0u; tap < taps; tap++) {
    var v = vec4f(0.0);
    for (var j = 0u; j < 4u; j++) {
      let ci = c4 * 4u + j;
      if (ci < p.cin) { v[j] = w[(co * p.cin + ci) * taps + tap]; }
    }
    wq[(tap * p.cout + co) * ciPad4 + c4] = v;
  }
}
