// cross_entropy backward (mean reduction). For pixel q = ni * hw + s with t = target[q], and every
// class c:
//   dx[ni, c, s] = dy[0] / count * (exp((x[ni, c, s] - m[q]) - logsum[q]) - [c == t])  (valid pixel)
//   dx[ni, c, s] = 0                                                                (ignored pixel)
// with (m, logsum) saved by cross_entropy.fwd.wgsl and count = tot[0].y, the number of valid
// pixels from the final reduction pass. dy and count are read here on the GPU: no readback.
// Valid means t != ignoreIndex and 0 <= t < C, the same rule as the forward pass; when no pixel
// is valid every dx is 0 and the division by count = 0 is never evaluated.
// Bindings: 0 params {npix: u32 = n * hw, c: u32, hw: u32, ignoreIndex: i32, xoff, loff, soff, k0,
//   kn: u32 (k0, kn: entry `block` only)};
//   1 x: f32[n, C, hw]; 2 labels (the target): i32[n, hw]; 3 stats: vec2<f32>[npix] = (m, logsum);
//   4 tot: vec2<f32>[1] = (sum of terms, count); 5 dy: f32[1]; 6 dx: f32[n, C, hw].
// Entry `block`, when one image is above the binding limit: npix positions of one image and
// classes [k0, k0 + kn), x and dx bound from xoff = class k0's plane at the first position (classes
// hw apart), labels from loff, stats from soff; the same formula, so the same bits as `main`.
// Dispatch: grid1d(npix, WG), one invocation per pixel writing its C gradients (a gather: no
// atomics). Per pixel rather than per logit, so the label, stats and index arithmetic are done
// once per pixel (3x faster on lavapipe at C = 21); neighbouring invocations still write
// neighbouring s, so each store of the loop is contiguous across the workgroup.
override WG: u32 = 64;
struct Params { npix: u32, c: u32, hw: u32, ignoreIndex: i32, xoff: u32, loff: u32, soff: u32, k0: u32, kn: u32 }
// Above the binding limit the images run in blocks: x and dx slices start their first image at
// xoff, labels at loff, stats at soff (vec2s); all 0 unsplit.
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<i32>;
@group(0) @binding(3) var<storage, read> stats: array<vec2f>;
@group(0) @binding(4) var<storage, read> tot: array<vec2f>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = gid.x + gid.y * (nwg.x * WG);
  if (q >= p.npix) { return; }
  let ni = q / p.hw;
  let s = q - ni * p.hw;
  let base = p.xoff + ni * p.c * p.hw + s;
  let t = labels[p.loff + q];
  if (t == p.ignoreIndex || t < 0 || t >= i32(p.c)) {
    for (var c = 0u; c < p.c; c++) {
      dx[base + c * p.hw] = 0.0;
    }
    return;
  }
  let st = stats[p.soff + q];
  // m + logsum is logsumexp; subtracting m first keeps x - m exact for the large logits.
  let scale = dy[0] / tot[0].y;
  for (var c = 0u; c < p.c; c++) {
    let i = base + c * p.hw;
    let softmax = exp((x[i] - st.x) - st.y);
    dx[i] = scale * (softmax - select(0.0, 1.0, i32(c) == t));
  }
}

@compute @workgroup_size(WG)
fn block(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let q = gid.x + gid.y * (nwg.x * WG);
  if (q >= p.npix) { return; }
  let base = p.xoff + q;
  let t = labels[p.loff + q];
  if (t == p.ignoreIndex || t < 0 || t >= i32(p.c)) {
    for (var c = 0u; c < p.kn; c++) {
      dx[base + c * p.hw] = 0.0;
    }
    return;
  }
  let st = stats[p.soff + q];
  let scale = dy[0] / tot[0].y;
  for (var c = 0u; c < p.kn; c++) {
    let i = base + c * p.hw;
    let softmax = exp((x[i] - st.x) - st.y);
    dx[i] = scale * (softmax - select(0.0, 1.0, i32(p.k0 + c) == t));
  }
}
