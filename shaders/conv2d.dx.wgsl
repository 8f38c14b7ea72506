// conv2d backward-data: the transposed convolution written as a gather (no atomics):
//   dx[n, ci, iy, ix] = Σ_{ky, kx, co} w[co, ci, ky, kx] · dy[n, co, oy, ox]
//   oy = (iy + ph − ky·dh) / sh,  ox = (ix + pw − kx·dw) / sw   (only where divisible and in range)
// Register blocking, no workgroup memory: each invocation owns 4 input channels × 4 input columns
// of one residue class modulo sw (ix = r + sw·q for 4 consecutive q). All 4 columns then agree on
// whether a tap kx divides evenly, and their ox are consecutive, so no stride-2 work is wasted.
// Inner loop over co: one aligned vec4 weight load + 4 dy loads for 16 FMAs.
// Tap pruning as in conv2d.fwd: taps that cannot reach dy for this tile are never visited.
// Bindings: 0 params (below, i32); 1 dy: f32[n, cout, oh, ow]; 2 wq: vec4f[kh·kw·cout, ciPad/4],
// the weight packed by conv2d.wpackdx (row (ky·kw + kx)·cout + co); 3 dx: f32[n, cin, h, w].
// Dispatch: workgroup (WG); grid1d(n·h·sw·qBlocks, WG) in x/y over (n, iy, r, q block) with the
// q block fastest, qBlocks = ceil(ceil(w / sw) / 4); z = ceil(cin / 4) input-channel blocks.
override WG: u32 = 8;
struct Params {
  n: i32, cin: i32, h: i32, w: i32,
  cout: i32, oh: i32, ow: i32, kh: i32,
  kw: i32, sh: i32, sw: i32, ph: i32,
  pw: i32, dh: i32, dw: i32, ciPad4: i32,
  kyLo: i32, kyHi: i32, kxLo: i32, kxHi: i32,
  qBlocks: i32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wq: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// Floor / ceil of a / b for b > 0 (WGSL's i32 division truncates toward zero).
fn floorDiv(a: i32, b: i32) -> i32 {
  let q = a / b;
  return select(q, q - 1, (a % b != 0) && (a < 0));
}
fn ceilDiv(a: i32, b: i32) -> i32 { return -floorDiv(-a, b); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let blk = i32(gid.x + gid.y * (nwg.x * WG));
  if (blk >= p.n * p.h * p.sw * p.qBlocks) { return; }
  let ci4 = i32(gid.z);
  let qb = blk % p.qBlocks;
  let r = (blk / p.qBlocks) % p.sw;
  let iy = (blk / (p.qBlocks * p.sw)) % p.h;
  let nb = blk / (p.qBlocks * p.sw * p.h);
  let q0 = qb * 4;
  let q = vec4i(q0, q0 + 1, q0 + 2, q0 + 3);
  let ix = q * p.sw + r;
  let inW = ix < vec4i(p.w);
  let ohw = p.oh * p.ow;

  // Exact tap ranges: 0 <= oy < oh for this iy, and some ox in range for the 4 columns.
  let kyA = max(p.kyLo, ceilDiv(iy + p.ph - (p.oh - 1) * p.sh, p.dh));
  let kyB = min(p.kyHi, floorDiv(iy + p.ph, p.dh) + 1);
  let kxA = max(p.kxLo, ceilDiv(r + p.pw - (p.ow - 1 - q0) * p.sw, p.dw));
  let kxB = min(p.kxHi, floorDiv(r + p.pw + (q0 + 3) * p.sw, p.dw) + 1);

  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var acc2 = vec4f(0.0);
  var acc3 = vec4f(0.0);
  let dyImg = nb * p.cout * ohw;
  for (var ky = kyA; ky < kyB; ky++) {
    let ty = iy + p.ph - ky * p.dh;
    if (ty % p.sh != 0) { continue; }
    let rowOff = dyImg + (ty / p.sh) * p.ow;
    for (var kx = kxA; kx < kxB; kx++) {
      let tx = r + p.pw - kx * p.dw;
      // One divisibility test serves all 4 columns: they share the residue r.
      if (tx % p.sw != 0) { continue; }
      let ox = q + tx / p.sw;
      let ok = (ox >= vec4i(0)) & (ox < vec4i(p.ow)) & inW;
      // Masked-off columns load a valid address (the row start) and contribute exactly 0.
      var di = vec4i(rowOff) + select(vec4i(0), ox, ok);
      var wi = (ky * p.kw + kx) * p.cout * p.ciPad4 + ci4;
      for (var co = 0; co < p.cout; co++) {
        let wv = wq[wi];
        acc0 += wv * select(0.0, dy[di.x], ok.x);
        acc1 += wv * select(0.0, dy[di.y], ok.y);
        acc2 += wv * select(0.0, dy[di.z], ok.z);
        acc3 += wv * select(0.0, dy[di.w], ok.w);
        di += vec4i(ohw);
        wi += p.ciPad4;
      }
    }
  }

  let hw = p.h * p.w;
  let nci = min(4, p.cin - ci4 * 4);
  // acc_j holds column ix_j for the 4 channels ci4·4 + c (vec4 lane c).
  for (var c = 0; c < nci; c++) {
    let o = (nb * p.cin + ci4 * 4 + c) * hw + iy * p.w;
    if (inW.x) { dx[o + ix.x] = acc0[c]; }
    if (inW.y) { dx[o + ix.y] = acc1[c]; }
    if (inW.z) { dx[o + ix.z] = acc2[c]; }
    if (inW.w) { dx[o + ix.w] = acc3[c]; }
  }
}
