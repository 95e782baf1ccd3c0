// Public surface of the data layer.
export { ByteTokenizer, fingerprint, type StreamDecoder, type Tokenizer } from './tokenizer.ts';
export { ByteLevelBpeTokenizer } from './bpe.ts';
export { trainBpe, type TrainBpeOptions } from './bpe-train.ts';
export { HfTokenizer } from './hf-tokenizer.ts';
export { loadTokenizer, saveTokenizer, tokenizerFromJson } from './tokenizer-io.ts';
export {
  defaultCorpus, defaultCorpusDocuments, loadTextDataset, splitDocuments, splitTail, VALIDATION_EVERY,
  type CorpusSplit, type TextDataset,
} from './corpus.ts';
export {
  BatchIterator, PackedDataset, tokenizeDocuments, type Batch, type BatchIteratorState,
} from './packing.ts';
