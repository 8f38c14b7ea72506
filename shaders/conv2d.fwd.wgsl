// conv2d forward as an implicit GEMM (M = cout, N = n·oh·ow, K = cin·kh·kw; im2col never stored):
//   y[n, co, oy, ox] = bias[co] + Σ_{ky, kx, ci} w[co, ci, ky, kx] · x[n, ci, iy, ix]
//   iy = oy·sh − ph + ky·dilationH,  ix = ox·sw − pw + kx·dilationW   (taps outside the input read zero padding)
// Dilation is only an address term. Register blocking, no workgroup memory (fastest on lavapipe,
// see docs/software-gpu.md): each invocation owns 16 output channels (4 vec4 groups g) × 4 consecutive output
// columns (j), 64 accumulators; each step of the inner ci loop does 4 aligned vec4 weight loads
// + 4 input loads for 64 FMAs. The loop nest is tap-major (ky, kx, then ci) so a tap's input
// addresses and edge masks are computed once and the inner loop has no bounds tests.
// Tap pruning (exact): rows ky whose iy falls outside the input for this invocation's oy, and
// columns kx whose ix misses the input for all 4 of its columns, are never visited; they would
// only multiply padding zeros. The CPU's global range [kyLo, kyHi) × [kxLo, kxHi) bounds them too.
// Bindings: 0 params (below, i32); 1 x: f32[n, cin, h, w]; 2 wp: vec4f[K + 1, coPad4], the weight
// packed by conv2d.wpack (row (ky·kw + kx)·cin + ci, last row = bias; coPad4 = ceil(cout / 4));
// 3 y: f32[n, cout, oh, ow].
// inOff / outOff: the element where image 0 of the input (x or dy) and of the output starts in its
// bound slice: above the binding limit a launch covers a block of images (both 0 unsplit).
// Dispatch: workgroup (WG); grid1d(n·oh·owBlocks, WG) in x/y over (n, oy, column block) with the
// block fastest (owBlocks = ceil(ow / 4)); z = ceil(cout / 16) output-channel blocks.
override WG: u32 = 8;
struct Params {
  n: i32, cin: i32, h: i32, w: i32,
  cout: i32, oh: i32, ow: i32, kh: i32,
  kw: i32, sh: i32, sw: i32, ph: i32,
  pw: i32, dilationH: i32, dilationW: i32, coPad4: i32,
  kyLo: i32, kyHi: i32, kxLo: i32, kxHi: i32,
  inOff: i32, outOff: i32,
  owBlocks: i32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wp: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// #include "common/div.wgsl"

// Stores channel group cg (4 channels) of one output column; channels past cout are dropped.
fn store(nb: i32, cg: i32, oy: i32, ox: i32, v: vec4f) {
  if (ox >= p.ow) { return; }
  let ohw = p.oh * p.ow;
  let o = p.outOff + ((nb * p.cout + cg * 4) * p.oh + oy) * p.ow + ox;
  let nc = min(4, p.cout - cg * 4);
  for (var c = 0; c < nc; c++) { y[o + c * ohw] = v[c]; }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let blk = i32(gid.x + gid.y * (nwg.x * WG));
  if (blk >= p.n * p.oh * p.owBlocks) { return; }
  let ob = blk % p.owBlocks;
  let oy = (blk / p.owBlocks) % p.oh;
  let nb = blk / (p.owBlocks * p.oh);
  let ox0 = ob * 4;
  let oxLast = min(ox0 + 3, p.ow - 1);
  let hw = p.h * p.w;
  // Channel groups past the last one re-read it (a valid address); store() drops them.
  let cg0 = i32(gid.z) * 4;
  let cg1 = min(cg0 + 1, p.coPad4 - 1);
  let cg2 = min(cg0 + 2, p.coPad4 - 1);
  let cg3 = min(cg0 + 3, p.coPad4 - 1);

  // Exact tap ranges for this tile: rows with 0 <= iy < h, columns where some ix is inside.
  let kyA = max(p.kyLo, ceilDiv(p.ph - oy * p.sh, p.dilationH));
  let kyB = min(p.kyHi, floorDiv(p.h - 1 + p.ph - oy * p.sh, p.dilationH) + 1);
  let kxA = max(p.kxLo, ceilDiv(p.pw - oxLast * p.sw, p.dilationW));
  let kxB = min(p.kxHi, floorDiv(p.w - 1 + p.pw - ox0 * p.sw, p.dilationW) + 1);

  // The bias row initialises the accumulators (zeros when the conv has no bias).
  let bRow = p.kh * p.kw * p.cin * p.coPad4;
  let b0 = wp[bRow + cg0];
  let b1 = wp[bRow + cg1];
  let b2 = wp[bRow + cg2];
  let b3 = wp[bRow + cg3];
  // a<g><j>: output channels 4·(cg0 + g) .. + 3 (vec4 lanes) at column j of the tile.
  var a00 = b0; var a01 = b0; var a02 = b0; var a03 = b0;
  var a10 = b1; var a11 = b1; var a12 = b1; var a13 = b1;
  var a20 = b2; var a21 = b2; var a22 = b2; var a23 = b2;
  var a30 = b3; var a31 = b3; var a32 = b3; var a33 = b3;
  let xImg = p.inOff + nb * p.cin * hw;
  for (var ky = kyA; ky < kyB; ky++) {
    let rowOff = xImg + (oy * p.sh - p.ph + ky * p.dilationH) * p.w;
    for (var kx = kxA; kx < kxB; kx++) {
      let ox = vec4i(ox0, ox0 + 1, ox0 + 2, ox0 + 3);
      let ix = ox * p.sw + (kx * p.dilationW - p.pw);
      let ok = (ix >= vec4i(0)) & (ix < vec4i(p.w)) & (ox < vec4i(p.ow));
      // Masked-off columns load a valid address (the row start) and contribute exactly 0.
      var xi = vec4i(rowOff) + select(vec4i(0), ix, ok);
      var wi = (ky * p.kw + kx) * p.cin * p.coPad4;
      for (var ci = 0; ci < p.cin; ci++) {
        let w0 = wp[wi + cg0];
        let w1 = wp[wi + cg1];
        let w2 = wp[wi + cg2];
        let w3 = wp[wi + cg3];
        let x0 = select(0.0, x[xi.x], ok.x);
        let x1 = select(0.0, x[xi.y], ok.y);
        let x2 = select(0.0, x[xi.z], ok.z);
        let x3 = select(0.0, x[xi.w], ok.w);
        a00 += w0 * x0; a01 += w0 * x1; a02 += w0 * x2; a03 += w0 * x3;
        a10 += w1 * x0; a11 += w1 * x1; a12 += w1 * x2; a13 += w1 * x3;
        a20 += w2 * x0; a21 += w2 * x1; a22 += w2 * x2; a23 += w2 * x3;
        a30 += w3 * x0; a31 += w3 * x1; a32 += w3 * x2; a33 += w3 * x3;
        xi += vec4i(hw);
        wi += p.coPad4;
      }
    }
  }

  store(nb, cg0 + 0, oy, ox0 + 0, a00); store(nb, cg0 + 0, oy, ox0 + 1, a01); store(nb, cg0 + 0, oy, ox0 + 2, a02); store(nb, cg0 + 0, oy, ox0 + 3, a03);
  store(nb, cg0 + 1, oy, ox0 + 0, a10); store(nb, cg0 + 1, oy, ox0 + 1, a11); store(nb, cg0 + 1, oy, ox0 + 2, a12); store(nb, cg0 + 1, oy, ox0 + 3, a13);
  store(nb, cg0 + 2, oy, ox0 + 0, a20); store(nb, cg0 + 2, oy, ox0 + 1, a21); store(nb, cg0 + 2, oy, ox0 + 2, a22); store(nb, cg0 + 2, oy, ox0 + 3, a23);
  store(nb, cg0 + 3, oy, ox0 + 0, a30); store(nb, cg0 + 3, oy, ox0 + 1, a31); store(nb, cg0 + 3, oy, ox0 + 2, a32); store(nb, cg0 + 3, oy, ox0 + 3, a33);
}
