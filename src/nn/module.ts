// Module: a tree of named parameters and submodules; names follow Hugging Face state-dict keys.
import { Tensor } from '../tensor/tensor.ts';

export abstract class Module {
  private readonly paramMap = new Map<string, Tensor>();
  private readonly childMap = new Map<string, Module>();
  /** Non-trainable state saved with the model (BatchNorm running stats, ...). */
  private readonly bufferMap = new Map<string, Tensor>();
  training = true;

  protected param(name: string, t: Tensor): Tensor {
    t.requiresGrad = true;
    this.paramMap.set(name, t);
    return t;
  }
  protected buffer(name: string, t: Tensor): Tensor {
    this.bufferMap.set(name, t);
    return t;
  }
  protected child<M extends Module>(name: string, m: M): M {
    this.childMap.set(name, m);
    return m;
  }

  /** Puts another module in place of an existing child (serving models swap in faster layers). */
  replaceChild(name: string, m: Module): void {
    if (!this.childMap.has(name)) throw new Error(`internal: no submodule '${name}' to replace`);
    this.childMap.set(name, m);
  }

  /** All parameters with their dotted names (depth-first, registration order). */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.paramMap) out.push([prefix + n, t]);
    for (const [n, c] of this.childMap) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }
  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, t] of this.bufferMap) out.push([prefix + n, t]);
    for (const [n, c] of this.childMap) out.push(...c.namedBuffers(`${prefix}${n}.`));
    return out;
  }
  /** This module and every submodule, depth-first. */
  modules(): Module[] {
    return [this, ...[...this.childMap.values()].flatMap((c) => c.modules())];
  }
  /** Every submodule with its dotted name ('' for this one), depth-first. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix.replace(/\.$/, ''), this]];
    for (const [n, c] of this.childMap) out.push(...c.namedModules(`${prefix}${n}.`));
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, t]) => t);
  }
  numParameters(): number {
    return this.parameters().reduce((s, t) => s + t.size, 0);
  }

  /** Replaces a parameter or buffer tensor by name (loading checkpoints). */
  setTensor(name: string, t: Tensor): void {
    const dot = name.indexOf('.');
    if (dot >= 0) {
      const head = name.slice(0, dot);
      // Child names may themselves contain dots (e.g. "layers.0"): try the longest matching child.
      for (const [cn, c] of this.childMap) {
        if (name.startsWith(cn + '.')) return c.setTensor(name.slice(cn.length + 1), t);
      }
      throw new Error(`no submodule '${head}' for tensor '${name}'`);
    }
    const old = this.paramMap.get(name) ?? this.bufferMap.get(name);
    if (!old) throw new Error(`no parameter or buffer named '${name}'`);
    if (old.shape.length !== t.shape.length || old.shape.some((s, i) => s !== t.shape[i])) {
      throw new Error(`shape mismatch for '${name}': model expects [${old.shape}], checkpoint has [${t.shape}]`);
    }
    if (this.paramMap.has(name)) {
      t.requiresGrad = true;
      t.sparseGrad = old.sparseGrad;
      t.name = old.name;
      this.paramMap.set(name, t);
    } else this.bufferMap.set(name, t);
  }

  /** The current tensor of a parameter or buffer (forward passes read through this, so loading works). */
  protected get(name: string): Tensor {
    const t = this.paramMap.get(name) ?? this.bufferMap.get(name);
    if (!t) throw new Error(`internal: no tensor '${name}'`);
    return t;
  }
  protected getOptional(name: string): Tensor | null {
    return this.paramMap.get(name) ?? this.bufferMap.get(name) ?? null;
  }

  train(on = true): this {
    this.training = on;
    for (const c of this.childMap.values()) c.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
}
