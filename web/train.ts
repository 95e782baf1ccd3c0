// Training a tiny model in the browser: next-byte prediction on pasted text, AdamW with warmup and
// gradient clipping, one loss value reported per step (the page draws it live).
import { ByteTokenizer } from '../src/data/index.ts';
import { CausalLM, type ModelConfig } from '../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../src/tensor/index.ts';
import { AdamW, clipFactor, gradNorm } from '../src/train/optim.ts';

export interface TrainOpts {
  config: Partial<ModelConfig>;
  text: string;
  steps: number;
  batch: number;
  ctx: number;
  lr: number;
  seed?: number;
  /** Called after each step; return false to stop early. */
  onStep: (step: number, loss: number) => boolean | void;
}

export async function trainTiny(o: TrainOpts): Promise<{ model: CausalLM; tokenizer: ByteTokenizer; losses: number[]; seconds: number }> {
  const tokenizer = new ByteTokenizer();
  const bytes = tokenizer.encode(o.text);
  if (bytes.length < o.ctx + 2) throw new Error(`the training text has ${bytes.length} bytes; give at least ${o.ctx + 2} (context + 2) or lower the context`);
  for (const [k, v] of Object.entries({ steps: o.steps, batch: o.batch, ctx: o.ctx })) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be an integer >= 1, got ${v}`);
  }
  if (!(o.lr > 0)) throw new Error(`learning rate must be > 0, got ${o.lr}`);
  const seed = o.seed ?? 0;
  const model = new CausalLM({ ...o.config, vocabSize: 256, maxPositions: Math.max(o.ctx, o.config.maxPositions ?? 0) }, { seed, device: 'webgpu' });
  model.train();
  const opt = new AdamW(model.namedParameters(), { lr: o.lr, weightDecay: 0.01 });
  const rng = new Rng(seed + 1);
  const { batch: B, ctx: T } = o;
  const warmup = Math.max(1, Math.floor(o.steps / 10));
  const losses: number[] = [];
  const t0 = performance.now();
  for (let step = 0; step < o.steps; step++) {
    const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const s = rng.int(bytes.length - T - 1);
      for (let t = 0; t < T; t++) {
        inp[b * T + t] = bytes[s + t];
        tgt[b * T + t] = bytes[s + t + 1];
      }
    }
    // Linear warmup then cosine decay to a tenth of the peak.
    const p = step < warmup ? (step + 1) / warmup : 0.1 + 0.45 * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, o.steps - warmup)));
    opt.lr = o.lr * p;
    const loss = tidy(() => {
      const l = model.loss(fromArray(inp, [B, T], 'webgpu'), fromArray(tgt, [B * T], 'webgpu'));
      backward(l);
      return l;
    });
    const value = await loss.item();
    loss.dispose();
    opt.update(clipFactor(await gradNorm(model.parameters()), 1.0));
    opt.zeroGrad();
    losses.push(value);
    if (!Number.isFinite(value)) throw new Error(`the loss became ${value} at step ${step + 1}; lower the learning rate`);
    if (o.onStep(step + 1, value) === false) break;
  }
  model.eval();
  return { model, tokenizer, losses, seconds: (performance.now() - t0) / 1000 };
}
