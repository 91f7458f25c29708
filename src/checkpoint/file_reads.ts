// Reads of an open file: whole ranges, the safetensors header, opening with a named error.
// Kept apart from the public reader (safetensors_reader.ts) so that its declarations do not
// refer to Node's FileHandle type: TypeScript users without @types/node can use the package.
import { promises as fsp } from 'node:fs';
import type { FileHandle } from './atomic';
import { FormatError, SafetensorsError } from './errors';
import { parseHeaderOffThread } from './header_table';
import { type ParsedHeader, checkHeaderLength } from './safetensors_header';

const READ_CHUNK = 64 << 20; // below the 2 GiB limit of one read()

export async function readFully(fh: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(READ_CHUNK, into.length - done);
    const { bytesRead } = await fh.read(into, done, want, position + done);
    if (bytesRead === 0)
      throw new FormatError(
        'IoError',
        `the file ended at byte ${position + done} while reading (it shrank while being read?)`,
      );
    done += bytesRead;
  }
}

/** A header as read from an open file: the raw bytes (for checksums) and their parse. */
export interface RawHeader {
  fileSize: number;
  /** The first 8 + headerLength bytes of the file. */
  bytes: Uint8Array;
  parsed: ParsedHeader;
}

/** Reads and checks the header of an open file; throws FormatError. */
export async function readHeader(fh: FileHandle): Promise<RawHeader> {
  const stat = await fh.stat();
  if (!stat.isFile()) throw new FormatError('IoError', 'not a regular file');
  const size = stat.size;
  const prefix = new Uint8Array(8);
  if (size >= 8) await readFully(fh, prefix, 0);
  const headerLength = checkHeaderLength(prefix, size);
  const bytes = new Uint8Array(8 + headerLength);
  bytes.set(prefix);
  await readFully(fh, bytes.subarray(8), 8);
  return { fileSize: size, bytes, parsed: await parseHeaderOffThread(bytes.subarray(8), size) };
}

/** Opens a file for reading; a failure is a SafetensorsError ('IoError') naming it. */
export async function openForReading(file: string): Promise<FileHandle> {
  try {
    return await fsp.open(file, 'r');
  } catch (e) {
    throw new SafetensorsError(
      file,
      `cannot open the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      'IoError',
      { cause: e },
    );
  }
}
