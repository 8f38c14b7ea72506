// conv2d forward as a workgroup-memory tiled implicit GEMM (the variant for real GPUs; the
// register-blocked conv2d.fwd.wgsl is the one for lavapipe; src/ops/conv2d/autotune.ts picks per adapter):
//   y[n, co, oy, ox] = bias[co] + Σ_{ky, kx, ci} w[co, ci, ky, kx] · x[n, ci, iy, ix]
//   iy = oy·sh − ph + ky·dilationH,  ix = ox·sw − pw + kx·dilationW   (taps outside the input read zero padding)
// GEMM view: M = cout, N = n·oh·ow (output pixels), K' = (kyHi − kyLo)·(kxHi − kxLo)·cin, the
// taps that can touch the input (the CPU's exact global tap pruning; no per-tile pruning here).
// A workgroup of 16 × 16 invocations owns a tile of 64 output channels × 64 pixels and walks K' in
// chunks of 16: each invocation loads one vec4 of packed weights (4 channels of one k) and the 4
// input values of one k for its 4 pixels into workgroup memory, a barrier, then every invocation
// accumulates its 4 channels × 4 pixels (4 vec4 accumulators) from the shared tiles, a barrier.
// The k that an invocation loads is decoded once per chunk (k → ky, kx, ci) and its 4 pixels'
// addresses once per dispatch. Out-of-range k, channels and pixels load zeros and are not stored.
// Bindings: 0 params (below, i32); 1 x: f32[n, cin, h, w]; 2 wp: vec4f[K + 1, coPad4], the weight
// packed by conv2d.wpack (row (ky·kw + kx)·cin + ci, last row K = kh·kw·cin = bias; coPad4 =
// ceil(cout / 4)); 3 y: f32[n, cout, oh, ow].
// inOff / outOff: the element where image 0 of the input (x or dy) and of the output starts in its
// bound slice: above the binding limit a launch covers a block of images (both 0 unsplit).
// Dispatch: workgroup (16, 16); grid1d(ceil(n·oh·ow / 64), 1) in x/y over pixel tiles;
// z = ceil(cout / 64) output-channel tiles.
const TK: i32 = 16;
struct Params {
  n: i32, cin: i32, h: i32, w: i32,
  cout: i32, oh: i32, ow: i32, kh: i32,
  kw: i32, sh: i32, sw: i32, ph: i32,
  pw: i32, dilationH: i32, dilationW: i32, coPad4: i32,
  kyLo: i32, kyHi: i32, kxLo: i32, kxHi: i32,
  inOff: i32, outOff: i32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wp: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// [k][channel group]: 4 output channels of one k; [k][pixel group]: 4 pixels of one k.
var<workgroup> As: array<vec4f, 256>;
var<workgroup> Bs: array<vec4f, 256>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let tx = i32(lid.x); // loads: channel group / pixel group; compute: pixel group
  let ty = i32(lid.y); // loads: k within the chunk; compute: channel group
  let tile = i32(wid.x + wid.y * nwg.x);
  let npix = p.n * p.oh * p.ow;
  let ohw = p.oh * p.ow;
  let hw = p.h * p.w;
  let pix0 = tile * 64 + tx * 4;
  let cgLoad = i32(wid.z) * 16 + tx;

  // This invocation's 4 pixels: image offset, top-left input corner, validity.
  var img = vec4i(0);
  var iy0 = vec4i(0);
  var ix0 = vec4i(0);
  var pok = vec4<bool>(false);
  for (var j = 0; j < 4; j++) {
    let pix = pix0 + j;
    if (pix < npix) {
      let ox = pix % p.ow;
      let oy = (pix / p.ow) % p.oh;
      let nb = pix / ohw;
      img[j] = p.inOff + nb * p.cin * hw;
      iy0[j] = oy * p.sh - p.ph;
      ix0[j] = ox * p.sw - p.pw;
      pok[j] = true;
    }
  }

  let nky = p.kyHi - p.kyLo;
  let nkx = p.kxHi - p.kxLo;
  let kTotal = nky * nkx * p.cin;
  // The bias row initialises the accumulators (zeros without a bias), as in conv2d.fwd; groups
  // past the last one re-read it (a valid address) and are not stored.
  let cg = i32(wid.z) * 16 + ty;
  let bias = wp[p.kh * p.kw * p.cin * p.coPad4 + min(cg, p.coPad4 - 1)];
  var acc0 = bias;
  var acc1 = bias;
  var acc2 = bias;
  var acc3 = bias;
  for (var k0 = 0; k0 < kTotal; k0 += TK) {
    let k = k0 + ty;
    var a = vec4f(0.0);
    var b = vec4f(0.0);
    if (k < kTotal) {
      let ci = k % p.cin;
      let tap = k / p.cin;
      let ky = p.kyLo + tap / nkx;
      let kx = p.kxLo + tap % nkx;
      if (cgLoad < p.coPad4) {
        a = wp[((ky * p.kw + kx) * p.cin + ci) * p.coPad4 + cgLoad];
      }
      let iy = iy0 + vec4i(ky * p.dilationH);
      let ix = ix0 + vec4i(kx * p.dilationW);
      let ok = pok & (iy >= vec4i(0)) & (iy < vec4i(p.h)) & (ix >= vec4i(0)) & (ix < vec4i(p.w));
      // Masked-off entries read index 0 (a valid address) and contribute exactly 0.
      let xi = select(vec4i(0), img + vec4i(ci * hw) + iy * p.w + ix, ok);
      b = vec4f(select(0.0, x[xi.x], ok.x), select(0.0, x[xi.y], ok.y), select(0.0, x[xi.z], ok.z), select(0.0, x[xi.w], ok.w));
    }
    As[ty * 16 + tx] = a;
    Bs[ty * 16 + tx] = b;
    workgroupBarrier();
    for (var kk = 0; kk < TK; kk++) {
      let av = As[kk * 16 + ty];
      let bv = Bs[kk * 16 + tx];
      acc0 += av * bv.x;
      acc1 += av * bv.y;
      acc2 += av * bv.z;
      acc3 += av * bv.w;
    }
    workgroupBarrier();
  }

  // Store channels 4·cg .. + 3 (those below cout) for the 4 pixels.
  if (cg >= p.coPad4) { return; }
  let nc = min(4, p.cout - cg * 4);
  for (var j = 0; j < 4; j++) {
    let pix = pix0 + j;
    if (pix >= npix) { continue; }
    var v = acc0;
    if (j == 1) { v = acc1; } else if (j == 2) { v = acc2; } else if (j == 3) { v = acc3; }
    let nb = pix / ohw;
    let o = p.outOff + (nb * p.cout + cg * 4) * ohw + pix % ohw;
    for (var c = 0; c < nc; c++) { y[o + c * ohw] = v[c]; }
  }
}
