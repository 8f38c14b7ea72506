// SGD update, in place, exactly as torch.optim.SGD (maximize = false):
//   d = grad + weightDecay * param
//   momentum entry only: buf = d on the parameter's first step (first = 1), else
//                        buf = momentum * buf + (1 - dampening) * d;
//                        d = nesterov ? d + momentum * buf : buf
//   param = param - lr * d
// Two entry points so that plain SGD binds no momentum buffer (layout 'auto' only includes the
// bindings an entry point uses).
// Bindings: 0 params {n4: u32, lr, momentum, dampening, weightDecay: f32, nesterov: u32, first: u32};
//   1 grad: vec4<f32>[n4]; 2 weight: vec4<f32>[n4] (read-write); 3 buf: vec4<f32>[n4] (read-write,
//   `momentum` entry only). Flat over the parameter's elements, bound as ceil(size / 4) vec4s:
//   the padding lanes of the last vec4 compute garbage into buffer padding that nothing reads.
// Dispatch: grid1d(n4, WG), one invocation per 4 elements.
override WG: u32 = 64;
struct Params { n4: u32, lr: f32, momentum: f32, dampening: f32, weightDecay: f32, nesterov: u32, first: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> weight: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> buf: array<vec4f>;

@compute @workgroup_size(WG)
fn plain(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n4) { return; }
  let w = weight[i];
  let d = grad[i] + p.weightDecay * w;
  weight[i] = w - p.lr * d;
}

@compute @workgroup_size(WG)
fn momentum(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * (nwg.x * WG);
  if (i >= p.n4) { return; }
  let w = weight[i];
  var d = grad[i] + p.weightDecay * w;
  var b = d;
  if (p.first == 0u) {
    b = p.momentum * buf[i] + (1.0 - p.dampening) * d;
  }
  buf[i] = b;
  if (p.nesterov != 0u) {
    d = d + p.momentum * b;
  } else {
    d = b;
  }
  weight[i] = w - p.lr * d;
}
