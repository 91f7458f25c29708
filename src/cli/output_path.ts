// Output files are checked before the work that fills them: a demo or a benchmark must not
// run for minutes and then lose its results to a typo in --out.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/**
 * Throws an Error naming the option and the reason when `file` cannot be written: a
 * directory, a missing or read-only directory, a read-only file. The file is not created.
 */
export function checkWritable(file: string, option: string): void {
  const path = resolve(file);
  let reason: string | undefined;
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) reason = 'it is a directory';
    else if (!canWrite(path)) reason = 'the file is read-only';
  } else if (!existsSync(dirname(path))) {
    reason = `the directory ${dirname(path)} does not exist`;
  } else if (!statSync(dirname(path)).isDirectory()) {
    reason = `${dirname(path)} is not a directory`;
  } else if (!canWrite(dirname(path))) {
    reason = `the directory ${dirname(path)} is read-only`;
  }
  if (reason) throw new Error(`${option} ${file}: cannot write there (${reason})`);
}

function canWrite(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}
