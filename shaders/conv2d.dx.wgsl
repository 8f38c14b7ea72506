// conv2d backward-data: the transposed convolution written as a gather (no atomics):
//   dx[n, ci, iy, ix] = Σ_{ky, kx, co} w[co, ci, ky, kx] · dy[n, co, oy, ox]
//   oy = (iy + ph − ky·dilationH) / sh,  ox = (ix + pw − kx·dilationW) / sw   (only where divisible and in range)
// Register blocking, no workgroup memory: each invocation owns 16 input channels (4 vec4 groups g)
// × 4 input columns (j) of one residue class modulo sw (ix = r + sw·q for 4 consecutive q). All
// 4 columns then agree on whether a tap kx divides evenly and their ox are consecutive, so no
// stride-2 work is wasted. Inner loop over co: 4 aligned vec4 weight loads + 4 dy loads, 64 FMAs.
// Tap pruning as in conv2d.fwd: taps that cannot reach dy for this tile are never visited.
// Bindings: 0 params (below, i32); 1 dy: f32[n, cout, oh, ow]; 2 wq: vec4f[kh·kw·cout, ciPad4],
// the weight packed by conv2d.wpackdx (row (ky·kw + kx)·cout + co; ciPad4 = ceil(cin / 4));
// 3 dx: f32[n, cin, h, w].
// inOff / outOff: the element where image 0 of the input (x or dy) and of the output starts in its
// bound slice: above the binding limit a launch covers a block of images (both 0 unsplit).
// Dispatch: workgroup (WG); grid1d(n·h·sw·qBlocks, WG) in x/y over (n, iy, r, q block) with the
// q block fastest, qBlocks = ceil(ceil(w / sw) / 4); z = ceil(cin / 16) input-channel blocks.
override WG: u32 = 8;
struct Params {
  n: i32, cin: i32, h: i32, w: i32,
  cout: i32, oh: i32, ow: i32, kh: i32,
  kw: i32, sh: i32, sw: i32, ph: i32,
  pw: i32, dilationH: i32, dilationW: i32, ciPad4: i32,
  kyLo: i32, kyHi: i32, kxLo: i32, kxHi: i32,
  inOff: i32, outOff: i32,
  qBlocks: i32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> wq: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

// #include "common/div.wgsl"

// Stores channel group cg (4 channels) of one input column; columns >= w and channels >= cin
// are dropped.
fn store(nb: i32, cg: i32, iy: i32, ix: i32, v: vec4f) {
  if (ix >= p.w) { return; }
  let hw = p.h * p.w;
  let o = p.outOff + ((nb * p.cin + cg * 4) * p.h + iy) * p.w + ix;
  let nc = min(4, p.cin - cg * 4);
  for (var c = 0; c < nc; c++) { dx[o + c * hw] = v[c]; }
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let blk = i32(gid.x + gid.y * (nwg.x * WG));
  if (blk >= p.n * p.h * p.sw * p.qBlocks) { return; }
  let qb = blk % p.qBlocks;
  let r = (blk / p.qBlocks) % p.sw;
  let iy = (blk / (p.qBlocks * p.sw)) % p.h;
  let nb = blk / (p.qBlocks * p.sw * p.h);
  let q0 = qb * 4;
  let q = vec4i(q0, q0 + 1, q0 + 2, q0 + 3);
  let ix = q * p.sw + r;
  let inW = ix < vec4i(p.w);
  let ohw = p.oh * p.ow;
  // Channel groups past the last one re-read it (a valid address); store() drops them.
  let cg0 = i32(gid.z) * 4;
  let cg1 = min(cg0 + 1, p.ciPad4 - 1);
  let cg2 = min(cg0 + 2, p.ciPad4 - 1);
  let cg3 = min(cg0 + 3, p.ciPad4 - 1);

  // Exact tap ranges: 0 <= oy < oh for this iy, and some ox in range for the 4 columns.
  let kyA = max(p.kyLo, ceilDiv(iy + p.ph - (p.oh - 1) * p.sh, p.dilationH));
  let kyB = min(p.kyHi, floorDiv(iy + p.ph, p.dilationH) + 1);
  let kxA = max(p.kxLo, ceilDiv(r + p.pw - (p.ow - 1 - q0) * p.sw, p.dilationW));
  let kxB = min(p.kxHi, floorDiv(r + p.pw + (q0 + 3) * p.sw, p.dilationW) + 1);

  // a<g><j>: input channels 4·(cg0 + g) .. + 3 (vec4 lanes) at column j of the tile.
  var a00 = vec4f(0.0); var a01 = vec4f(0.0); var a02 = vec4f(0.0); var a03 = vec4f(0.0);
  var a10 = vec4f(0.0); var a11 = vec4f(0.0); var a12 = vec4f(0.0); var a13 = vec4f(0.0);
  var a20 = vec4f(0.0); var a21 = vec4f(0.0); var a22 = vec4f(0.0); var a23 = vec4f(0.0);
  var a30 = vec4f(0.0); var a31 = vec4f(0.0); var a32 = vec4f(0.0); var a33 = vec4f(0.0);
  let dyImg = p.inOff + nb * p.cout * ohw;
  for (var ky = kyA; ky < kyB; ky++) {
    let ty = iy + p.ph - ky * p.dilationH;
    if (ty % p.sh != 0) { continue; }
    let rowOff = dyImg + (ty / p.sh) * p.ow;
    for (var kx = kxA; kx < kxB; kx++) {
      let tx = r + p.pw - kx * p.dilationW;
      // One divisibility test serves all 4 columns: they share the residue r.
      if (tx % p.sw != 0) { continue; }
      let ox = q + tx / p.sw;
      let ok = (ox >= vec4i(0)) & (ox < vec4i(p.ow)) & inW;
      // Masked-off columns load a valid address (the row start) and contribute exactly 0.
      var di = vec4i(rowOff) + select(vec4i(0), ox, ok);
      var wi = (ky * p.kw + kx) * p.cout * p.ciPad4;
      for (var co = 0; co < p.cout; co++) {
        let w0 = wq[wi + cg0];
        let w1 = wq[wi + cg1];
        let w2 = wq[wi + cg2];
        let w3 = wq[wi + cg3];
        let d0 = select(0.0, dy[di.x], ok.x);
        let d1 = select(0.0, dy[di.y], ok.y);
        let d2 = select(0.0, dy[di.z], ok.z);
        let d3 = select(0.0, dy[di.w], ok.w);
        a00 += w0 * d0; a01 += w0 * d1; a02 += w0 * d2; a03 += w0 * d3;
        a10 += w1 * d0; a11 += w1 * d1; a12 += w1 * d2; a13 += w1 * d3;
        a20 += w2 * d0; a21 += w2 * d1; a22 += w2 * d2; a23 += w2 * d3;
        a30 += w3 * d0; a31 += w3 * d1; a32 += w3 * d2; a33 += w3 * d3;
        di += vec4i(ohw);
        wi += p.ciPad4;
      }
    }
  }

  store(nb, cg0 + 0, iy, ix.x, a00); store(nb, cg0 + 0, iy, ix.y, a01); store(nb, cg0 + 0, iy, ix.z, a02); store(nb, cg0 + 0, iy, ix.w, a03);
  store(nb, cg0 + 1, iy, ix.x, a10); store(nb, cg0 + 1, iy, ix.y, a11); store(nb, cg0 + 1, iy, ix.z, a12); store(nb, cg0 + 1, iy, ix.w, a13);
  store(nb, cg0 + 2, iy, ix.x, a20); store(nb, cg0 + 2, iy, ix.y, a21); store(nb, cg0 + 2, iy, ix.z, a22); store(nb, cg0 + 2, iy, ix.w, a23);
  store(nb, cg0 + 3, iy, ix.x, a30); store(nb, cg0 + 3, iy, ix.y, a31); store(nb, cg0 + 3, iy, ix.z, a32); store(nb, cg0 + 3, iy, ix.w, a33);
}
