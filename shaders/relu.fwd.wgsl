// relu forward: y[i] = max(x[i], 0).
// Bindings: 0 params {n4: u32}; 1 x: vec4<f32>[n4]; 2 y: vec4<f32>[n4] (flat, any shape).
// The tensors are bound as ceil(size / 4) vec4s: pool buffers are 256-byte multiples, so the
// last vec4 may run into the buffer's padding, which is read and written but never observed.
// Dispatch: grid1d(n4, WG), one invocation per 4 elements (one wide load instead of four
// bounds-clamped scalar loads).
override WG: u32 = 64;
struct Params { n4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> y: array<vec4f>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n4) { return; }
  y[i] = max(x[i], vec4f(0.0));
}
