// Validation perplexity of a small FBI model trained a few steps on the default corpus's bytes: the
// latent model, its packed form in exact (f32-activation) mode, with int8 activations, and with int8
// activations plus the int8 LM head. The peer here is the latent model itself (same weights).
//   frugal bench fbi-accuracy [--shape tiny|130m-width] [--steps N] [--lr X] --json
import { defaultCorpus } from '../src/data/corpus.ts';
import { perplexity } from '../src/eval/perplexity.ts';
import { modelFromPacked, packModel } from '../src/infer/packed-linear.ts';
import { setPackedActivations } from '../src/nn/packed.ts';
import { CausalLM } from '../src/models/index.ts';
import { backward, fromArray, Rng, tidy } from '../src/tensor/index.ts';
import { AdamW } from '../src/train/optim.ts';
import { runBenchIfMain } from './kit.ts';
import { UsageError } from '../src/cli/args.ts';

/** The --key options run() reads (`frugal bench fbi-accuracy` rejects any other). */
export const options: readonly string[] = ['shape', 'steps', 'lr'];

// 130m-width: the fbi-130m layer shape (hidden 768, 12 heads, FFN 2048) with 2 layers and a byte vocabulary.
const SHAPES = {
  tiny: { shape: { hiddenSize: 64, numLayers: 2, numHeads: 4, intermediateSize: 160 }, steps: 60, lr: 3e-3 },
  '130m-width': { shape: { hiddenSize: 768, numLayers: 2, numHeads: 12, intermediateSize: 2048 }, steps: 30, lr: 5e-4 },
} as const;

export async function run(args: Record<string, string | boolean> = {}): Promise<Record<string, unknown>> {
  const name = String(args.shape ?? 'tiny') as keyof typeof SHAPES;
  const s = SHAPES[name];
  if (!s) throw new UsageError(`--shape must be one of ${Object.keys(SHAPES).join(', ')}, got ${String(args.shape)}`);
  const steps = args.steps === undefined ? s.steps : Number(args.steps), lr = args.lr === undefined ? s.lr : Number(args.lr);
  if (!Number.isInteger(steps) || steps < 1) throw new UsageError(`--steps must be a positive integer, got ${String(args.steps)}`);
  if (!(lr > 0)) throw new UsageError(`--lr must be > 0, got ${String(args.lr)}`);
  const corpus = defaultCorpus();
  const train = new TextEncoder().encode(corpus.train.slice(0, 400_000));
  const val = Int32Array.from(new TextEncoder().encode(corpus.validation.slice(0, 6000)));
  const model = new CausalLM({ vocabSize: 256, ...s.shape, maxPositions: 128, linear: 'fbi' }, { seed: 2 });
  const opt = new AdamW(model.namedParameters(), { lr, weightDecay: 0 });
  const rng = new Rng(8);
  const B = 8, T = 64;
  for (let step = 0; step < steps; step++) {
    const inp = new Int32Array(B * T), tgt = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const o = rng.int(train.length - T - 1);
      for (let t = 0; t < T; t++) { inp[b * T + t] = train[o + t]; tgt[b * T + t] = train[o + t + 1]; }
    }
    tidy(() => backward(model.loss(fromArray(inp, [B, T]), fromArray(tgt, [B * T]))));
    opt.update(1);
  }
  model.eval();
  const ppl = async (m: CausalLM) => (await perplexity(m, val, { window: 128 })).perplexity;
  const latent = await ppl(model);
  const packed = modelFromPacked(packModel(model));
  setPackedActivations(packed, 'f32');
  const exact = await ppl(packed);
  setPackedActivations(packed, 'int8');
  const int8 = await ppl(packed);
  const headed = modelFromPacked(packModel(model, { head: 'int8' }));
  setPackedActivations(headed, 'int8');
  const int8Head = await ppl(headed);
  const rel = (x: number) => Number((100 * (x / latent - 1)).toFixed(4));
  return {
    bench: 'fbi-accuracy', shape: name, steps, lr, validation_bytes: val.length,
    latent_ppl: latent, exact_ppl: exact, int8_ppl: int8, int8_head_ppl: int8Head,
    exact_change_pct: rel(exact), int8_change_pct: rel(int8), int8_head_change_pct: rel(int8Head),
  };
}

await runBenchIfMain(import.meta.url, run);
