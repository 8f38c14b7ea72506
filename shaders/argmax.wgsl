// argmax along one dimension: x viewed as [outer, d, inner] (dim = the middle axis),
// out[o, s] = the smallest k in [0, d) with x[o, k, s] = max_k' x[o, k', s]  (ties: first index,
// as torch.argmax; a strict > comparison keeps the earliest maximum).
// Bindings: 0 params {total: u32 = outer * inner, d: u32, inner: u32; xoff, ooff, k0, kn: `block` only};
//           1 x: f32[outer, d, inner] row-major; 2 out: i32[outer, inner].
// For segmentation maps x is [n, C, h, w] with dim 1: outer = n, d = C, inner = h * w.
// Dispatch: grid1d(total, WG), one invocation per output element; neighbouring invocations read
// neighbouring s, so each step of the loop over k is a contiguous load across the workgroup.
// Entry `block` (x above the binding limit): one outer index o, channels [k0, k0 + kn) and
// positions [s0, s0 + total) per launch, x bound from an aligned element before x[o, k0, s0] (that
// element is at xoff in the slice), out and best (f32[outer, inner], the running maximum) bound
// from an aligned element before [o, s0] (at ooff). Launches go in increasing k0; k0 = 0 starts
// the running maximum. Strict > in increasing k keeps the first index, so blocks give exactly the
// unsplit result. Bindings: 1 x, 2 out, 3 best.
override WG: u32 = 64;
struct Params { total: u32, d: u32, inner: u32, xoff: u32, ooff: u32, k0: u32, kn: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;
@group(0) @binding(3) var<storage, read_write> best: array<f32>;

@compute @workgroup_size(WG)
fn block(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.total) { return; }
  var b = x[p.xoff + i];
  var arg = p.k0;
  var k = 1u;
  if (p.k0 != 0u) {
    b = best[p.ooff + i];
    arg = u32(out[p.ooff + i]);
    k = 0u;
  }
  for (; k < p.kn; k++) {
    let v = x[p.xoff + i + k * p.inner];
    if (v > b) {
      b = v;
      arg = p.k0 + k;
    }
  }
  out[p.ooff + i] = i32(arg);
  best[p.ooff + i] = b;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.total) { return; }
  let o = i / p.inner;
  let s = i - o * p.inner;
  let base = o * p.d * p.inner + s;
  var best = x[base];
  var arg = 0u;
  for (var k = 1u; k < p.d; k++) {
    let v = x[base + k * p.inner];
    if (v > best) {
      best = v;
      arg = k;
    }
  }
  out[i] = i32(arg);
}
