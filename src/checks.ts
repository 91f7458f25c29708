// The argument checks of the whole package, in one vocabulary (in the spirit of sharp's
// lib/is.js): every public function checks its arguments with these before it changes
// anything, and every message has one form, `${what} must be ${expected}, got ${describe(v)}`,
// where `what` names the argument ("AdamW options: lr", "param group 1: betas[0]").
//
// Error classes, as Node's own ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE / ERR_OUT_OF_RANGE:
// - TypeError: a value of the wrong type ('0.1' for a number), a value that is none of the
//   allowed choices ('float64' for a dtype), an unknown option key, a missing required value;
// - RangeError: a value of the right type outside its range (NaN, -1, 1.5 for an integer).
// The addon checks again with the same rules (native/addon/args.h).

/** The value as a message shows it, with its type where the text alone would hide it. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'string': // quoted: "0.1" is a string where 0.1 would hide it
      return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint':
      return `the bigint ${value}n`;
    case 'boolean':
      return String(value);
    case 'symbol':
      return `a symbol (${value.description ?? ''})`;
    case 'function':
      return `a function${value.name ? ` (${value.name})` : ''}`;
  }
  if (Array.isArray(value)) {
    const items = value.slice(0, 4).map((v) => (typeof v === 'object' && v !== null ? describe(v) : inline(v)));
    return `an array [${items.join(', ')}${value.length > 4 ? ', ...' : ''}]`;
  }
  if (ArrayBuffer.isView(value))
    return `a ${className(value)} of ${(value as unknown as ArrayLike<unknown>).length ?? value.byteLength} elements`;
  const name = className(value as object);
  return name === 'Object' ? 'an object' : `${/^[AEIOU]/.test(name) ? 'an' : 'a'} ${name}`;
}

function inline(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : String(v);
}

function className(o: object): string {
  const proto = Object.getPrototypeOf(o) as { constructor?: { name?: string } } | null;
  return proto === null ? 'Object' : proto.constructor?.name || 'Object';
}

/** The message of every failed check. */
export function mustBe(what: string, expected: string, value: unknown): string {
  return `${what} must be ${expected}, got ${describe(value)}`;
}

export interface NumberRange {
  min?: number;
  max?: number;
  minExclusive?: boolean;
  maxExclusive?: boolean;
}

// "> 0", ">= 0", "in [0, 1)" (both bounds), or "" (none).
function rangeText({ min, max, minExclusive, maxExclusive }: NumberRange): string {
  const hasMin = min !== undefined && min !== -Infinity;
  const hasMax = max !== undefined && max !== Infinity;
  if (hasMin && hasMax) return `in ${minExclusive ? '(' : '['}${min}, ${max}${maxExclusive ? ')' : ']'}`;
  if (hasMin) return `${minExclusive ? '>' : '>='} ${min}`;
  if (hasMax) return `${maxExclusive ? '<' : '<='} ${max}`;
  return '';
}

function inRange(v: number, r: NumberRange): boolean {
  const { min = -Infinity, max = Infinity } = r;
  return (r.minExclusive ? v > min : v >= min) && (r.maxExclusive ? v < max : v <= max);
}

/**
 * A finite number within `range`: "lr must be a number, got \"0.1\"" (TypeError),
 * "must be a finite number, got NaN" or "must be > 0, got 0" (RangeError).
 */
export function checkNumber(value: unknown, what: string, range: NumberRange = {}): number {
  if (typeof value !== 'number') throw new TypeError(mustBe(what, 'a number', value));
  if (!Number.isFinite(value)) throw new RangeError(mustBe(what, 'a finite number', value));
  if (!inRange(value, range)) throw new RangeError(mustBe(what, rangeText(range), value));
  return value;
}

/** An integer within [min, max] (and within 2^53 - 1, where numbers stop being exact). */
export function checkInteger(value: unknown, what: string, { min = -Infinity, max = Infinity } = {}): number {
  if (typeof value !== 'number') throw new TypeError(mustBe(what, 'an integer', value));
  if (!Number.isInteger(value)) throw new RangeError(mustBe(what, 'an integer', value));
  if (value < min || value > max) throw new RangeError(mustBe(what, rangeText({ min, max }), value));
  if (!Number.isSafeInteger(value)) throw new RangeError(`${what} is out of range: ${value} is past 2^53 - 1`);
  return value;
}

export function checkBoolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') throw new TypeError(mustBe(what, 'a boolean', value));
  return value;
}

