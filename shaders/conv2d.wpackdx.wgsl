// conv2d weight packing for the backward-data pass: the weight seen as the transposed conv's
// A matrix, with 4 consecutive input channels as one aligned vec4.
//   wq[r, ci] = w[co, ci, ky, kx]   with r = (ky·kw + kx)·cout + co   (tap-major, co fastest)
//   wq[r, ci] = 0 for cin <= ci < ciPad
// Bindings: 0 params {cin, cout, kh, kw, ciPad}; 1 w: f32[cout, cin, kh, kw] (PyTorch layout);
// 2 wq: f32[kh·kw·cout, ciPad], ciPad = cin rounded up to a multiple of 4.
// Dispatch: grid1d(kh·kw·cout·ciPad, WG), one invocation per packed element.
override WG: u32 = 64;
struct Params { cin: u32, cout: u32, kh: u32, kw: u32, ciPad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> wq: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  let taps = p.kh * p.kw;
  if (i >= taps * p.cout * p.ciPad) { return; }
  let r = i / p.ciPad;
  let ci = i % p.ciPad;
  let tap = r / p.cout;
  let co = r % p.cout;
  var v = 0.0;
  if (ci < p.cin) { v = w[(co * p.cin + ci) * taps + tap]; }
  wq[i] = v;
}
