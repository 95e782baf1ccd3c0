// Importing this module registers every available layer family.
import '../tensor/index.ts';
import './attention-plugin.ts';
import './fbi-plugin.ts';
import './peer-plugin.ts';
import './ttt-plugin.ts';

export * from './config.ts';
export * from './causal-lm.ts';
export * from './registry.ts';
