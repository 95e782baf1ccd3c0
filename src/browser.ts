// The library's browser entry: everything that computes (tensors and autograd, ops, every layer
// family and model, WebGPU, training steps, generation, tokenizers from parsed JSON, safetensors from
// bytes, packed 1-bit models from the bytes of their folder's files, kept packed on the GPU) and
// nothing that needs Node. File-system loading (checkpoint folders, packed folders,
// tokenizer files, the trainer and the embedded corpus) is in the Node entry. The native CPU backend is
// Node-only: in a browser, tensors go on device 'webgpu' after `await initWebGPU()`.
export * from './tensor/index.ts';
export * as ops from './ops/index.ts';
export * from './models/index.ts';
export { presetRegistry, presetByName } from './models/presets.ts';
export { AdamW, clipFactor, gradNorm } from './train/optim.ts';
export { generate } from './infer/generate.ts';
export { sampleToken, argmax, type SamplingOpts } from './infer/sampling.ts';
export { readSafetensors, encodeSafetensors } from './io/safetensors.ts';
export { fromHf, toHf, loadStateDict } from './models/hf.ts';
export { packedModelFromFiles, packedModelOnDevice, packedMemory, type PackedMemory } from './infer/packed-device.ts';
export { isPackedConfig, packedDataFrom, type PackedModelData } from './io/packed-files.ts';
export { ByteTokenizer, fingerprint, type StreamDecoder, type Tokenizer } from './data/tokenizer.ts';
export { ByteLevelBpeTokenizer } from './data/bpe.ts';
export { trainBpe, type TrainBpeOptions } from './data/bpe-train.ts';
export { HfTokenizer } from './data/hf-tokenizer.ts';
export { tokenizerFromJson } from './data/tokenizer-json.ts';
export { initWebGPU, destroyWebGPU } from './backend/webgpu/index.ts';
export { ReplayedDecoder } from './infer/replayed-decode.ts';
