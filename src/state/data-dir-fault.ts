/**
 * A data dir the node cannot write to (issue 13, item 5): a full disk, a read-only mount, no permission,
 * a failing device. What LevelDB does then (classic-level, checked on a full 4 MiB tmpfs): the write
 * that hits it rejects with `LEVEL_IO_ERROR` ("IO error: .../000003.log: No space left on device"), and
 * so does every write after it; reads still work; an open on the full disk fails ("Database failed to
 * open", the IO error as its cause); on a disk with room again the store opens with every write that
 * had resolved. So the node stops at the first such write, with one line naming the data dir and the
 * cause, and exits 1: it neither carries on with writes that do not land nor crash-loops.
 */
import { MurmurError } from '../errors.ts'

export type DataDirFaultCode = 'DISK_FULL' | 'READ_ONLY' | 'NO_ACCESS' | 'IO_FAILED'

/** The node cannot write its data dir; the message is the one line the user sees. */
export class DataDirError extends MurmurError<DataDirFaultCode> {}

const KINDS: ReadonlyArray<{
  code: DataDirFaultCode
  errno: string[]
  text: RegExp
  cause: string
  fix: string
}> = [
  {
    code: 'DISK_FULL',
    errno: ['ENOSPC', 'EDQUOT'],
    text: /no space left on device|disk quota exceeded/i,
    cause: 'no space left on device (ENOSPC)',
    fix: 'free space on it and start the node again',
  },
  {
    code: 'READ_ONLY',
    errno: ['EROFS'],
    text: /read-only file system/i,
    cause: 'read-only file system (EROFS)',
    fix: 'mount it read-write and start the node again',
  },
  {
    code: 'NO_ACCESS',
    errno: ['EACCES', 'EPERM'],
    text: /permission denied|operation not permitted/i,
    cause: 'permission denied (EACCES)',
    fix: 'give the node write access to it and start it again',
  },
  {
    code: 'IO_FAILED',
    errno: ['EIO'],
    text: /input\/output error/i,
    cause: 'input/output error (EIO)',
    fix: 'check the device and start the node again',
  },
]

/** The error and its causes, outermost first (bounded: a cause chain may loop). */
function chain(err: unknown): Array<{ code?: unknown; message?: unknown }> {
  const out: Array<{ code?: unknown; message?: unknown }> = []
  let e: unknown = err
  while (e !== null && typeof e === 'object' && out.length < 8) {
    out.push(e as { code?: unknown; message?: unknown })
    e = (e as { cause?: unknown }).cause
  }
  return out
}

/**
 * When `err` (or one of its causes) says the data dir cannot be written, the {@link DataDirError} to stop
 * with; otherwise undefined. `when` says what the node was doing ("at start", "while writing").
 */
export function dataDirFault(err: unknown, dataDir: string, when: string): DataDirError | undefined {
  if (err instanceof DataDirError) return err
  const links = chain(err)
  for (const k of KINDS) {
    const hit = links.some(
      (l) =>
        (typeof l.code === 'string' && k.errno.includes(l.code)) ||
        (typeof l.message === 'string' && k.text.test(l.message)),
    )
    if (hit)
      return new DataDirError(
        k.code,
        `data dir ${dataDir}: ${k.cause} ${when}; the node stopped and its store is intact: ${k.fix}`,
        { cause: err },
      )
  }
  return undefined
}
