// Strided 2-D copy (or accumulate) between sub-ranges of two buffers:
//   out[outOff + r·outStride + c] = in[inOff + r·inStride + c]          (accumulate = 0)
//   out[outOff + r·outStride + c] += in[inOff + r·inStride + c]         (accumulate = 1)
// for 0 <= r < rows, 0 <= c < cols. conv2d split inside one image uses it to cut a weight block
// w[co0:co1, ci0:ci1] (rows = output channels, cols = input channels × taps) and its bias, to add
// a partial sum over input (or output) channel blocks into a channel block of y (or dx), and to
// write or add a weight-gradient block into dw. Elements are 4-byte f32; inOff / outOff are element
// offsets into the bound slices (a slice starts at an aligned byte, so its first element may come
// before the data).
// Bindings: 0 params {rows, cols, inOff, inStride, outOff, outStride, accumulate}; 1 in: f32[...];
// 2 out: f32[...] (read-write).
// Dispatch: grid1d(rows·cols, WG), one invocation per element (consecutive invocations touch
// consecutive addresses of one row).
override WG: u32 = 64;
struct Params { rows: u32, cols: u32, inOff: u32, inStride: u32, outOff: u32, outStride: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.rows * p.cols) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  let v = src[p.inOff + r * p.inStride + c];
  let o = p.outOff + r * p.outStride + c;
  if (p.accumulate != 0u) {
    dst[o] = dst[o] + v;
  } else {
    dst[o] = v;
  }
}
