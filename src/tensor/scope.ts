// Memory scopes: tensors created inside tidy() are disposed when it returns, except the result and
// tensors passed to keep(). GPU memory stays flat across training steps this way; on CPU it is a no-op
// in effect (disposal leaves memory to the garbage collector).
interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

class Scope {
  readonly items: Disposable[] = [];
  track(t: Disposable): void {
    this.items.push(t);
  }
}

const stack: Scope[] = [];
const kept = new WeakSet<Disposable>();

export function currentScope(): Scope | undefined {
  return stack[stack.length - 1];
}

/** Keeps a tensor alive past the enclosing tidy(). */
export function keep<T extends Disposable>(t: T): T {
  kept.add(t);
  return t;
}

function collect(result: unknown, out: Set<unknown>): void {
  if (result === null || typeof result !== 'object') return;
  if (out.has(result)) return;
  out.add(result);
  if (Array.isArray(result)) for (const r of result) collect(r, out);
  else if (Object.getPrototypeOf(result) === Object.prototype) for (const v of Object.values(result)) collect(v, out);
}

export function tidy<T>(fn: () => T): T {
  const scope = new Scope();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    stack.pop();
  }
  const survivors = new Set<unknown>();
  collect(result, survivors);
  const parent = currentScope();
  for (const t of scope.items) {
    if (survivors.has(t) || kept.has(t)) parent?.track(t);
    else t.dispose();
  }
  return result;
}
