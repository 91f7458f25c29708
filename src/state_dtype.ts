// The dtype an optimizer keeps its state in (the stateDtype / stateBlockSize options, per
// param group), its code in the addon, and the shape of one param's state in each dtype as
// state dicts hold it (native/common/state_dtype.h has the layout; docs/state-dtypes.md the
// choice between them).
import { checkChoice, checkInteger, mustBe } from './checks';

export type StateDtype = 'float32' | 'bfloat16' | 'uint8';
/** Elements per fp32 absmax of 8-bit state (bitsandbytes' blockwise optimizers: 256; earlier 2048). */
export type StateBlockSize = 256 | 2048;

/** By code (native/common/state_dtype.h StateDType); checked against native().layouts.stateDtypes. */
export const STATE_DTYPES: readonly StateDtype[] = ['float32', 'bfloat16', 'uint8'];
export const STATE_BLOCK_SIZES: readonly StateBlockSize[] = [256, 2048];
export const DEFAULT_STATE_DTYPE: StateDtype = 'float32';
export const DEFAULT_STATE_BLOCK_SIZE: StateBlockSize = 256;
/** Params with fewer elements keep fp32 state under 'uint8' (bitsandbytes' min_8bit_size). */
export const MIN_QUANTIZED_NUMEL = 4096;

/** The group keys of the state dtype, beside the hyperparameters. */
export interface StateDtypeGroup {
  /** The dtype of the group's optimizer state (default 'float32'); may change between steps. */
  stateDtype: StateDtype;
  /** Elements per absmax of 'uint8' state: 256 (default) or 2048. */
  stateBlockSize: StateBlockSize;
}

export function checkStateDtype(value: unknown, what: string): StateDtype {
  return checkChoice(value, what, STATE_DTYPES);
}

export function checkStateBlockSize(value: unknown, what: string): StateBlockSize {
  return checkChoice(value, what, STATE_BLOCK_SIZES);
}

export function stateDtypeCode(d: StateDtype): number {
  return STATE_DTYPES.indexOf(d);
}

/** The absmax values of an 8-bit buffer of `numel` codes. */
export function quantBlocks(numel: number, blockSize: number): number {
  return Math.ceil(numel / blockSize);
}

/**
 * The encoding of one param's state in a state dict: its `stateDtype` and `blockSize` keys
 * (absent: float32, as every earlier release wrote). `where` names the state in errors.
 */
export interface StateEncoding {
  dtype: StateDtype;
  blockSize: StateBlockSize;
}

export function stateEncodingOf(s: Record<string, unknown>, where: string): StateEncoding {
  const dtype = s.stateDtype === undefined ? 'float32' : checkStateDtype(s.stateDtype, `${where}: stateDtype`);
  if (dtype !== 'uint8') {
    if (s.blockSize !== undefined)
      throw new TypeError(`${where}: blockSize is only for stateDtype 'uint8', but the state is ${dtype}`);
    return { dtype, blockSize: DEFAULT_STATE_BLOCK_SIZE };
  }
  if (s.blockSize === undefined) throw new TypeError(`${where}: blockSize is missing (stateDtype 'uint8' needs it)`);
  checkInteger(s.blockSize, `${where}: blockSize`);
  return { dtype, blockSize: checkStateBlockSize(s.blockSize, `${where}: blockSize`) };
}

/** The bytes of one state buffer in a state dict: bf16 bit patterns or 8-bit codes, of `numel` elements. */
export function checkStateBits(
  value: unknown,
  dtype: 'bfloat16' | 'uint8',
  numel: number,
  where: string,
): Uint16Array | Uint8Array {
  const [type, label] =
    dtype === 'bfloat16'
      ? [Uint16Array, 'a Uint16Array of bfloat16 bits']
      : [Uint8Array, 'a Uint8Array of 8-bit codes'];
  if (!(value instanceof type)) throw new TypeError(mustBe(where, label, value));
  if (value.length !== numel) throw new RangeError(`${where} has ${value.length} elements but the param has ${numel}`);
  return value;
}

/**
 * A param's state buffers B (required) and O (optional) in each dtype a state dict holds
 * them: fp32 values (stateDtype absent), bfloat16 bit patterns, or 8-bit codes with an fp32
 * absmax per block of blockSize elements (`<buffer>_absmax`).
 */
export type StateBuffers<B extends string, O extends string = never> =
  | ({ stateDtype?: undefined; blockSize?: undefined } & { [K in B]: Float32Array } & { [K in O]?: Float32Array })
  | ({ stateDtype: 'bfloat16'; blockSize?: undefined } & { [K in B]: Uint16Array } & { [K in O]?: Uint16Array })
  | ({ stateDtype: 'uint8'; blockSize: StateBlockSize } & { [K in B]: Uint8Array } & {
      [K in B as `${K}_absmax`]: Float32Array;
    } & { [K in O]?: Uint8Array } & { [K in O as `${K}_absmax`]?: Float32Array });
