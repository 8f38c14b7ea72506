// conv2d backward-weight: a GEMM with the reduction over K = n·oh·ow, one gather per weight tile:
//   dw[co, ci, ky, kx] = Σ_{n, oy, ox} dy[n, co, oy, ox] · x[n, ci, iy, ix]
//   iy = oy·sh − ph + ky·dh,  ix = ox·sw − pw + kx·dw
// Register blocking, no workgroup memory: each invocation owns 4 output channels × 4 input
// channels of one tap (ky, kx); per output pixel it loads 4 dy + 4 x values for 16 FMAs.
// Tap pruning: for a fixed tap the output pixels whose input is inside the map form the box
// [oyA, oyB) × [oxA, oxB), computed exactly, so the inner loops need no bounds tests; taps outside
// the CPU's global range [kyLo, kyHi) × [kxLo, kxHi) only ever see padding and are written as 0.
// Summation order is fixed (n, oy, ox): results are deterministic, no atomics.
// Bindings: 0 params (below, i32); 1 x: f32[n, cin, h, w]; 2 dy: f32[n, cout, oh, ow];
// 3 dw: f32[cout, cin, kh, kw].
// Dispatch: workgroup (WG); grid1d(kh·kw·ciBlocks, WG) in x/y over (tap, ci block) with the ci
// block fastest (ciBlocks = ceil(cin / 4)); z = ceil(cout / 4) output-channel blocks.
override WG: u32 = 8;
struct Params {
  n: i32, cin: i32, h: i32, w: i32,
  cout: i32, oh: i32, ow: i32, kh: i32,
  kw: i32, sh: i32, sw: i32, ph: i32,
  pw: i32, dh: i32, dw: i32, ciBlocks: i32,
  kyLo: i32, kyHi: i32, kxLo: i32, kxHi: i32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;

// Floor / ceil of a / b for b > 0 (WGSL's i32 division truncates toward zero).
fn floorDiv(a: i32, b: i32) -> i32 {
  let q = a / b;
  return select(q, q - 1, (a % b != 0) && (a < 0));
}
fn ceilDiv(a: i32, b: i32) -> i32 { return -floorDiv(-a, b); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let idx = i32(gid.x + gid.y * (nwg.x * WG));
  let taps = p.kh * p.kw;
  if (idx >= taps * p.ciBlocks) { return; }
  let co0 = i32(gid.z) * 4;
  let ci0 = (idx % p.ciBlocks) * 4;
  let tap = idx / p.ciBlocks;
  let ky = tap / p.kw;
  let kx = tap % p.kw;
  let hw = p.h * p.w;
  let ohw = p.oh * p.ow;

  // The output box whose taps land inside the input; empty for globally pruned taps.
  let inY = ky >= p.kyLo && ky < p.kyHi;
  let inX = kx >= p.kxLo && kx < p.kxHi;
  let oyA = max(0, ceilDiv(p.ph - ky * p.dh, p.sh));
  let oyB = select(0, min(p.oh, floorDiv(p.h - 1 + p.ph - ky * p.dh, p.sh) + 1), inY);
  let oxA = max(0, ceilDiv(p.pw - kx * p.dw, p.sw));
  let oxB = select(0, min(p.ow, floorDiv(p.w - 1 + p.pw - kx * p.dw, p.sw) + 1), inX);

  // Channels past cout / cin re-read the last channel (a valid address); they are not stored.
  let dyC = vec4i(co0, min(co0 + 1, p.cout - 1), min(co0 + 2, p.cout - 1), min(co0 + 3, p.cout - 1)) * ohw;
  let xC = vec4i(ci0, min(ci0 + 1, p.cin - 1), min(ci0 + 2, p.cin - 1), min(ci0 + 3, p.cin - 1)) * hw;
  // acc_c holds output channel co0 + c for the 4 input channels ci0 + j (vec4 lane j).
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  for (var nb = 0; nb < p.n; nb++) {
    for (var oy = oyA; oy < oyB; oy++) {
      let dRow = dyC + vec4i(nb * p.cout * ohw + oy * p.ow);
      let xRow = xC + vec4i(nb * p.cin * hw + (oy * p.sh - p.ph + ky * p.dh) * p.w);
      var dIdx = dRow + vec4i(oxA);
      var xIdx = xRow + vec4i(oxA * p.sw - p.pw + kx * p.dw);
      for (var ox = oxA; ox < oxB; ox++) {
        let xv = vec4f(x[xIdx.x], x[xIdx.y], x[xIdx.z], x[xIdx.w]);
        acc0 += dy[dIdx.x] * xv;
        acc1 += dy[dIdx.y] * xv;
        acc2 += dy[dIdx.z] * xv;
        acc3 += dy[dIdx.w] * xv;
        dIdx += vec4i(1);
        xIdx += vec4i(p.sw);
      }
    }
  }

  let nco = min(4, p.cout - co0);
  let nci = min(4, p.cin - ci0);
  for (var j = 0; j < nci; j++) {
    let o = ((co0 * p.cin + ci0 + j) * p.kh + ky) * p.kw + kx;
    let s = p.cin * taps;
    dw[o] = acc0[j];
    if (nco > 1) { dw[o + s] = acc1[j]; }
    if (nco > 2) { dw[o + 2 * s] = acc2[j]; }
    if (nco > 3) { dw[o + 3 * s] = acc3[j]; }
  }
}
