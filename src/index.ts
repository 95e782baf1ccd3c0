// The library's public entry: tensors and autograd, ops, models (all layer families registered),
// training, evaluation, generation, checkpoints and data. WebGPU: `initWebGPU()` before building
// tensors or models with `device: 'webgpu'`.
export * from './tensor/index.ts';
export * as ops from './ops/index.ts';
export * from './models/index.ts';
export { presetRegistry, presetByName } from './models/presets.ts';
export { fromHf, toHf, loadPretrained, loadStateDict } from './models/hf.ts';
export { AdamW, clipFactor, gradNorm } from './train/optim.ts';
export { train, type LossFn, type TrainHook, type TrainOpts, type TrainResult } from './train/trainer.ts';
export { distillLoss } from './train/distill.ts';
export { familyHooks } from './train/hooks.ts';
export { saveCheckpoint, loadModel } from './train/checkpoint.ts';
export { perplexity, perplexityByPosition } from './eval/perplexity.ts';
export { evaluateMultipleChoice } from './eval/multiple-choice.ts';
export { generate } from './infer/generate.ts';
export { loadPackedModel, savePackedModel, packModel } from './infer/packed-linear.ts';
export { setPackedActivations } from './nn/packed.ts';
export { packedModelFromFiles, packedModelOnDevice, packedMemory, type PackedMemory } from './infer/packed-device.ts';
export { readSafetensors, writeSafetensors } from './io/safetensors.ts';
export { readTorchBin } from './io/torch-bin.ts';
export * from './data/index.ts';
export { initWebGPU, destroyWebGPU } from './backend/webgpu/index.ts';
export { ReplayedDecoder } from './infer/replayed-decode.ts';
export { loadGgufModel, modelFromGguf, saveGgufModel, ggufFromModel } from './infer/gguf-model.ts';
export { readGguf, parseGguf, writeGguf, encodeGguf, quantize as ggufQuantize, dequantize as ggufDequantize, GGML_TYPES } from './io/gguf.ts';
export { tokenizerFromGguf, SentencePieceBpeTokenizer } from './data/gguf-tokenizer.ts';
