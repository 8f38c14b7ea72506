// Reverse-mode autograd on a small graph. Each op that has an input requiring a gradient records
// a GradNode on its output: the inputs (for the walk), the tensors it saved for backward (new
// handles on the same storage, owned by the node) and a backward rule. `backward(loss)` walks the
// graph in reverse topological order, so a tensor that feeds several consumers (residuals, ASPP
// branches) has all its gradient contributions summed before its own node runs, and each node
// runs once. Saved tensors and intermediate gradients are released as soon as they are used.
// An interior tensor whose storage the network freed after its last forward use (freeStorage)
// keeps its node: backward needs only its shape, and its node holds what the rule reads.
// Memory categories (src/tensor.ts): saved handles count as 'saved'; in backward, what a rule
// allocates is 'scratch' until it returns, its results 'gradients_in_flight', a leaf's .grad
// 'gradients'.

import { Tensor, fmtShape, withCategory } from './tensor.js';
import { keep } from './scope.js';
// The element-wise ops record through this module; backward runs them under noGrad, so they
// record nothing here (the import cycle is only used at call time).
import { add, axpy_, clone, ones } from './ops/elementwise.js';

/** A backward rule: gradients of the inputs (null where not needed) from the output's gradient.
 * It must return fresh tensors or null, never `dy` itself. */
export type BackwardFn = (dy: Tensor, saved: Tensor[], needs: boolean[]) => (Tensor | null)[];

export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly needs: readonly boolean[];
  backward(dy: Tensor): (Tensor | null)[];
  release(): void;
}

let gradEnabled = true;

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn without recording a graph (inference, optimizer updates, backward itself). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Called by ops after their forward kernels: attaches a node to `out` when a gradient is needed. */
export function record(op: string, out: Tensor, inputs: Tensor[], saved: Tensor[], backward: BackwardFn): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) return out;
  const needs = inputs.map((t) => t.requiresGrad);
  let refs: Tensor[] | null = saved.map((t) => t.ref(true));
  out.requiresGrad = true;
  out.node = {
    op,
    inputs,
    needs,
    backward(dy) {
      if (!refs) throw new Error(`atrous: backward through '${op}' twice (the graph is freed after backward)`);
      return backward(dy, refs, needs);
    },
    release() {
      if (refs) for (const r of refs) r.dispose();
      refs = null;
    },
  };
  return out;
}


/** Topological order of the interior tensors that lead to `root` (inputs before outputs). */
function topoOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>([root]);
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const inputs = t.node!.inputs;
    if (i < inputs.length) {
      top[1]++;
      const x = inputs[i];
      if (!x.requiresGrad || seen.has(x)) continue;
      // A disposed tensor has lost its node (and a leaf its storage): nothing to backpropagate
      // into. An interior tensor whose storage alone was freed still has its node, until a
      // backward() runs through it: a second backward() into the same graph then finds neither.
      if (x.disposed) throw new Error(`atrous: backward(): an input of '${t.node!.op}' (shape ${fmtShape(x.shape)}) was disposed before backward()`);
      if (x.storageFreed && !x.node) {
        throw new Error(
          `atrous: backward(): an input of '${t.node!.op}' (shape ${fmtShape(x.shape)}) was freed before backward(): a leaf whose storage was freed, ` +
            'or an intermediate whose graph an earlier backward() already consumed (call backward() once, on the sum of the losses)',
        );
      }
      seen.add(x);
      if (x.node) stack.push([x, 0]);
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order;
}

/** Accumulates d(root)/d(leaf) · dy into `.grad` of every leaf that requires a gradient.
 * `dy` defaults to ones (so a scalar loss gets d loss/d leaf). Frees the graph as it goes. */
export function backward(root: Tensor, dy?: Tensor): void {
  if (!root.requiresGrad || !root.node) {
    throw new Error(`atrous: backward(): the tensor ${fmtShape(root.shape)} does not require a gradient (no parameter leads to it, or noGrad was on)`);
  }
  if (dy && (dy.shape.length !== root.shape.length || dy.shape.some((d, i) => d !== root.shape[i]))) {
    throw new Error(`atrous: backward(): dy has shape ${fmtShape(dy.shape)} but the tensor has shape ${fmtShape(root.shape)}`);
  }
  const order = topoOrder(root);
  const grads = new Map<Tensor, Tensor>();
  // A backward function that throws (e.g. a split that cannot fit the binding limit) leaves the
  // gradients in flight, its own dy included, to the finally below.
  try {
    noGrad(() => withCategory('gradients_in_flight', () => {
      grads.set(root, dy ? clone(dy) : ones(root.shape));
      for (let k = order.length - 1; k >= 0; k--) {
        const t = order[k];
        const node = t.node!;
        const g = grads.get(t);
        if (!g) {
          node.release();
          continue;
        }
        const gin = withCategory('scratch', () => node.backward(g));
        grads.delete(t);
        for (const gx of gin) gx?.setCategory('gradients_in_flight');
        g.dispose();
        node.release();
        t.node = null;
        node.inputs.forEach((x, i) => {
          const gx = gin[i];
          if (!gx) return;
          if (gx === g) throw new Error(`atrous: internal error: backward of '${node.op}' returned dy itself`);
          if (!x.requiresGrad) {
            gx.dispose();
            return;
          }
          if (gx.shape.length !== x.shape.length || gx.shape.some((d, j) => d !== x.shape[j])) {
            throw new Error(`atrous: internal error: '${node.op}' gave a gradient of shape ${fmtShape(gx.shape)} for an input of shape ${fmtShape(x.shape)}`);
          }
          if (x.node) {
            const prev = grads.get(x);
            if (prev) {
              grads.set(x, add(prev, gx));
              prev.dispose();
              gx.dispose();
            } else grads.set(x, gx);
          } else if (x.grad) {
            axpy_(x.grad, gx);
            gx.dispose();
          } else {
            // A leaf's .grad is updated in place later (accumulation, optimizers): it must own its storage.
            const own = gx.shared ? clone(gx) : gx;
            if (own !== gx) gx.dispose();
            x.grad = keep(own).setCategory('gradients');
          }
        });
      }
    }));
  } finally {
    for (const g of grads.values()) g.dispose();
  }
}

/** Sets every given tensor's .grad to null, returning the buffers to the pool. */
export function zeroGrad(params: Iterable<Tensor>): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}
