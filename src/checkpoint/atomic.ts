// Atomic file replacement: write a temporary file in the target's folder, fsync it, rename
// it over the target, fsync the folder. A crash or kill at any moment leaves the old file or
// the new one under the target's name, never a partial one; a failed write removes its
// temporary file. Temporary files are named `.<name>.tmp-<host>-<pid>-<random>`, so a
// successful write can remove the ones that killed processes of this host left behind.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export type FileHandle = fsp.FileHandle;

function hostTag(): string {
  return (
    os
      .hostname()
      .replace(/[^A-Za-z0-9_]/g, '_')
      .slice(0, 64) || 'host'
  );
}

function tempPrefix(base: string): string {
  return `.${base}.tmp-${hostTag()}-`;
}

/** The temporary file name a write of `file` by this process would use (for tests and docs). */
export function temporaryPathFor(file: string, pid = process.pid, random = randomBytes(6).toString('hex')): string {
  const abs = path.resolve(file);
  return path.join(path.dirname(abs), `${tempPrefix(path.basename(abs))}${pid}-${random}`);
}

/**
 * Writes `file` atomically: `write` fills a temporary file in the same folder, which is then
 * fsynced, closed and renamed over `file`, and the folder is fsynced. If anything fails the
 * temporary file is removed and the error rethrown; `file` is untouched.
 */
export async function atomicWrite(file: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const target = path.resolve(file);
  const dir = path.dirname(target);
  const tmp = temporaryPathFor(target);
  let fh: FileHandle | undefined = await fsp.open(tmp, 'wx');
  let renamed = false;
  try {
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, target);
    renamed = true;
  } finally {
    if (!renamed) {
      if (fh) await fh.close().catch(() => {});
      await fsp.unlink(tmp).catch(() => {});
    }
  }
  await fsyncDirectory(dir);
  await removeStaleTemporaries(dir, path.basename(target));
}

async function fsyncDirectory(dir: string): Promise<void> {
  let dh: FileHandle | undefined;
  try {
    dh = await fsp.open(dir, 'r');
    await dh.sync();
  } catch (e) {
    // Some platforms and file systems cannot fsync a directory; the rename is still atomic.
    const code = (e as NodeJS.ErrnoException).code;
    if (!['EISDIR', 'EINVAL', 'EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EACCES'].includes(code ?? '')) throw e;
  } finally {
    await dh?.close().catch(() => {});
  }
}

/**
 * Removes temporary files of `base` left by processes of this host that no longer run (a
 * save killed midway). Best effort: never throws. Files of live processes, and of other
 * hosts sharing the folder, are left alone.
 */
export async function removeStaleTemporaries(dir: string, base: string): Promise<string[]> {
  const removed: string[] = [];
  try {
    const prefix = tempPrefix(base);
    for (const name of await fsp.readdir(dir)) {
      if (!name.startsWith(prefix)) continue;
      const m = /^(\d+)-[0-9a-f]+$/.exec(name.slice(prefix.length));
      if (!m) continue;
      const pid = Number(m[1]);
      if (pid === process.pid || isAlive(pid)) continue;
      try {
        await fsp.unlink(path.join(dir, name));
        removed.push(name);
      } catch {
        // gone already, or not ours to remove
      }
    }
  } catch {
    // an unreadable folder: nothing to clean
  }
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
