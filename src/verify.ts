// Conformance with PyTorch: runs one fixture (a safetensors file written by
// tools/gen_fixtures.py) forward and backward on the GPU and compares every tensor.
// The fixture format is documented in README.md ("Conformance fixtures"). No file system here:
// the CLI and the tests read the bytes and call `verifyFixture`.

import { parseSafetensors, toFloat32, toInt32, type SafeTensors } from './io/safetensors.js';
import { Tensor, tensor, parameter, fmtShape } from './tensor.js';
import { tidy } from './scope.js';
import { backward } from './autograd.js';
import * as ops from './ops/index.js';

export interface Tolerances {
  /** Normwise relative error allowed on outputs (and updated running stats). */
  out: number;
  /** Normwise relative error allowed on gradients. */
  grad: number;
}

export const DEFAULT_TOLERANCES: Tolerances = { out: 1e-4, grad: 1e-3 };

export interface TensorCheck {
  tensor: string;
  shape: number[];
  maxAbs: number;
  rel: number;
  tol: number;
  pass: boolean;
}

export interface FixtureResult {
  source: string;
  op: string;
  attrs: Record<string, unknown>;
  checks: TensorCheck[];
  pass: boolean;
  /** Set when the fixture could not be run at all (bad file, unknown op, op error). */
  error?: string;
}

type Attrs = Record<string, unknown>;
type Runner = (inp: Map<string, Tensor>, attrs: Attrs) => Tensor;

const num = (v: unknown) => v as number | [number, number];

/** The ops a fixture may name, mirroring torch.nn.functional. */
const RUNNERS: Record<string, Runner> = {
  conv2d: (i, a) =>
    ops.conv2d(i.get('x')!, i.get('weight')!, i.get('bias') ?? null, {
      stride: num(a.stride ?? 1),
      padding: num(a.padding ?? 0),
      dilation: num(a.dilation ?? 1),
      groups: (a.groups as number) ?? 1,
    }),
  batch_norm: (i, a) =>
    ops.batchNorm(i.get('x')!, i.get('weight') ?? null, i.get('bias') ?? null, i.get('running_mean') ?? null, i.get('running_var') ?? null, {
      training: Boolean(a.training),
      momentum: (a.momentum as number) ?? 0.1,
      eps: (a.eps as number) ?? 1e-5,
    }),
  adaptive_avg_pool2d: (i, a) => ops.adaptiveAvgPool2d(i.get('x')!, num(a.output_size ?? 1)),
  interpolate: (i, a) => {
    if ((a.mode ?? 'bilinear') !== 'bilinear') throw new Error(`interpolate: mode '${String(a.mode)}' is not supported (bilinear only)`);
    return ops.interpolate(i.get('x')!, { size: num(a.size), alignCorners: Boolean(a.align_corners) });
  },
  relu: (i) => ops.relu(i.get('x')!),
  max_pool2d: (i, a) =>
    ops.maxPool2d(i.get('x')!, { kernelSize: num(a.kernel_size), stride: a.stride === undefined || a.stride === null ? undefined : num(a.stride), padding: num(a.padding ?? 0) }),
  add: (i) => ops.add(i.get('a')!, i.get('b')!),
  cat: (i, a) => {
    const xs: Tensor[] = [];
    for (let k = 0; i.has(`x${k}`); k++) xs.push(i.get(`x${k}`)!);
    return ops.cat(xs, (a.dim as number) ?? 1);
  },
  cross_entropy: (i, a) => ops.crossEntropy(i.get('x')!, i.get('target')!, { ignoreIndex: (a.ignore_index as number) ?? 255 }),
};

export const FIXTURE_OPS = Object.keys(RUNNERS);

const RESERVED = new Set(['dy', 'out', 'running_mean_out', 'running_var_out']);

function compare(name: string, shape: number[], actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): TensorCheck {
  let num2 = 0;
  let den2 = 0;
  let maxAbs = 0;
  let finite = true;
  for (let k = 0; k < expected.length; k++) {
    const d = actual[k] - expected[k];
    if (!Number.isFinite(actual[k])) finite = false;
    num2 += d * d;
    den2 += expected[k] * expected[k];
    maxAbs = Math.max(maxAbs, Math.abs(d));
  }
  const rel = finite && actual.length === expected.length ? (den2 === 0 ? Math.sqrt(num2) : Math.sqrt(num2 / den2)) : Infinity;
  if (!finite) maxAbs = Infinity;
  return { tensor: name, shape, maxAbs, rel, tol, pass: rel <= tol };
}

