// Floor / ceil of a / b for b > 0 (WGSL's i32 division truncates toward zero).
fn floorDiv(a: i32, b: i32) -> i32 {
  let q = a / b;
  return select(q, q - 1, (a % b != 0) && (a < 0));
}
fn ceilDiv(a: i32, b: i32) -> i32 { return -floorDiv(-a, b); }
