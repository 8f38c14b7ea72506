// resize_bilinear.dx: gradient of resize_bilinear.fwd with respect to x, as a gather (no atomics,
// deterministic): dx[q, iy, ix] = sum over (oy, ox) of wy(oy, iy) * wx(ox, ix) * dy[q, oy, ox], where
// w(d, i) = (i0(d) == i ? l0(d) : 0) + (i1(d) == i ? l1(d) : 0) with the forward's taps (see
// resize_bilinear.fwd.wgsl; the same f32 arithmetic, so a tap belongs to exactly the pixels the
// forward read). Output row oy reads row iy only if its src lies in [iy - 1, iy + 1), i.e. in exact
// arithmetic for oy in [a_h * iy + b_h, a_h * iy + c_h) (a ≈ out / in inverts the map oy -> src;
// the host computes a, b, c). The kernel scans
//   oy in [floor(a_h * iy + b_h), ceil(a_h * iy + c_h)] ∩ [0, oh - 1],
// one candidate wider on each side, which absorbs the f32 rounding of src and of this bound (from 0
// when iy <= 1: see span), and tests every candidate exactly; the same for columns.
// Bindings: 0 params {nc, h, w, oh, ow: u32, scale_h, scale_w: f32, align: u32,
//                     a_h, b_h, c_h, a_w, b_w, c_w: f32, dyoff, dxoff, r0, rows, b0: u32};
//           1 dy: f32[nc, oh, ow]; 2 dx: f32[nc, h, w]. Above the binding limit the planes run in
//           blocks, each binding a slice whose first plane starts at dyoff / dxoff (0 unsplit).
//           r0, rows: the launch covers input rows [r0, r0 + rows) of each plane (unsplit 0 and h);
//           when one plane is above the limit a launch covers one plane's row block, dy bound from
//           row b0 of the band of output rows that read them (else b0 = 0).
// Dispatch: grid1d(nc * rows * w, WG), one invocation per input element, ix fastest.
override WG: u32 = 64;
struct Params {
  nc: u32, h: u32, w: u32, oh: u32, ow: u32, scale_h: f32, scale_w: f32, align: u32,
  a_h: f32, b_h: f32, c_h: f32, a_w: f32, b_w: f32, c_w: f32, dyoff: u32, dxoff: u32,
  r0: u32, rows: u32, b0: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

struct Taps { i0: u32, i1: u32, l1: f32 }

fn taps(scale: f32, d: u32, n_in: u32, n_out: u32) -> Taps {
  if (n_in == n_out) { return Taps(d, d, 0.0); }
  var src: f32;
  if (p.align != 0u) {
    src = scale * f32(d);
  } else {
    src = max(scale * (f32(d) + 0.5) - 0.5, 0.0);
  }
  let i0 = min(u32(floor(src)), n_in - 1u);
  let l1 = clamp(src - f32(i0), 0.0, 1.0);
  return Taps(i0, min(i0 + 1u, n_in - 1u), l1);
}

// Weight of input index i in output index d's interpolation; hit says whether d reads i at all
// (a zero weight still counts, so a NaN in dy propagates as in PyTorch).
struct Weight { w: f32, hit: bool }
fn weight(t: Taps, i: u32) -> Weight {
  var r = Weight(0.0, false);
  if (t.i0 == i) { r = Weight(1.0 - t.l1, true); }
  if (t.i1 == i) { r = Weight(r.w + t.l1, true); }
  return r;
}

// Candidate output range [lo, hi] for input index i (empty when lo > hi).
fn span(a: f32, b: f32, c: f32, i: u32, n_out: u32) -> vec2i {
  let fi = f32(i);
  // Outputs whose src was clamped up to 0 read indices 0 and 1 (index 1 with weight 0, which
  // still carries a NaN of dy, as in PyTorch), though their unclamped src is below i - 1.
  var lo = 0;
  if (i > 1u) { lo = max(i32(floor(a * fi + b)), 0); }
  let hi = min(i32(ceil(a * fi + c)), i32(n_out) - 1);
  return vec2i(lo, hi);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.nc * p.rows * p.w) { return; }
  let ix = i % p.w;
  let t = i / p.w;
  let iy = p.r0 + t % p.rows;
  let q = t / p.rows;
  let ys = span(p.a_h, p.b_h, p.c_h, iy, p.oh);
  let xs = span(p.a_w, p.b_w, p.c_w, ix, p.ow);
  let base = p.dyoff + q * p.oh * p.ow - p.b0 * p.ow;
  var acc = 0.0;
  for (var oy = ys.x; oy <= ys.y; oy++) {
    let wy = weight(taps(p.scale_h, u32(oy), p.h, p.oh), iy);
    if (!wy.hit) { continue; }
    let row = base + u32(oy) * p.ow;
    var racc = 0.0;
    for (var ox = xs.x; ox <= xs.y; ox++) {
      let wx = weight(taps(p.scale_w, u32(ox), p.w, p.ow), ix);
      if (wx.hit) { racc += wx.w * dy[row + u32(ox)]; }
    }
    acc += wy.w * racc;
  }
  dx[p.dxoff + i] = acc;
}
