// gap.fwd: global average pooling, out[n, c, 0, 0] = Σ_{h, w} x[n, c, h, w] / (h·w).
// Four interleaved partial sums per plane: shorter dependency chains and a smaller rounding error
// than one running sum over h·w values.
// Bindings: 0 params {planes, hw: u32, scale: f32 = 1 / hw}; 1 x: f32[n·c, hw] (NCHW);
//           2 out: f32[n·c].
// Dispatch: grid1d(planes, WG), one invocation per (n, c) plane.
// xoff / ooff: where plane 0 starts in the bound x and out (a block of planes above the binding
// limit; 0 unsplit). j0, jn: entry `part` only (0 for `main`).
// Entry `part`, when one plane is above the binding limit: one invocation sums values
// [j0, j0 + jn) of one plane (x bound from xoff = value j0), jn a multiple of 4 except in the last
// part, carrying the four partial sums and the tail in `carry` (binding 3, f32[8]) from part to
// part, so the sums run in the order of `main` (the same bits); the last part writes out[ooff].
override WG: u32 = 64;
struct Params { planes: u32, hw: u32, scale: f32, xoff: u32, ooff: u32, j0: u32, jn: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = gid.x + gid.y * (nwg.x * WG);
  if (q >= p.planes) { return; }
  let base = p.xoff + q * p.hw;
  var acc = vec4f(0.0);
  var j = 0u;
  for (; j + 4u <= p.hw; j = j + 4u) {
    acc = acc + vec4f(x[base + j], x[base + j + 1u], x[base + j + 2u], x[base + j + 3u]);
  }
  var tail = 0.0;
  for (; j < p.hw; j = j + 1u) {
    tail = tail + x[base + j];
  }
  out[p.ooff + q] = ((acc.x + acc.y) + (acc.z + acc.w) + tail) * p.scale;
}

@group(0) @binding(3) var<storage, read_write> carry: array<f32>;

@compute @workgroup_size(WG)
fn part(@builtin(global_invocation_id) gid: vec3u) {
  if (gid.x != 0u || gid.y != 0u) { return; }
  var acc = vec4f(0.0);
  var tail = 0.0;
  if (p.j0 > 0u) {
    acc = vec4f(carry[0], carry[1], carry[2], carry[3]);
    tail = carry[4];
  }
  let base = p.xoff;
  var j = 0u;
  for (; j + 4u <= p.jn; j = j + 4u) {
    acc = acc + vec4f(x[base + j], x[base + j + 1u], x[base + j + 2u], x[base + j + 3u]);
  }
  for (; j < p.jn; j = j + 1u) {
    tail = tail + x[base + j];
  }
  if (p.j0 + p.jn < p.hw) {
    carry[0] = acc.x;
    carry[1] = acc.y;
    carry[2] = acc.z;
    carry[3] = acc.w;
    carry[4] = tail;
    return;
  }
  out[p.ooff] = ((acc.x + acc.y) + (acc.z + acc.w) + tail) * p.scale;
}
