// cross_entropy, reduction pass: dst[g] = sum of src[g * WG * K .. (g + 1) * WG * K) (vec2 sums
// of (term, valid)). Invoked repeatedly, each pass shrinking the array by WG * K, until one
// workgroup remains; that final pass also writes the loss:
//   loss = sum_term / count if count > 0, else 0   (every pixel ignored: 0, where PyTorch gives NaN).
// Deterministic: invocation l sums its K elements src[base + j * WG + l] in order j = 0..K-1,
// then the workgroup combines the WG partial sums by a fixed binary tree in workgroup memory.
// There are no atomics, so the loss is bit-identical run to run. Counts are exact in f32 up to
// 2^24 valid pixels.
// Bindings: 0 params {n: u32 (elements of src), final: u32 (1 on the last pass), doff: u32 (where
//   dst[0] is in the bound dst: above the binding limit a pass runs in chunks of whole groups, src
//   and dst bound as slices; 0 unsplit)};
//   1 src: vec2<f32>[n]; 2 dst: vec2<f32>[ceil(n / (WG * K))];
//   3 loss: f32[1] (written by the final pass only).
// Dispatch: ceil(n / (WG * K)) workgroups (1-D), WG a power of two.
override WG: u32 = 256;
const K: u32 = 8u;
struct Params { n: u32, final_pass: u32, doff: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec2f>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec2f>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;

var<workgroup> sums: array<vec2f, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) l: u32, @builtin(workgroup_id) wid: vec3u) {
  let base = wid.x * WG * K;
  var acc = vec2f(0.0);
  for (var j = 0u; j < K; j++) {
    let e = base + j * WG + l;
    if (e < p.n) { acc += src[e]; }
  }
  sums[l] = acc;
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (l < stride) { sums[l] += sums[l + stride]; }
  }
  if (l == 0u) {
    let total = sums[0];
    dst[p.doff + wid.x] = total;
    if (p.final_pass != 0u) {
      loss[0] = select(0.0, total.x / total.y, total.y > 0.0);
    }
  }
}
