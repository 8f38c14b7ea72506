// conv2d weight packing for the forward pass: the implicit GEMM's A matrix, transposed so that
// 4 consecutive output channels are one aligned vec4, with the bias appended as a last row.
//   wp[k, co] = w[co, ci, ky, kx]   with k = (ky·kw + kx)·cin + ci   (tap-major, ci fastest)
//   wp[K, co] = bias[co] (0 without bias),  K = kh·kw·cin;   wp[k, co] = 0 for cout <= co < coPad
// Tap-major rows let the forward kernel keep one tap's input addresses fixed while it streams ci.
// Bindings: 0 params {cin, cout, kh, kw, coPad, hasBias}; 1 w: f32[cout, cin, kh, kw] (PyTorch
// layout); 2 bias: f32[cout] (any buffer when hasBias = 0: it is then not read);
// 3 wp: vec4f[K + 1, coPad / 4], coPad = cout rounded up to a multiple of 4.
// Dispatch: [ceil(coPad / 4 / WG), y, z] with y·z >= cin + 1 rows (row = wid.y + wid.z·nwg.y;
// row ci < cin packs rows (tap·cin + ci) for every tap, row cin the bias row K). One invocation
// per 4 output channels of one ci, looping over the taps: on lavapipe this kernel's cost was per
// invocation and per cache miss (one element per invocation with a tap-major walk re-read the
// whole weight once per tap), so each invocation reads taps contiguous floats per channel and
// writes taps vec4s. The row comes from the workgroup id: its divisions are per-workgroup.
override WG: u32 = 64;
struct Params { cin: u32, cout: u32, kh: u32, kw: u32, coPad: u32, hasBias: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> wp: array<vec4f>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let taps = p.kh * p.kw;
  let K = taps * p.cin;
  let coPad4 = p.coPad / 4u;
  let ci = wid.y + wid.z * nwg.y;
  let c4 = wid.x * WG + lid.x;
  if (ci > p.cin || c4 >= coPad4) { return; }
  if (ci == p.cin) {
    var v = vec4f(0.0);
    if (p.hasBias != 0u) {
      for (var j = 0u; j < 4u; j++) {
        let co = c4 * 4u + j;
        if (co < p.cout) { v[j] = bias[co]; }
      }
    }
    wp[K * coPad4 + c4] = v;
    return;
  }
  for (var tap = 0u; tap < taps; tap++) {
    var v = vec4f(0.0);
    for (var j = 0u; j < 4u; j++) {
      let co = c4 * 4u + j;
      if (co < p.cout) { v[j] = w[(co * p.cin + ci) * taps + tap]; }
    }
    wp[(tap * p.cin + ci) * coPad4 + c4] = v;
  }
}
