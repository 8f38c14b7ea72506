// copy: out[outOff + i] = in[inOff + i] for i < n, bit for bit (u32 words: f32 and i32 alike).
// Engine.copy uses it where copyBufferToBuffer cannot go: source and destination in one buffer
// (two blocks of one pool segment; their ranges never overlap). inOff / outOff are word offsets
// into the bound slices (a slice starts at an aligned byte, so the first word may come before the
// data).
// Bindings: 0 params {n, inOff, outOff: u32}; 1 in: u32[...]; 2 out: u32[...] (read-write).
// Dispatch: grid1d(n, WG), one invocation per word.
override WG: u32 = 64;
struct Params { n: u32, inOff: u32, outOff: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n) { return; }
  dst[p.outOff + i] = src[p.inOff + i];
}
