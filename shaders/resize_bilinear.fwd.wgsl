// resize_bilinear.fwd: bilinear resize of NCHW planes, torch.nn.functional.interpolate(x, size=(oh, ow),
// mode='bilinear', align_corners=align).
//   Along each axis (in -> out, f32 scale from the host, as ATen's area_pixel_compute_scale):
//     align = 0: src = max(0, scale * (d + 0.5) - 0.5), scale = in / out
//     align = 1: src = scale * d,                      scale = (in - 1) / (out - 1), 0 when out == 1
//     i0 = min(floor(src), in - 1), l1 = clamp(src - i0, 0, 1), i1 = min(i0 + 1, in - 1), l0 = 1 - l1
//     (in == out is a plain copy: i0 = i1 = d, l1 = 0, as in ATen)
//   y[q, oy, ox] = l0y * (l0x * x[q, y0, x0] + l1x * x[q, y0, x1]) + l1y * (l0x * x[q, y1, x0] + l1x * x[q, y1, x1])
// Bindings: 0 params {nc, h, w, oh, ow: u32, scale_h, scale_w: f32, align: u32, xoff, yoff, r0, rows, b0: u32};
//           1 x: f32[nc, h, w]; 2 y: f32[nc, oh, ow]   (q = n * c + channel: the planes are independent).
// Above the binding limit the planes run in blocks, each binding a slice whose first plane starts
// at element xoff (x) and yoff (y); 0 and 0 when unsplit. r0, rows: the launch covers output rows
// [r0, r0 + rows) of each plane (unsplit 0 and oh); when one plane is above the limit a launch
// covers one plane's row block, x bound from row b0 of the band of rows it reads (else b0 = 0).
// Dispatch: grid1d(nc * rows * ow, WG), one invocation per output element, ox fastest.
override WG: u32 = 64;
struct Params { nc: u32, h: u32, w: u32, oh: u32, ow: u32, scale_h: f32, scale_w: f32, align: u32, xoff: u32, yoff: u32, r0: u32, rows: u32, b0: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

struct Taps { i0: u32, i1: u32, l1: f32 }

// The same arithmetic as ATen's CPU kernel (compute_source_index_and_lambda), in f32, so the
// integer part flips at the same output index as in PyTorch.
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

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.nc * p.rows * p.ow) { return; }
  let ox = i % p.ow;
  let t = i / p.ow;
  let oy = p.r0 + t % p.rows;
  let q = t / p.rows;
  let ty = taps(p.scale_h, oy, p.h, p.oh);
  let tx = taps(p.scale_w, ox, p.w, p.ow);
  let base = p.xoff + q * p.h * p.w - p.b0 * p.w;
  let r0 = base + ty.i0 * p.w;
  let r1 = base + ty.i1 * p.w;
  let l0x = 1.0 - tx.l1;
  let top = l0x * x[r0 + tx.i0] + tx.l1 * x[r0 + tx.i1];
  let bottom = l0x * x[r1 + tx.i0] + tx.l1 * x[r1 + tx.i1];
  y[p.yoff + i] = (1.0 - ty.l1) * top + ty.l1 * bottom;
}
