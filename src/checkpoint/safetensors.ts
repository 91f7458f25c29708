// The safetensors format (Hugging Face): the header (safetensors_header.ts), the reader
// (safetensors_reader.ts) and the writer (safetensors_writer.ts), exported together.
export { SafetensorsError, type SafetensorsErrorCode } from './errors';
export {
  MAX_HEADER_BYTES,
  SAFETENSORS_DTYPES,
  type ParsedHeader,
  type SafetensorsDType,
  type SafetensorsTensorInfo,
  type TensorData,
  byteLengthOf,
  checkHeaderLength,
  dtypeOfData,
  fileOrder,
  findDuplicateKey,
  numelOf,
  parseHeader,
  typedArrayOf,
} from './safetensors_header';
export { SafetensorsFile, type SafetensorsTensor, readSafetensors } from './safetensors_reader';
export {
  type PlannedTensor,
  type SafetensorsTensorInput,
  type StreamWriteOptions,
  planTensor,
  writeSafetensors,
  writeSafetensorsStream,
} from './safetensors_writer';
