// The element types and devices a Tensor can have, and their codes in the addon.
export type DType = 'float32' | 'float16' | 'bfloat16';
export type DeviceName = 'cpu' | 'cuda';

export const DTYPES: readonly DType[] = ['float32', 'float16', 'bfloat16'];
export const DEVICES: readonly DeviceName[] = ['cpu', 'cuda'];

export function dtypeCode(dtype: unknown, what = 'dtype'): number {
  const code = DTYPES.indexOf(dtype as DType);
  if (code < 0) throw new TypeError(`${what} must be one of ${DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
  return code;
}

export function deviceCode(device: unknown, what = 'device'): number {
  const code = DEVICES.indexOf(device as DeviceName);
  if (code < 0) throw new TypeError(`${what} must be 'cpu' or 'cuda', got ${JSON.stringify(device)}`);
  return code;
}