export function checkString(value: unknown, what: string): string {
  if (typeof value !== 'string') throw new TypeError(mustBe(what, 'a string', value));
  return value;
}

export function checkFunction<F extends (...args: never[]) => unknown>(value: unknown, what: string): F {
  if (typeof value !== 'function') throw new TypeError(mustBe(what, 'a function', value));
  return value as F;
}

/** One of `choices` (compared with ===); anything else is a TypeError, as Node's ERR_INVALID_ARG_VALUE. */
export function checkChoice<T>(value: unknown, what: string, choices: readonly T[]): T {
  if (!choices.includes(value as T)) {
    const list = choices.map((c) => (typeof c === 'string' ? `'${c}'` : String(c)));
    const expected = list.length === 1 ? list[0] : `${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}`;
    throw new TypeError(mustBe(what, `one of ${expected}`, value));
  }
  return value as T;
}

/** A non-null object that is not an array (a record of options, a state dict). */
export function checkObject(value: unknown, what: string, expected = 'an object'): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new TypeError(mustBe(what, expected, value));
  return value as Record<string, unknown>;
}

/** Keys a PyTorch or Hugging Face user may type for ours, beyond the snake_case spelling. */
const ALIASES: Record<string, string> = {
  learningRate: 'lr',
  learning_rate: 'lr',
  weightDecayRate: 'weightDecay',
  beta: 'betas',
  epsilon: 'eps',
  lastStep: 'lastEpoch',
  last_step: 'lastEpoch',
  numWarmupSteps: 'warmupSteps',
  num_warmup_steps: 'warmupSteps',
  numTrainingSteps: 'totalSteps',
  num_training_steps: 'totalSteps',
};

function snakeToCamel(key: string): string {
  return key.replace(/_+([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Edit distance counting a swap of two neighbours as one edit, for near misses ("weigthDecay"). */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The known key that `key` was probably meant to be, if any. */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const candidates = [snakeToCamel(key), ALIASES[key], ALIASES[snakeToCamel(key)]];
  for (const c of candidates) if (c !== undefined && c !== key && known.includes(c)) return c;
  const lower = key.toLowerCase().replace(/_/g, '');
  const sameLetters = known.find((k) => k.toLowerCase() === lower);
  if (sameLetters) return sameLetters;
  // One is the other cut short ("max" for "maxNorm", "max_norm" for "max").
  const prefix = known.find((k) => {
    const kl = k.toLowerCase();
    return Math.min(kl.length, lower.length) >= 3 && (kl.startsWith(lower) || lower.startsWith(kl));
  });
  if (prefix) return prefix;
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(key.length / 4)) + 1;
  for (const k of known) {
    const d = distance(lower, k.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

/** Throws a TypeError for the first key of `value` that is not in `known`, naming the key meant. */
export function checkKeys(value: Record<string, unknown>, what: string, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const meant = suggestKey(key, known);
    throw new TypeError(
      `${what}: unknown option '${key}'${meant ? ` (did you mean '${meant}'?)` : ''}; ` +
        `the options are ${known.map((k) => `'${k}'`).join(', ')}`,
    );
  }
}

/**
 * An options object: undefined is an empty one; anything but a plain object, or a key
 * outside `known`, is a TypeError (a misspelt option must not be silently ignored: a
 * PyTorch user's `weight_decay` would otherwise train with the default decay).
 */
export function checkOptions(value: unknown, what: string, known: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  const o = checkObject(value, what, 'an options object');
  checkKeys(o, what, known);
  return o;
}

/** `value` as an array of `length` finite numbers within `range`. */
export function checkNumberArray(value: unknown, what: string, length: number, range: NumberRange = {}): number[] {
  if (!Array.isArray(value)) throw new TypeError(mustBe(what, `an array of ${length} numbers`, value));
  if (value.length !== length) throw new RangeError(`${what} has ${value.length} entries but ${length} were expected`);
  return value.map((v, i) => checkNumber(v, `${what}[${i}]`, range));
}

/** A pair of momentum coefficients in [0, 1) (or [0, 1] with upperInclusive), as torch's betas. */
export function checkBetas(value: unknown, what: string, upperInclusive = false): [number, number] {
  if (!Array.isArray(value) || value.length !== 2) throw new TypeError(mustBe(what, 'an array of two numbers', value));
  const range = { min: 0, max: 1, maxExclusive: !upperInclusive };
  return [checkNumber(value[0], `${what}[0]`, range), checkNumber(value[1], `${what}[1]`, range)];
}
