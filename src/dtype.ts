// The element types and devices a Tensor can have, and their codes in the addon.
import { checkChoice } from './checks';

export type DType = 'float32' | 'float16' | 'bfloat16';
export type DeviceName = 'cpu' | 'cuda';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16'];
export const DEVICES: readonly DeviceName[] = ['cpu', 'cuda'];

export function dtypeCode(dtype: unknown, what = 'dtype'): number {
  return DTYPES.indexOf(checkChoice(dtype, what, DTYPES));
}

export function deviceCode(device: unknown, what = 'device'): number {
  return DEVICES.indexOf(checkChoice(device, what, DEVICES));
}
