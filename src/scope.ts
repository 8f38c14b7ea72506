// Scopes give GPU memory an explicit lifetime (never the garbage collector's): every tensor made
// inside `tidy(fn)` is disposed when fn returns, except the tensors fn returns and those passed
// to `keep`. Scopes nest; returned tensors move to the enclosing scope.

export interface Owned {
  dispose(): void;
  readonly disposed: boolean;
}

const stack: Set<Owned>[] = [];

/** Registers a new tensor with the innermost scope (no-op outside any scope). */
export function track(t: Owned): void {
  if (stack.length) stack[stack.length - 1].add(t);
}

/** Runs fn with the tensors it makes registered in `into` instead of the innermost scope, and
 * disposes nothing: for work that spans awaits, which a scope cannot (DeepLabV3.forwardAsync
 * collects each synchronous piece's tensors this way and disposes what is left itself). */
export function trackInto<T>(into: Set<Owned>, fn: () => T): T {
  stack.push(into);
  try {
    return fn();
  } finally {
    stack.pop();
  }
}

/** Removes a tensor from every scope: it lives until disposed by hand. */
export function keep<T extends Owned>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<Owned>, depth = 0): void {
  if (!value || typeof value !== 'object' || depth > 4) return;
  if (typeof (value as Owned).dispose === 'function' && 'disposed' in (value as object)) {
    out.add(value as Owned);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (value instanceof Map) for (const v of value.values()) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype) for (const v of Object.values(value)) collect(v, out, depth + 1);
}

/** Runs fn and disposes every tensor it created that is not returned (in an array, a Map or a
 * plain object) or kept. fn must be synchronous: GPU work is only recorded, never awaited. */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Owned>();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) throw new Error('atrous: tidy() needs a synchronous function (await outside it)');
  const survivors = new Set<Owned>();
  collect(result, survivors);
  for (const t of scope) {
    if (survivors.has(t)) track(t);
    else t.dispose();
  }
  return result;
}
