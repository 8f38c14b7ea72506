// concat.fwd: copies one input of a channel concatenation into its slice of the output:
//   y[b, off + ch, s] = x[b, ch, s]   for b < n, ch < cx, s < h * w,
// that is y[b * chw_y + off + j] = x[b * chw_x + j] for j < chw_x, with chw_x = cx * h * w,
// chw_y = cy * h * w and off = (channel offset) * h * w: one contiguous block per image.
// Bindings: 0 params {chw_x, chw_y, off, xoff: u32} (xoff: below); 1 x: f32[n, cx, h, w];
// 2 y: f32[n, cy, h, w].
// Entry `main` counts in floats; `main4` in vec4s (all four params divided by 4), used when h * w
// is a multiple of 4: four times fewer bounds-checked loads and stores.
// Dispatch: [gx, n]: image b = gid.y, and the gx * WG invocations of that row stride over j
// (gx = min(ceil(chw_x / WG), 4096)). No integer division per element (slow on CPU "GPUs").
// Above the binding limit the images run in blocks: x and y are bound as slices; xoff is where
// image 0 of x starts in its slice, and off includes where image 0 of y starts in its (0 unsplit).
// When one image of y is above the limit, a launch copies a chunk of one image's block (n = 1:
// chw_x = the chunk's length, chw_y unused).
override WG: u32 = 64;
struct Params { chw_x: u32, chw_y: u32, off: u32, xoff: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x4: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4f>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let src = p.xoff + gid.y * p.chw_x;
  let dst = gid.y * p.chw_y + p.off;
  for (var j = gid.x; j < p.chw_x; j += nwg.x * WG) {
    y[dst + j] = x[src + j];
  }
}

@compute @workgroup_size(WG)
fn main4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let src = p.xoff + gid.y * p.chw_x;
  let dst = gid.y * p.chw_y + p.off;
  for (var j = gid.x; j < p.chw_x; j += nwg.x * WG) {
    y4[dst + j] = x4[src + j];
  }
}
