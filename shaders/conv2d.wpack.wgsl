// conv2d weight packing for the forward pass: the implicit GEMM's A matrix, transposed so that
// 4 consecutive output channels are one aligned vec4, with the bias appended as a last row.
//   wp[k, co] = w[co, ci, ky, kx]   with k = (ky·kw + kx)·cin + ci   (tap-major, ci fastest)
//   wp[K, co] = bias[co] (0 without bias),  K = kh·kw·cin;   wp[k, co] = 0 for cout <= co < coPad
// Tap-major rows let the forward kernel keep one tap's input addresses fixed while it streams ci.
// Bindings: 0 params {cin, cout, kh, kw, coPad, hasBias}; 1 w: f32[cout, cin, kh, kw] (PyTorch
// layout); 2 bias: f32[cout] (any buffer when hasBias = 0: it is then not read);
// 3 wp: f32[K + 1, coPad], coPad = cout rounded up to a multiple of 4.
// Dispatch: grid1d((K + 1)·coPad, WG), one invocation per packed element.
override WG: u32 = 64;
struct Params { cin: u32, cout: u32, kh: u32, kw: u32, coPad: u32, hasBias: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> wp: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  let taps = p.kh * p.kw;
  let K = taps * p.cin;
  if (i >= (K + 1u) * p.coPad) { return; }
  let k = i / p.coPad;
  let co = i % p.coPad;
  var v = 0.0;
  if (co < p.cout) {
    if (k == K) {
      if (p.hasBias != 0u) { v = bias[co]; }
    } else {
      let tap = k / p.cin;
      let ci = k % p.cin;
      v = w[(co * p.cin + ci) * taps + tap];
    }
  }
  wp[i] = v;
}
