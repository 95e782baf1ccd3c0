// Messages between the playground page (web/main.ts) and its worker (web/worker.ts). The worker owns
// the WebGPU device and the model; the page only sends requests and shows what comes back.

/** Where a checkpoint comes from: the picked files of one folder (by name), or an absolute URL. */
export type LoadSource = { kind: 'files'; files: [string, File][] } | { kind: 'url'; url: string };

export interface GenerateSettings {
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
}

export interface TrainSettings {
  preset: string;
  text: string;
  steps: number;
  batch: number;
  ctx: number;
  lr: number;
}

/** The in-page training presets (their configs are in the worker). */
export const TRAIN_PRESET_NAMES = ['micro-dense', 'micro-fbi', 'tiny-dense', 'tiny-fbi'] as const;

export type Request =
  | { type: 'load'; source: LoadSource; label: string }
  | { type: 'generate'; settings: GenerateSettings }
  | { type: 'train'; settings: TrainSettings }
  /** Ends the running generation (after the token in flight) or training (after the step in flight). */
  | { type: 'stop' };

/** Byte counts of a loaded model's weights, as shown in the page. */
export interface MemoryFigures {
  /** Bytes of the model's tensors on the GPU (packed linears as sign bits and scales). */
  gpuBytes: number;
  /** Bytes the same model takes with every weight in f32. */
  f32Bytes: number;
  /** Bytes of GPU buffers the worker holds after loading (the pool's live buffers, rounded to its size buckets). */
  poolBytes: number;
  /** Packed 1-bit linears: their bytes on the GPU and as f32. */
  packed?: { linears: number; bytes: number; f32Bytes: number };
}

export type Reply =
  | { type: 'ready'; adapter: string }
  | { type: 'no-webgpu'; message: string }
  | { type: 'loaded'; rows: [string, string][]; memory: MemoryFigures }
  | { type: 'token'; text: string; tokens: number }
  | {
    type: 'generated'; tokens: number; promptTokens: number; tokensPerSecond: number; prefillMs: number;
    finishReason: string;
    /** The model's log-probability (natural log) of each generated token. */
    logprobs: number[];
    /** The log-probabilities over the whole vocabulary at the first step (the next token after the prompt). */
    firstStep: number[];
    /** The most likely first tokens: text and probability. */
    candidates: [string, number][];
    /** Tokens generated when the stop request reached the worker (only after a stop). */
    tokensAtStop?: number;
  }
  | { type: 'step'; step: number; steps: number; loss: number; msPerStep: number }
  | { type: 'trained'; steps: number; seconds: number; rows: [string, string][]; memory: MemoryFigures }
  | { type: 'error'; message: string };
