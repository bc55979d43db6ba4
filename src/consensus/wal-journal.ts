/**
 * The WAL's journal (docs/decisions.md, "The WAL's journal"): what makes an append durable before the
 * driver speaks, without a synced LevelDB write on the critical path of every vote.
 *
 * A file of fixed size, allocated (zeros, fsynced) when it is created. Each entry is written into it in
 * place, after the one before, and fdatasynced before `write` returns: an overwrite of allocated blocks
 * changes no file metadata, so the fdatasync waits for one data write, not for an ext4 journal commit
 * that all the node's other writes (and every other process on the disk) queue behind, which is what a
 * synced LevelDB put does (measured at 7 to 18 ms per vote under the consensus bench, against about
 * 1 ms for this). The calls are synchronous: an entry is durable in the same turn of the event loop,
 * and a vote does not wait for a thread-pool round trip behind gossip work.
 *
 * A record: magic `MWJ1` (u32), seq (u64, one more than the record before), key length (u32), value
 * length (u32), CRC-32 of everything else (u32), then the key (UTF-8) and the value. `open` reads the
 * chain from offset 0 while the magic, the seq and the CRC hold: a torn last record (a power cut mid-write)
 * ends it. A new process and a wrap both start over at offset 0 with the seq going on (from the clock when
 * no chain was found), so what is left of older chains beyond never continues the new one.
 *
 * The journal never holds the only copy of an entry it is about to overwrite: before a wrap the WAL makes
 * LevelDB durable (a synced write), and at open it writes what it recovered back into LevelDB, synced.
 */
import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  writeSync,
} from 'node:fs'
import { crc32 } from 'node:zlib'
import { StorageError } from '../errors.ts'

/**
 * Default size of the journal file: 2 MiB, some 80 heights of a busy devnet (a proposal and a precommit
 * with a 20 KB block, a prevote), so one append in 80 heights is a synced LevelDB write (the wrap). An
 * entry larger than the file (a block near MAX_BLOCK_BYTES twice over) goes to LevelDB synced.
 */
export const JOURNAL_BYTES = 2 * 1024 * 1024

const MAGIC = 0x4d574a31 // 'MWJ1'
const HEADER = 24

/** One record the journal held at open. */
export interface JournalRecord {
  readonly key: string
  readonly value: Uint8Array
}

function fail(path: string, what: string, err: unknown): never {
  throw new StorageError('WRITE_FAILED', `WAL journal ${path}: ${what}: ${(err as Error).message}`, {
    cause: err,
  })
}

export class WalJournal {
  readonly path: string
  readonly capacity: number
  /** The chain found at open, oldest first. */
  readonly recovered: readonly JournalRecord[]
  #fd: number
  #offset = 0
  #seq: bigint

  private constructor(path: string, fd: number, capacity: number, recovered: JournalRecord[], seq: bigint) {
    this.path = path
    this.#fd = fd
    this.capacity = capacity
    this.recovered = recovered
    this.#seq = seq
  }

  /** Opens (creating and allocating if need be) the journal at `path` and reads its chain. */
  static open(path: string, capacity = JOURNAL_BYTES): WalJournal {
    let fd: number
    try {
      // Read-write, created if missing; not 'a+', whose writes ignore the offset.
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o600)
    } catch (err) {
      fail(path, 'open', err)
    }
    let size = 0
    try {
      size = fstatSync(fd).size
      if (size < capacity) {
        // Allocated with real zeros (not a sparse hole), so an overwrite never needs a new block.
        const zeros = Buffer.alloc(Math.min(1024 * 1024, capacity))
        for (let at = size; at < capacity; at += zeros.length)
          writeSync(fd, zeros, 0, Math.min(zeros.length, capacity - at), at)
        fsyncSync(fd)
      }
    } catch (err) {
      closeSync(fd)
      fail(path, 'allocate', err)
    }
    // A file larger than asked for (made with a larger size) is used whole: its records stay readable.
    capacity = Math.max(capacity, size)
    const { records, lastSeq } = readChain(fd, capacity)
    // With no chain (a new file, or a torn first record) the seq starts from the clock, so a record left
    // of an older chain cannot happen to follow the new one.
    const next = records.length > 0 ? lastSeq + 1n : BigInt(Date.now()) * 1_000_000n
    return new WalJournal(path, fd, capacity, records, next)
  }

  /** Bytes a record of this key and value takes. */
  static sizeOf(key: string, value: Uint8Array): number {
    return HEADER + Buffer.byteLength(key) + value.length
  }

  /** True when a record of this size fits before the end of the file (else the WAL syncs and rewinds). */
  fits(size: number): boolean {
    return this.#offset + size <= this.capacity
  }

  /** Writes one record at the current offset and fdatasyncs it. The caller checked `fits`. */
  write(key: string, value: Uint8Array): void {
    const k = Buffer.from(key)
    const size = HEADER + k.length + value.length
    if (!this.fits(size)) throw new Error(`journal record of ${size} bytes does not fit`)
    const buf = Buffer.allocUnsafe(size)
    buf.writeUInt32BE(MAGIC, 0)
    buf.writeBigUInt64BE(this.#seq, 4)
    buf.writeUInt32BE(k.length, 12)
    buf.writeUInt32BE(value.length, 16)
    k.copy(buf, HEADER)
    buf.set(value, HEADER + k.length)
    buf.writeUInt32BE(checksum(buf), 20)
    try {
      writeSync(this.#fd, buf, 0, size, this.#offset)
      fdatasyncSync(this.#fd)
    } catch (err) {
      fail(this.path, 'write', err)
    }
    this.#offset += size
    this.#seq += 1n
  }

  /** The next record goes to offset 0: everything written so far is durable elsewhere. */
  rewind(): void {
    this.#offset = 0
  }

  close(): void {
    if (this.#fd < 0) return
    closeSync(this.#fd)
    this.#fd = -1
  }
}

/** CRC-32 of a record with its CRC field taken as zero. */
function checksum(record: Buffer): number {
  const saved = record.readUInt32BE(20)
  record.writeUInt32BE(0, 20)
  const c = crc32(record)
  record.writeUInt32BE(saved, 20)
  return c
}

function readChain(fd: number, capacity: number): { records: JournalRecord[]; lastSeq: bigint } {
  const records: JournalRecord[] = []
  const header = Buffer.alloc(HEADER)
  let offset = 0
  let lastSeq = 0n
  let expected: bigint | undefined
  while (offset + HEADER <= capacity) {
    if (readSync(fd, header, 0, HEADER, offset) < HEADER) break
    if (header.readUInt32BE(0) !== MAGIC) break
    const seq = header.readBigUInt64BE(4)
    if (expected !== undefined && seq !== expected) break
    const keyLen = header.readUInt32BE(12)
    const valueLen = header.readUInt32BE(16)
    const size = HEADER + keyLen + valueLen
    if (offset + size > capacity) break
    const rec = Buffer.alloc(size)
    if (readSync(fd, rec, 0, size, offset) < size) break
    if (rec.readUInt32BE(20) !== checksum(rec)) break
    records.push({
      key: rec.subarray(HEADER, HEADER + keyLen).toString(),
      value: new Uint8Array(rec.subarray(HEADER + keyLen)),
    })
    lastSeq = seq
    expected = seq + 1n
    offset += size
  }
  return { records, lastSeq }
}
