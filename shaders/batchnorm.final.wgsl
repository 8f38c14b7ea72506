// batchnorm.final: per-channel batch statistics from the slices of batchnorm.stats, pass 2 of
// training-mode batch norm; entry `running` also updates the running statistics in place.
// With slice s = (ctr_s, s1_s, s2_s) over k_s values and ctr = ctr_0 (slice 0's centre):
//   mean = ctr + lo,  lo = Σ_s (k_s·(ctr_s − ctr) + s1_s) / M
//   var  = Σ_s [ s2_s − s1_s²/k_s + k_s·(ctr_s + s1_s/k_s − ctr − lo)² ] / M      (biased)
// (Chan et al.'s pairwise combination, written around ctr so every term is a small difference.)
// The mean is kept as two floats (hi = ctr, lo): one f32 near 1000 is only good to ~6e-5, which
// is 0.6% of a 0.01 standard deviation; (x − hi) − lo is exact to f32 precision.
//   invstd = 1 / sqrt(var + eps)
// `running`: rm ← (1 − momentum)·rm + momentum·mean;
//            rv ← (1 − momentum)·rv + momentum·var·M/(M − 1), left unchanged when M == 1
//            (the unbiased variance of one value is undefined; PyTorch raises there).
// Bindings: 0 params {c, m, hw, chunk, s, q: u32, eps, momentum: f32}; 1 part: f32[c, s, 3];
//           2 mean: f32[2, c] (row 0 hi, row 1 lo); 3 invstd: f32[c];
//           `running` only: 4 rm: f32[c], 5 rv: f32[c] (read-write).
// Dispatch: grid1d(c, WG), one invocation per channel; slices summed in order (deterministic).
override WG: u32 = 64;
struct Params { c: u32, m: u32, hw: u32, chunk: u32, s: u32, q: u32, eps: f32, momentum: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;
@group(0) @binding(2) var<storage, read_write> mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> invstd: array<f32>;
@group(0) @binding(4) var<storage, read_write> rm: array<f32>;
@group(0) @binding(5) var<storage, read_write> rv: array<f32>;

// Values in slice s (batchnorm.stats's slicing: uniform chunks when q = 0, else q pieces per plane).
fn count(s: u32) -> f32 {
  if (p.q == 0u) { return f32(min(p.m, (s + 1u) * p.chunk) - s * p.chunk); }
  let k = s % p.q;
  return f32(min(p.hw, (k + 1u) * p.chunk) - k * p.chunk);
}

// Writes mean (hi, lo) and invstd of channel ci; returns (mean as one f32, biased variance).
fn finish(ci: u32) -> vec2f {
  let base = ci * p.s * 3u;
  let ctr = part[base];
  var t = 0.0;
  for (var s = 0u; s < p.s; s = s + 1u) {
    let o = base + s * 3u;
    t = t + count(s) * (part[o] - ctr) + part[o + 1u];
  }
  let lo = t / f32(p.m);
  var m2 = 0.0;
  for (var s = 0u; s < p.s; s = s + 1u) {
    let o = base + s * 3u;
    let k = count(s);
    let s1 = part[o + 1u];
    let dm = (part[o] - ctr) + s1 / k - lo;
    m2 = m2 + (part[o + 2u] - s1 * s1 / k) + k * dm * dm;
  }
  // Rounding can push a zero variance slightly below 0.
  let v = max(m2, 0.0) / f32(p.m);
  mean[ci] = ctr;
  mean[p.c + ci] = lo;
  invstd[ci] = 1.0 / sqrt(v + p.eps);
  return vec2f(ctr + lo, v);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ci = gid.x + gid.y * (nwg.x * WG);
  if (ci >= p.c) { return; }
  _ = finish(ci);
}

@compute @workgroup_size(WG)
fn running(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let ci = gid.x + gid.y * (nwg.x * WG);
  if (ci >= p.c) { return; }
  let st = finish(ci);
  rm[ci] = (1.0 - p.momentum) * rm[ci] + p.momentum * st.x;
  if (p.m > 1u) {
    rv[ci] = (1.0 - p.momentum) * rv[ci] + p.momentum * st.y * (f32(p.m) / f32(p.m - 1u));
  }
}
