// The LlamaForCausalLM half of src/models/hf.ts under its former names, for the packed 1-bit folders
// (src/infer/packed-linear.ts, whose own rework is under way): a packed config is always the plain
// Llama mapping, with no embedded frugal config. New code uses fromHf / toHf from hf.ts.
export { llamaFromHf as configFromHf, llamaToHf as configToHf } from './hf.ts';
