// maxpool.dx: gradient of maxpool.fwd with respect to x, as a gather (no atomics, deterministic):
//   dx[q, ih, iw] = sum of dy[q, oy, ox] over the outputs whose window contains (ih, iw) and whose
//                   saved argmax idx[q, oy, ox] is ih * w + iw.
// The windows containing row ih are oy in [ceil((ih + ph - kh + 1) / sh), floor((ih + ph) / sh)]
// ∩ [0, oh - 1]; the same for columns.
// Bindings: 0 params {nc, h, w, oh, ow, kh, kw, sh, sw, ph, pw, xoff, yoff, r0, rows, b0: u32};
//           1 dy: f32[nc, oh, ow]; 2 idx: i32[nc, oh, ow]; 3 dx: f32[nc, h, w].
// Dispatch: grid1d(nc * rows * w, WG), one invocation per input element, iw fastest.
// xoff / yoff: where plane 0 starts in the bound x (dx) and y, argmax (dy): a block of planes above
// the binding limit; 0 unsplit. r0, rows: the launch covers input rows [r0, r0 + rows) of each plane
// (unsplit 0 and h); when one plane is above the limit a launch covers one plane's row block and
// y / argmax is bound from row b0 of the band those rows need (else b0 = 0).
override WG: u32 = 64;
struct Params { nc: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32, sh: u32, sw: u32, ph: u32, pw: u32, xoff: u32, yoff: u32, r0: u32, rows: u32, b0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<i32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// First and last output index whose window [o*s - pad, o*s - pad + k) contains i.
fn span(i: u32, k: u32, s: u32, pad: u32, n_out: u32) -> vec2u {
  let top = i + pad; // position in the padded input
  // ceil((top - k + 1) / s) without going negative: integer division truncates towards zero.
  var lo = 0u;
  if (top + 1u > k) { lo = (top + 1u - k + s - 1u) / s; }
  let hi = min(top / s, n_out - 1u);
  return vec2u(lo, hi);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.nc * p.rows * p.w) { return; }
  let iw = i % p.w;
  let t = i / p.w;
  let ih = p.r0 + t % p.rows;
  let q = t / p.rows;
  let at = i32(ih * p.w + iw);
  let ys = span(ih, p.kh, p.sh, p.ph, p.oh);
  let xs = span(iw, p.kw, p.sw, p.pw, p.ow);
  let base = p.yoff + q * p.oh * p.ow - p.b0 * p.ow;
  var acc = 0.0;
  for (var oy = ys.x; oy <= ys.y; oy++) {
    for (var ox = xs.x; ox <= xs.y; ox++) {
      let o = base + oy * p.ow + ox;
      if (idx[o] == at) { acc += dy[o]; }
    }
  }
  dx[p.xoff + i] = acc;
}
