export { backendInfo, type BackendInfo } from './backend';
export type { DType, DeviceName } from './dtype';
export { Tensor, type TensorOptions } from './tensor';
export { Parameter } from './parameter';
export { Optimizer, type ParamGroup, type ParamsInput } from './optimizer';
export { AdamW, type AdamWOptions, type AdamWParamGroup, type AdamWParamState, type AdamWStateDict } from './adamw';
