// Counts optimizer steps so a scheduler can tell when scheduler.step() comes first.
// torch wraps `optimizer.step` with a counter when a scheduler is created; this does the
// same on the optimizer instance (its own `step` / `stepAsync` properties shadow the class
// methods), so any Optimizer subclass works and optimizer.ts needs no hook of its own.
import type { Optimizer, ParamGroup } from '../optimizer';

interface StepCounter {
  count: number;
}

const counters = new WeakMap<object, StepCounter>();
// The wrappers this module installed: a later replacement of opt.step is not among them.
const wrappers = new WeakSet<object>();

/** The optimizer's step counter (torch's `optimizer._step_count`), created at 0. */
export function optimizerStepCounter(optimizer: Optimizer<ParamGroup>): StepCounter {
  let counter = counters.get(optimizer);
  if (!counter) {
    counter = { count: 0 };
    counters.set(optimizer, counter);
  }
  return counter;
}

/** Wraps the instance's step() and stepAsync() once; later calls leave them as they are. */
export function hookOptimizerStep(optimizer: Optimizer<ParamGroup>): void {
  const counter = optimizerStepCounter(optimizer);
  const target = optimizer as unknown as Record<string, unknown>;
  for (const name of ['step', 'stepAsync']) {
    const method = target[name];
    if (typeof method !== 'function' || wrappers.has(method)) continue;
    // Counted after the call returns: a step that throws changed nothing, so it is no step.
    // stepAsync counts once the step is queued, which is before the user's next line runs.
    const wrapper = function (this: unknown, ...args: unknown[]): unknown {
      const result = (method as (...a: unknown[]) => unknown).apply(this, args);
      counter.count += 1;
      return result;
    };
    wrappers.add(wrapper);
    Object.defineProperty(optimizer, name, { value: wrapper, writable: true, configurable: true, enumerable: false });
  }
}

/** False once someone replaced opt.step after the scheduler wrapped it. */
export function isStepHooked(optimizer: Optimizer<ParamGroup>): boolean {
  const step = (optimizer as unknown as Record<string, unknown>).step;
  return typeof step === 'function' && wrappers.has(step);
}

const warned = new Set<string>();

/** A process warning shown once per process, as Python's default filter shows torch's. */
export function warnOnce(code: string, message: string): void {
  if (warned.has(code)) return;
  warned.add(code);
  process.emitWarning(message, { type: 'FusedOptimWarning', code });
}
