// maxpool.fwd: 2-D max pooling of NCHW planes, torch.nn.functional.max_pool2d(x, (kh, kw),
// stride=(sh, sw), padding=(ph, pw)) with floor output size:
//   y[q, oy, ox] = max over ih in [oy*sh - ph, oy*sh - ph + kh), iw in [ox*sw - pw, ox*sw - pw + kw)
//                  (clipped to the input: padding counts as -inf) of x[q, ih, iw]
//   idx[q, oy, ox] = ih * w + iw of that maximum (PyTorch's flat index within the plane): the first
//                    maximum in row-major scan order; a NaN wins over numbers and a later NaN over an
//                    earlier one, as in ATen's `val > max || isnan(val)`.
// The host guarantees ph <= kh / 2 and pw <= kw / 2, so no window is empty.
// Bindings: 0 params {nc, h, w, oh, ow, kh, kw, sh, sw, ph, pw, xoff, yoff, r0, rows, b0: u32};
//           1 x: f32[nc, h, w]; 2 y: f32[nc, oh, ow]; 3 idx: i32[nc, oh, ow] (entry with_argmax only).
// Dispatch: grid1d(nc * rows * ow, WG), one invocation per output element, ox fastest.
// Entry points: `main` (inference: no indices) and `with_argmax` (training: saves idx for maxpool.dx).
// xoff / yoff: where plane 0 starts in the bound x (dx) and y, argmax (dy): a block of planes above
// the binding limit; 0 unsplit. r0, rows: the launch covers output rows [r0, r0 + rows) of each plane
// (unsplit 0 and oh); when one plane is above the limit a launch covers one plane's row block and
// x is bound from row b0 of the band those rows need (else b0 = 0).
override WG: u32 = 64;
struct Params { nc: u32, h: u32, w: u32, oh: u32, ow: u32, kh: u32, kw: u32, sh: u32, sw: u32, ph: u32, pw: u32, xoff: u32, yoff: u32, r0: u32, rows: u32, b0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<i32>;

// Bit test rather than v != v, which a compiler assuming finite math may fold to false.
fn is_nan(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

struct Max { v: f32, at: u32 }

fn window_max(i: u32) -> Max {
  let ox = i % p.ow;
  let t = i / p.ow;
  let oy = p.r0 + t % p.rows;
  let q = t / p.rows;
  let hs = i32(oy * p.sh) - i32(p.ph);
  let ws = i32(ox * p.sw) - i32(p.pw);
  let h0 = u32(max(hs, 0));
  let w0 = u32(max(ws, 0));
  let h1 = u32(min(hs + i32(p.kh), i32(p.h)));
  let w1 = u32(min(ws + i32(p.kw), i32(p.w)));
  let base = p.xoff + q * p.h * p.w - p.b0 * p.w;
  // Starting from the first element of the window is the same as ATen's start from -inf with
  // that element's index: only a larger value or a NaN replaces it.
  var m = Max(x[base + h0 * p.w + w0], h0 * p.w + w0);
  for (var ih = h0; ih < h1; ih++) {
    for (var iw = w0; iw < w1; iw++) {
      let at = ih * p.w + iw;
      let v = x[base + at];
      if (v > m.v || is_nan(v)) { m = Max(v, at); }
    }
  }
  return m;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.nc * p.rows * p.ow) { return; }
  y[p.yoff + i] = window_max(i).v;
}

@compute @workgroup_size(WG)
fn with_argmax(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.nc * p.rows * p.ow) { return; }
  let m = window_max(i);
  y[p.yoff + i] = m.v;
  idx[p.yoff + i] = i32(m.at);
}
