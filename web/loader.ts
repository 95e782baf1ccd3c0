// Loads a checkpoint folder in the worker from bytes (picked files or a URL, see folder.ts) and builds
// the model on WebGPU. Understands the folders the project writes: training checkpoints (config.json
// with the embedded frugal config, model.safetensors, tokenizer.json), HF Llama/FBI-LLM folders
// (sharded safetensors too) and packed 1-bit FBI folders, which stay packed: their linears run from
// the sign bits on the GPU (packedModelFromFiles).
import { ByteTokenizer, tokenizerFromJson, type Tokenizer } from '../src/data/index.ts';
import { packedModelFromFiles } from '../src/infer/packed-device.ts';
import { isPackedConfig } from '../src/io/packed-files.ts';
import type { TensorMap } from '../src/io/raw.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { CausalLM } from '../src/models/index.ts';
import { fromHf, loadStateDict } from '../src/models/hf.ts';
import type { DeviceName } from '../src/backend/types.ts';
import type { FolderReader } from './folder.ts';

export interface LoadedModel {
  model: CausalLM;
  tokenizer: Tokenizer;
  /** Where the tokenizer came from ("tokenizer.json" or the byte-level fallback). */
  tokenizerSource: string;
  /** Bytes of the weight files as stored. */
  storedBytes: number;
  /** The folder held packed 1-bit weights (kept packed on the GPU). */
  packed: boolean;
}

function parseJson(bytes: Uint8Array, name: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new Error(`${name} is not valid JSON (${(e as Error).message}); the checkpoint is corrupt or incomplete`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${name} must hold a JSON object`);
  return v as Record<string, unknown>;
}

async function need(read: FolderReader, name: string, hint: string): Promise<Uint8Array> {
  const b = await read(name);
  if (!b) throw new Error(`the checkpoint has no ${name}; ${hint}`);
  return b;
}

/** Weights of a non-packed folder: model.safetensors or a sharded model.safetensors.index.json. */
async function readWeights(read: FolderReader): Promise<{ tensors: TensorMap; bytes: number }> {
  const single = await read('model.safetensors');
  if (single) return { tensors: readSafetensors(single).tensors, bytes: single.length };
  const index = await read('model.safetensors.index.json');
  if (!index) {
    const bin = (await read('pytorch_model.bin')) ?? (await read('pytorch_model.bin.index.json'));
    throw new Error(bin
      ? 'PyTorch .bin weights are not read in the browser; convert the folder to safetensors first (load and save it with the frugal CLI)'
      : 'the checkpoint has no model.safetensors (or model.safetensors.index.json with its shards)');
  }
  const map = parseJson(index, 'model.safetensors.index.json').weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new Error('model.safetensors.index.json has no "weight_map" object');
  const tensors: TensorMap = new Map();
  let bytes = 0;
  for (const shard of new Set(Object.values(map as Record<string, unknown>))) {
    if (typeof shard !== 'string' || shard.includes('/')) throw new Error(`model.safetensors.index.json names ${JSON.stringify(shard)}, which is not a file of the folder`);
    const b = await need(read, shard, 'a shard listed in model.safetensors.index.json is missing');
    bytes += b.length;
    for (const [n, t] of readSafetensors(b).tensors) tensors.set(n, t);
  }
  return { tensors, bytes };
}

/** Builds the model of a checkpoint folder on `device` and loads its weights and tokenizer. */
export async function loadCheckpoint(read: FolderReader, device: DeviceName = 'webgpu'): Promise<LoadedModel> {
  const hf = parseJson(await need(read, 'config.json', 'pick the folder that holds config.json and the weights'), 'config.json');
  const packed = isPackedConfig(hf);
  let model: CausalLM;
  let storedBytes: number;
  if (packed) {
    const file = await need(read, 'model.safetensors', 'a packed folder stores its weights in model.safetensors');
    model = packedModelFromFiles(hf, file, device, 'the packed folder');
    storedBytes = file.length;
  } else {
    const { tensors, bytes } = await readWeights(read);
    model = new CausalLM(fromHf(hf, tensors), { device });
    loadStateDict(model, tensors, 'checkpoint');
    storedBytes = bytes;
  }
  const tokJson = await read('tokenizer.json');
  if (tokJson) {
    const tokConfig = await read('tokenizer_config.json');
    const tokenizer = tokenizerFromJson(parseJson(tokJson, 'tokenizer.json'), tokConfig ? parseJson(tokConfig, 'tokenizer_config.json') : {});
    return { model, tokenizer, tokenizerSource: 'tokenizer.json', storedBytes, packed };
  }
  if (model.config.vocabSize < 256) throw new Error(`the checkpoint has no tokenizer.json and its vocabulary (${model.config.vocabSize}) is too small for bytes; add the tokenizer.json it was trained with`);
  return { model, tokenizer: new ByteTokenizer(), tokenizerSource: 'bytes (no tokenizer.json in the folder)', storedBytes, packed };
}
