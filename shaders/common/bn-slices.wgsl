// Slices of batch norm's per-channel reductions (batchnorm.stats, batchnorm.dsum), pasted in by
// `// #include` after the including shader's Params `p` (fields q, chunk, m, hw, c, n0, c0, p0, xoff).

// Values [m0, m1) of a channel in slice s: `chunk` values from s·chunk (q = 0), or piece s % q of
// image s / q's plane (q > 0: every slice inside one plane).
fn bounds(s: u32) -> vec2u {
  if (p.q == 0u) { return vec2u(s * p.chunk, min(p.m, (s + 1u) * p.chunk)); }
  let ni = s / p.q;
  let m0 = ni * p.hw + (s - ni * p.q) * p.chunk;
  return vec2u(m0, min((ni + 1u) * p.hw, m0 + p.chunk));
}

// Index in the bound x (and dy) of value sp of plane (ni, ci).
fn at(ni: u32, ci: u32, sp: u32) -> u32 {
  return p.xoff + ((ni - p.n0) * p.c + (ci - p.c0)) * p.hw + (sp - p.p0);
}
