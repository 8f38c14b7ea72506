// dropout, forward and backward: out[i] = keep(i) ? in[i] * scale : 0, scale = 1 / (1 - p).
// keep(i) = hash(seed, i) >= threshold with threshold = round(p * 2^32), so P(drop) = p.
// The mask is a pure function of (seed, element index): the backward pass runs this same kernel
// on dy with the same seed and regenerates the forward mask exactly, so no mask is stored.
// hash: xxHash32 of the one 32-bit word i, keyed by a PCG hash of the seed (the pre-hash keeps
// nearby seeds, e.g. consecutive training steps, from giving index-shifted copies of one mask).
// Bindings: 0 params {n4: u32, seed: u32, threshold: u32, scale: f32, base4: u32};
//           1 src: vec4<f32>[n4] (x forward, dy backward); 2 dst: vec4<f32>[n4] (y or dx).
// Flat over any shape, bound as ceil(size / 4) vec4s (the padding lanes compute but are unused).
// Dispatch: grid1d(n4, WG), one invocation per 4 consecutive elements 4i .. 4i+3. A tensor above
// the binding limit runs as slices: base4 is the slice's first vec4 in the whole tensor (the hash
// takes the element's index in the whole tensor, so the mask does not depend on the split).
override WG: u32 = 64;
struct Params { n4: u32, seed: u32, threshold: u32, scale: f32, base4: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4f>;

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

// xxHash32 of a 4-byte input: seed + PRIME5 + len, one lane round, then the avalanche.
fn xxh32(key: u32, word: u32) -> u32 {
  var h = key + 374761393u + 4u;
  h = h + word * 3266489917u;
  h = ((h << 17u) | (h >> 15u)) * 668265263u;
  h = (h ^ (h >> 15u)) * 2246822519u;
  h = (h ^ (h >> 13u)) * 3266489917u;
  return h ^ (h >> 16u);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n4) { return; }
  let key = pcg(p.seed);
  let e = (i + p.base4) * 4u;
  let h = vec4u(xxh32(key, e), xxh32(key, e + 1u), xxh32(key, e + 2u), xxh32(key, e + 3u));
  dst[i] = select(vec4f(0.0), src[i] * p.scale, h >= vec4u(p.threshold));
}
