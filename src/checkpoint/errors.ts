// The errors of the safetensors reader and of checkpoints. Each carries a stable `code`, for
// programs to branch on (messages may be reworded; codes are not). The safetensors codes are
// the names of the reference implementation's errors (SafeTensorError in safetensors'
// tensor.rs) where one fits.

/** Why a safetensors file was rejected. */
export type SafetensorsErrorCode =
  /** The file cannot be opened or read (`cause` has the system error). */
  | 'IoError'
  /** Fewer than the 8 bytes of the header length. */
  | 'HeaderTooSmall'
  /** The header length is over 100,000,000 bytes. */
  | 'HeaderTooLarge'
  /** The header length runs past the end of the file. */
  | 'InvalidHeaderLength'
  /** The header is not UTF-8. */
  | 'InvalidHeader'
  /** The header does not start with '{'. */
  | 'InvalidHeaderStart'
  /** The header is not a JSON object, has a key twice, or __metadata__ is not an object of strings. */
  | 'InvalidHeaderDeserialization'
  /** A tensor's dtype, shape or data_offsets are malformed, or disagree with each other. */
  | 'TensorInvalidInfo'
  /** The tensors' offsets leave a gap, overlap, or run past the data. */
  | 'InvalidOffset'
  /** The tensors do not cover the data exactly (truncated file, or bytes after the last tensor). */
  | 'MetadataIncompleteBuffer'
  /** A tensor asked for by name is not in the file. */
  | 'TensorNotFound';

/** A malformed file, or one that does not fit what was asked of it. `file` names it. */
export class SafetensorsError extends Error {
  readonly file: string;
  readonly reason: string;
  readonly code: SafetensorsErrorCode;
  constructor(file: string, reason: string, code: SafetensorsErrorCode, options?: { cause?: unknown }) {
    super(`${file}: ${reason}`, options);
    this.name = 'SafetensorsError';
    this.file = file;
    this.reason = reason;
    this.code = code;
  }
}

/** The reader's internal form of a SafetensorsError, before the file name is known. */
export class FormatError extends Error {
  readonly code: SafetensorsErrorCode;
  constructor(code: SafetensorsErrorCode, reason: string) {
    super(reason);
    this.code = code;
  }
}

/** Why a checkpoint could not be written or read. */
export type CheckpointErrorCode =
  | SafetensorsErrorCode
  /** A valid safetensors file that is not a fused-optim checkpoint. */
  | 'NotACheckpoint'
  /** A format version this code cannot read (newer, or malformed). */
  | 'UnsupportedVersion'
  /** A tensor, the manifest or the header fails its CRC-32: the file is corrupt. */
  | 'ChecksumMismatch'
  /** The manifest is malformed or disagrees with the header. */
  | 'InvalidManifest'
  /** The checkpoint's params do not fit `params` (names, dtypes, shapes). */
  | 'ParamMismatch'
  /** The optimizer state does not fit the optimizer (class, groups, state sizes), or is missing. */
  | 'OptimizerMismatch'
  /** The scheduler state does not fit the scheduler, or is missing. */
  | 'SchedulerMismatch'
  /** The scaler state does not fit the scaler, or is missing. */
  | 'ScalerMismatch'
  /** A part refused its state while being applied; what was applied before it was undone. */
  | 'Rejected'
  /** Applying failed midway (the file changed while being read, or a write failed): only partly applied. */
  | 'PartlyApplied'
  /** The optimizer is busy (a stepAsync() is running), or its state cannot be read. */
  | 'Busy'
  /** Writing, syncing or renaming the file failed; the previous file is unchanged. */
  | 'WriteFailed'
  /** An earlier background save failed and nothing awaited its `written` promise. */
  | 'BackgroundSaveFailed';

/** A checkpoint that cannot be written or read; `file` names it, `reason` and `code` say why. */
export class CheckpointError extends Error {
  readonly file: string;
  readonly reason: string;
  readonly code: CheckpointErrorCode;
  constructor(
    operation: string,
    file: string,
    reason: string,
    code: CheckpointErrorCode,
    options?: { cause?: unknown },
  ) {
    super(`${operation}: ${file}: ${reason}`, options);
    this.name = 'CheckpointError';
    this.file = file;
    this.reason = reason;
    this.code = code;
  }
}

/** A problem found while checking a checkpoint, before the file name and operation are added. */
export class CheckFailure extends Error {
  readonly code: CheckpointErrorCode;
  constructor(code: CheckpointErrorCode, reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.code = code;
  }
}

/** Throws a CheckFailure (for expressions: `x ?? fail(...)`). */
export function fail(code: CheckpointErrorCode, reason: string, cause?: unknown): never {
  throw new CheckFailure(code, reason, cause === undefined ? undefined : { cause });
}
