// The assertions the validation suites share: an error of the given class whose message
// matches, and a comparable view of an optimizer's groups.
import { expect } from 'vitest';
import type { FusedOptimizer } from '../../src/fused_optimizer';
import type { ParamGroup } from '../../src/optimizer';

export type ErrorClass = typeof Error | typeof TypeError | typeof RangeError;

/** Runs fn and checks it threw an instance of (one of) cls whose message matches every pattern. */
export function expectThrows(fn: () => unknown, cls: ErrorClass | ErrorClass[], messages: RegExp[], what = ''): Error {
  let error: unknown;
  try {
    fn();
  } catch (e) {
    error = e;
  }
  const classes = Array.isArray(cls) ? cls : [cls];
  expect(error, `${what}: expected an error`).toBeInstanceOf(Error);
  expect(
    classes.some((c) => error instanceof c),
    `${what}: expected ${classes.map((c) => c.name).join(' or ')}, got ${(error as Error).constructor.name}: ${(error as Error).message}`,
  ).toBe(true);
  for (const m of messages) expect((error as Error).message, what).toMatch(m);
  return error as Error;
}

/** The groups with params as names and arrays copied (comparable with toEqual). */
export function groupsOf(opt: FusedOptimizer<ParamGroup, object, object>): unknown[] {
  return opt.paramGroups.map(({ params, ...rest }) => ({
    ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, Array.isArray(v) ? [...v] : v])),
    params: params.map((p) => p.name),
  }));
}
