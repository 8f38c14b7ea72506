// matmul: c = a · b, the device's practical arithmetic ceiling for the benchmarks.
//   a: f32[m, k] row-major; b: f32[k, n] row-major read as vec4 (n % 4 == 0); c: f32[m, n] as vec4.
// Register blocking without workgroup memory (what measured fastest on lavapipe, docs/software-gpu.md): each
// invocation owns 4 rows × one vec4 of columns and streams k, so every b load feeds 16 FMAs.
// Bindings: 0 params {m, n, k, ldb, ldc, aoff, boff, coff}; 1 a; 2 b; 3 c.
// ldb, ldc: row strides of b and c in vec4s; aoff (f32), boff, coff (vec4s): where a[0, 0], b[0, 0]
// and c[0, 0] are in the bound buffers. Unsplit: ldb = ldc = n / 4, offsets 0. Above the binding
// limit a launch covers a block of rows of a and c (m rows, c bound from its block's first row,
// coff adding the block's first column) and a block of n columns of b (a contiguous copy of them
// when b is above the limit, ldb = n / 4); every c element is the same sum in the same order.
// Dispatch: (ceil(n / 4 / WG_X), ceil(m / 4 / WG_Y)), workgroup (WG_X, WG_Y).
override WG_X: u32 = 8;
override WG_Y: u32 = 8;
struct Params { m: u32, n: u32, k: u32, ldb: u32, ldc: u32, aoff: u32, boff: u32, coff: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4f>;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let n4 = p.n / 4u;
  let col = gid.x;
  let row = gid.y * 4u;
  if (col >= n4 || row >= p.m) { return; }
  // Rows past m read row m-1 (a valid address) and are not stored.
  let r0 = p.aoff + row * p.k;
  let r1 = p.aoff + min(row + 1u, p.m - 1u) * p.k;
  let r2 = p.aoff + min(row + 2u, p.m - 1u) * p.k;
  let r3 = p.aoff + min(row + 3u, p.m - 1u) * p.k;
  var c0 = vec4f(0.0);
  var c1 = vec4f(0.0);
  var c2 = vec4f(0.0);
  var c3 = vec4f(0.0);
  for (var kk = 0u; kk < p.k; kk++) {
    let bv = b[p.boff + kk * p.ldb + col];
    c0 += a[r0 + kk] * bv;
    c1 += a[r1 + kk] * bv;
    c2 += a[r2 + kk] * bv;
    c3 += a[r3 + kk] * bv;
  }
  let o = p.coff + row * p.ldc + col;
  c[o] = c0;
  if (row + 1u < p.m) { c[o + p.ldc] = c1; }
  if (row + 2u < p.m) { c[o + 2u * p.ldc] = c2; }
  if (row + 3u < p.m) { c[o + 3u * p.ldc] = c3; }
}
