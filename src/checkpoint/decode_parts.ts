// The JSON parts of a checkpoint, decoded for loading: `extra`, and the scheduler's and
// scaler's state dicts. A scheduler of this package checks its dict here, before anything
// is applied, and hands back a commit.
import { LRScheduler, PARSE_STATE_DICT } from '../schedulers/lr_scheduler';
import { type LoadCall, className } from './calls';
import { fail } from './errors';
import { decodeValue } from './load_checks';
import type { Manifest } from './manifest';
import type { TensorData } from './safetensors_header';

export interface DecodedParts {
  extra: unknown;
  schedulerDict?: unknown;
  /** For an LRScheduler: its checked dict, ready to commit (it cannot refuse). */
  schedulerCommit?: () => void;
  scalerDict?: unknown;
}

export function decodeParts(manifest: Manifest, call: LoadCall, values: ReadonlyMap<string, TensorData>): DecodedParts {
  const resolve = (tensor: string) => values.get(tensor);
  const parts: DecodedParts = {
    extra: manifest.extra === undefined ? undefined : decodeValue(manifest.extra, 'extra', resolve),
  };
  if (call.scheduler) {
    parts.schedulerDict = decodeValue(manifest.scheduler!.state_dict, 'scheduler state', resolve);
    if (call.scheduler instanceof LRScheduler) {
      try {
        parts.schedulerCommit = call.scheduler[PARSE_STATE_DICT](
          parts.schedulerDict,
          `${className(call.scheduler)}.loadStateDict`,
        );
      } catch (e) {
        fail('SchedulerMismatch', `the scheduler's state does not fit the scheduler (${(e as Error).message})`, e);
      }
    }
  }
  if (call.scaler) parts.scalerDict = decodeValue(manifest.scaler!.state_dict, 'scaler state', resolve);
  return parts;
}
