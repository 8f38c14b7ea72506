// conv2d helper: an NCHW tensor copied to channels-last with the channel dimension padded to a
// multiple of 4 (zeros), so that 4 consecutive channels of one pixel are one aligned vec4:
//   dst[n, s, c] = src[n, c, s]  (s = flat spatial index, 0 <= s < hw),  0 for c >= cSrc
// conv2d.dw reads x and dy this way (one vec4 load per 4 channels instead of 4 scalar loads).
// Bindings: 0 params {n, c, hw, cPad, soff}; 1 src: f32[n, c, hw] starting at element soff of the
// bound slice (a block of images above the binding limit, else 0); 2 dst: vec4f[n, hw, cPad / 4].
// Dispatch: grid1d(n·hw·cPad / 4, WG), one invocation per destination vec4 (consecutive
// invocations write consecutive addresses; one vec4 per invocation rather than one element: on
// lavapipe this kernel's cost is per invocation).
override WG: u32 = 64;
struct Params { n: u32, c: u32, hw: u32, cPad: u32, soff: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4f>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  let cPad4 = p.cPad / 4u;
  if (i >= p.n * p.hw * cPad4) { return; }
  let c4 = i % cPad4;
  let s = (i / cPad4) % p.hw;
  let nb = i / (cPad4 * p.hw);
  var v = vec4f(0.0);
  for (var j = 0u; j < 4u; j++) {
    let c = c4 * 4u + j;
    if (c < p.c) { v[j] = src[p.soff + (nb * p.c + c) * p.hw + s]; }
  }
  dst[i] = v;
}
