// conv2d forward as an implicit GEMM (M = cout, N = n·oh·ow, K = cin·kh·kw; im2col never stored):
//   y[n, co, oy, ox] = bias[co] + Σ_{ky, kx, ci} w[co, ci, ky, kx] · x[n, ci, iy, ix]
//   iy = oy·sh − ph + ky·dh,  ix = ox·sw − pw + kx·dw   (taps outside the input read zero padding)
// Dilation is only an address term. Register blocking, no workgroup memory: each invocation owns
// a 4 output channels × 4 consecutive output columns tile (16 accumulators), so each step of the
// inner ci loop does one aligned vec4 weight load + 4 input loads for 16 FMAs.
// Tap pruning: the rows ky whose iy falls outside the input for this invocation's oy, and the
// columns kx whose ix misses the input for all 4 of its ox, are never visited (exact: they only
// multiply padding zeros); the CPU's global range [kyLo, kyHi) × [kxLo, kxHi) bounds them too.
// Bindings: 0 params (below, i32); 1 x: f32[n, cin, h, w]; 2 wp: vec4f[K + 1, coPad/4], the
// weight packed by conv2d.wpack (row k = (ky·kw + kx)·cin + ci, last row = bias);
// 3 y: f32[n, cout, oh, ow].
// Dispatch: workgroup (WG); grid1d(n·oh·owBlocks, WG) in x/y (owBlocks = ceil(ow / 4)) over
// (n, oy, column block) with the block fastest; z = ceil(cout / 4) output-channel blocks.
override WG: u32 = 8;
struct Params {
  n: i32, cin: i32, h: i32, w: i32,
  cout: i32, oh: i32, ow: i32, kh: i32,
  kw: i32, sh: i32, sw: i32, ph: i32,
  pw: i32, dh: i32, dw: i32, coPad4: i32,
  kyLo: i32, kyHi: i32, kxLo: i32, kxHi: i32,
  owBlocks: i32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wp: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// Floor / ceil of a / b for b > 0 (WGSL's i32 division truncates toward zero).
fn floorDiv(a: i32, b: i32) -> i32 {
  let q = a / b;
  return select(q, q - 1, (a % b != 0) && (a < 0));
}
fn ceilDiv(a: i32, b: i32) -> i32 { return -floorDiv(-a, b); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let blk = i32(gid.x + gid.y * (nwg.x * WG));
  if (blk >= p.n * p.oh * p.owBlocks) { return; }
  let co4 = i32(gid.z);
  let ob = blk % p.owBlocks;
  let oy = (blk / p.owBlocks) % p.oh;
  let nb = blk / (p.owBlocks * p.oh);
  let ox0 = ob * 4;
  let oxLast = min(ox0 + 3, p.ow - 1);
  let hw = p.h * p.w;

  // Exact tap ranges for this tile: rows with 0 <= iy < h, columns where some ix is inside.
  let kyA = max(p.kyLo, ceilDiv(p.ph - oy * p.sh, p.dh));
  let kyB = min(p.kyHi, floorDiv(p.h - 1 + p.ph - oy * p.sh, p.dh) + 1);
  let kxA = max(p.kxLo, ceilDiv(p.pw - oxLast * p.sw, p.dw));
  let kxB = min(p.kxHi, floorDiv(p.w - 1 + p.pw - ox0 * p.sw, p.dw) + 1);

  // The bias row initialises the accumulators (zeros when the conv has no bias).
  let b = wp[p.kh * p.kw * p.cin * p.coPad4 + co4];
  var acc0 = b;
  var acc1 = b;
  var acc2 = b;
  var acc3 = b;
  let xImg = nb * p.cin * hw;
  for (var ky = kyA; ky < kyB; ky++) {
    let rowOff = xImg + (oy * p.sh - p.ph + ky * p.dh) * p.w;
    for (var kx = kxA; kx < kxB; kx++) {
      let ix = vec4i(ox0, ox0 + 1, ox0 + 2, ox0 + 3) * p.sw + (kx * p.dw - p.pw);
      let ok = (ix >= vec4i(0)) & (ix < vec4i(p.w)) & (vec4i(ox0, ox0 + 1, ox0 + 2, ox0 + 3) < vec4i(p.ow));
      // Masked-off columns load a valid address (the row start) and contribute exactly 0.
      var xi = vec4i(rowOff) + select(vec4i(0), ix, ok);
      var wi = (ky * p.kw + kx) * p.cin * p.coPad4 + co4;
      for (var ci = 0; ci < p.cin; ci++) {
        let wv = wp[wi];
        acc0 += wv * select(0.0, x[xi.x], ok.x);
        acc1 += wv * select(0.0, x[xi.y], ok.y);
        acc2 += wv * select(0.0, x[xi.z], ok.z);
        acc3 += wv * select(0.0, x[xi.w], ok.w);
        xi += vec4i(hw);
        wi += p.coPad4;
      }
    }
  }

  let ohw = p.oh * p.ow;
  let base = (nb * p.cout + co4 * 4) * ohw + oy * p.ow + ox0;
  let nco = min(4, p.cout - co4 * 4);
  let nox = oxLast - ox0 + 1;
  // acc_j holds column ox0 + j for the 4 channels co4·4 + c (vec4 lane c).
  for (var c = 0; c < nco; c++) {
    let o = base + c * ohw;
    y[o] = acc0[c];
    if (nox > 1) { y[o + 1] = acc1[c]; }
    if (nox > 2) { y[o + 2] = acc2[c]; }
    if (nox > 3) { y[o + 3] = acc3[c]; }
  }
}