/** Runs one fixture given its bytes. Never throws for a bad fixture: the error is in the result. */
export async function verifyFixture(bytes: Uint8Array, source: string, tol: Tolerances = DEFAULT_TOLERANCES): Promise<FixtureResult> {
  let st: SafeTensors;
  const result: FixtureResult = { source, op: '?', attrs: {}, checks: [], pass: false };
  const owned: Tensor[] = [];
  try {
    st = parseSafetensors(bytes, source);
    const op = st.metadata.op;
    if (!op) throw new Error(`${source}: no "op" in __metadata__`);
    result.op = op;
    const runner = RUNNERS[op];
    if (!runner) throw new Error(`${source}: unknown op '${op}' (known: ${FIXTURE_OPS.join(', ')})`);
    let attrs: Attrs = {};
    try {
      attrs = st.metadata.attrs ? (JSON.parse(st.metadata.attrs) as Attrs) : {};
    } catch {
      throw new Error(`${source}: __metadata__.attrs is not valid JSON`);
    }
    result.attrs = attrs;
    const expectedOut = st.tensors.get('out');
    if (!expectedOut) throw new Error(`${source}: no 'out' tensor`);

    // Inputs: every tensor that is not an expectation; differentiable where grad_<name> exists.
    const inputs = new Map<string, Tensor>();
    for (const [name, t] of st.tensors) {
      if (RESERVED.has(name) || name.startsWith('grad_')) continue;
      const isFloat = t.dtype === 'F32' || t.dtype === 'F64' || t.dtype === 'F16' || t.dtype === 'BF16';
      const x = isFloat
        ? st.tensors.has(`grad_${name}`)
          ? parameter(toFloat32(t, name), t.shape)
          : tensor(toFloat32(t, name), t.shape, 'f32')
        : tensor(toInt32(t, name), t.shape, 'i32');
      x.label = name;
      inputs.set(name, x);
      owned.push(x);
    }
    const dyInfo = st.tensors.get('dy');
    const dy = dyInfo ? tensor(toFloat32(dyInfo, 'dy'), dyInfo.shape) : null;
    if (dy) owned.push(dy);

    const out = tidy(() => {
      const y = runner(inputs, attrs);
      const shapeOk = y.shape.length === expectedOut.shape.length && y.shape.every((d, k) => d === expectedOut.shape[k]);
      if (!shapeOk) throw new Error(`${source}: output shape ${fmtShape(y.shape)}, expected ${fmtShape(expectedOut.shape)}`);
      if (y.requiresGrad) backward(y, dy ?? undefined);
      return y;
    });
    owned.push(out);

    const check = async (name: string, t: Tensor, expected: Float32Array, shape: number[], tolerance: number) => {
      const actual = await t.data();
      result.checks.push(compare(name, shape, actual, expected, tolerance));
    };
    await check('out', out, toFloat32(expectedOut, 'out'), expectedOut.shape, tol.out);
    for (const which of ['running_mean', 'running_var']) {
      const exp = st.tensors.get(`${which}_out`);
      if (exp) await check(`${which}_out`, inputs.get(which)!, toFloat32(exp, `${which}_out`), exp.shape, tol.out);
    }
    for (const [name, t] of st.tensors) {
      if (!name.startsWith('grad_')) continue;
      const x = inputs.get(name.slice(5));
      if (!x) throw new Error(`${source}: '${name}' has no input '${name.slice(5)}'`);
      if (!x.grad) {
        result.checks.push({ tensor: name, shape: t.shape, maxAbs: Infinity, rel: Infinity, tol: tol.grad, pass: false });
        continue;
      }
      await check(name, x.grad, toFloat32(t, name), t.shape, tol.grad);
    }
    result.pass = result.checks.length > 0 && result.checks.every((c) => c.pass);
  } catch (e) {
    result.error = (e as Error).message;
    result.pass = false;
  } finally {
    for (const t of owned) {
      t.grad?.dispose();
      t.grad = null;
      t.dispose();
    }
  }
  return result;
}
