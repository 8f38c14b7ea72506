// A seeded xorshift32 generator in [0, 1): the soak's and the fuzz worker's one source of chance.
export function xorshift(seed) {
  let s = (seed >>> 0) || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}
