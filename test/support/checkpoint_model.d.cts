// Types of checkpoint_model.cjs (shared by the vitest files and the child processes).
import type { DType, Parameter } from '../../src/index';

export type Kind = 'AdamW' | 'AdamWDL' | 'Lion';
export type SchedulerKind =
  'none' | 'TransformerLR' | 'LambdaLR' | 'LinearLR' | 'CosineAnnealingLR' | 'SequentialLR' | 'linearWarmup';

export interface ModelOptions {
  kind: Kind;
  dtype: DType;
  scheduler?: SchedulerKind;
  init?: number;
  masterWeights?: boolean;
  reversed?: boolean;
  scale?: number;
}

export interface Model {
  params: Parameter[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  opt: any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  sched: any;
  grads(step: number): void;
  train(from: number, to: number): void;
}

export const KINDS: Kind[];
export const DTYPES: DType[];
export const SCHEDULERS: SchedulerKind[];
export const SPECS: Array<{ name: string; shape: number[]; group: number; grad: string; from: number }>;
export function rng(seed: number): () => number;
export function values(n: number, next: () => number, scale: number): Float32Array;
export function build(lib: unknown, options: ModelOptions): Model;
export interface Fingerprint {
  params: Record<string, string>;
  state: Record<string, unknown>;
  groups: unknown[];
  others: unknown;
  scheduler: unknown;
}
export function fingerprint(model: Model): Fingerprint;
