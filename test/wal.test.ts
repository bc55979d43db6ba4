import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { ConsensusWal, walKey } from '../src/consensus/wal.ts'
import { StorageError } from '../src/errors.ts'
import { Store } from '../src/state/store.ts'
import { tempStore } from './helpers/store.ts'
import { walTestBlock, walTestProposal, walTestSignature, walTestVote } from './helpers/wal-records.ts'

const sig = walTestSignature

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
    return undefined
  } catch (err) {
    expect(err).toBeInstanceOf(StorageError)
    return (err as StorageError).code
  }
}

describe('WAL durability and bounds', () => {
  const temp = tempStore('murmur-wal-bounds-')
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('an append reaches LevelDB with sync: true; the commit batch goes without', async () => {
    const store = temp.store
    // The options classic-level hands to its native batch write (what decides the fsync).
    const probe = store.db.batch()
    const proto = Object.getPrototypeOf(probe) as { _write(options: unknown): Promise<void> }
    await probe.close()
    const writes = vi.spyOn(proto, '_write')
    const wal = new ConsensusWal(store)
    await wal.append({ record: walTestVote(1, 0, 'prevote'), signature: sig })
    expect(writes).toHaveBeenCalledTimes(1)
    expect(writes.mock.calls[0]![0]).toMatchObject({ sync: true })
    await store.batch(await wal.pruneOps(2))
    expect(writes).toHaveBeenCalledTimes(2)
    expect(writes.mock.calls[1]![0]).toMatchObject({ sync: false })
  })

  it('a full height refuses the append and keeps every earlier record', async () => {
    const store = temp.store
    const wal = new ConsensusWal(store, { maxEntriesPerHeight: 4 })
    const kept = [
      walTestProposal(10, 0),
      walTestVote(10, 0, 'prevote'),
      walTestVote(10, 0, 'precommit'),
      walTestVote(10, 1, 'prevote'),
    ]
    for (const [i, record] of kept.entries()) {
      await wal.append({ record, signature: sig, block: walTestBlock(i, 100) })
    }
    expect(await codeOf(wal.append({ record: walTestVote(10, 1, 'precommit'), signature: sig }))).toBe(
      'WAL_FULL',
    )
    const expected = kept.map((record, i) => ({ record, signature: sig, block: walTestBlock(i, 100) }))
    expect(await wal.load(10)).toEqual(expected)
    // The bound is per height, and it holds after a restart (a new WAL over the same store).
    await wal.append({ record: walTestVote(11, 0, 'prevote'), signature: sig })
    const reopened = new ConsensusWal(store, { maxEntriesPerHeight: 4 })
    expect(await reopened.load(10)).toEqual(expected)
    expect(await codeOf(reopened.append({ record: walTestVote(10, 1, 'precommit'), signature: sig }))).toBe(
      'WAL_FULL',
    )
    // A WAL with a smaller bound refuses to load the height rather than load a part of it.
    expect(await codeOf(new ConsensusWal(store, { maxEntriesPerHeight: 3 }).load(10))).toBe('CORRUPT')
    expect(await new ConsensusWal(store).load(10)).toEqual(expected)
  })

  it('the byte bound refuses a block that would pass it, and keeps the height', async () => {
    const store = temp.store
    const wal = new ConsensusWal(store, { maxBytesPerHeight: 50_000 })
    const first = { record: walTestProposal(20, 0), signature: sig, block: walTestBlock(1, 20_000) }
    const second = { record: walTestVote(20, 0, 'precommit'), signature: sig, block: walTestBlock(2, 20_000) }
    await wal.append(first)
    await wal.append(second)
    const third = { record: walTestProposal(20, 1), signature: sig, block: walTestBlock(3, 20_000) }
    expect(await codeOf(wal.append(third))).toBe('WAL_FULL')
    // Small records still fit under the bound.
    await wal.append({ record: walTestVote(20, 1, 'prevote'), signature: sig })
    expect((await new ConsensusWal(store).load(20)).map((e) => walKey(e.record))).toEqual(
      [first.record, second.record, walTestVote(20, 1, 'prevote')].map(walKey),
    )
    expect((await new ConsensusWal(store).load(20))[0]).toEqual(first)
  })

  it('never overwrites a record, nor writes next to records of a height it did not load', async () => {
    const store = temp.store
    const wal = new ConsensusWal(store)
    const original = { record: walTestVote(30, 0, 'precommit'), signature: sig, block: walTestBlock(7, 64) }
    await wal.append(original)
    // Same height/round/step, another block: what a node that forgot its vote would sign.
    const conflicting = { ...original, block: walTestBlock(8, 64) }
    expect(await codeOf(wal.append(conflicting))).toBe('WAL_CONFLICT')
    // A process that did not load height 30 (the commit of 29 lost, say) must not sign at 30 blindly.
    const other = new ConsensusWal(store)
    expect(await codeOf(other.append({ record: walTestVote(30, 1, 'prevote'), signature: sig }))).toBe(
      'WAL_CONFLICT',
    )
    expect(await other.load(30)).toEqual([original])
    await other.append({ record: walTestVote(30, 1, 'prevote'), signature: sig })
    expect(await new ConsensusWal(store).load(30)).toEqual([
      original,
      { record: walTestVote(30, 1, 'prevote'), signature: sig },
    ])
  })
})

describe('WAL journal (consensus/wal-journal.ts)', () => {
  const temp = tempStore('murmur-wal-journal-')
  let dir: string
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-wal-journal-file-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  afterEach(() => {
    vi.restoreAllMocks()
  })
  const writesOf = async (store: Store) => {
    const probe = store.db.batch()
    const proto = Object.getPrototypeOf(probe) as { _write(options: unknown): Promise<void> }
    await probe.close()
    return vi.spyOn(proto, '_write')
  }
  /** What a power cut takes: LevelDB's writes that were never synced (here, deleted by hand). */
  const lose = async (store: Store, height: number) => {
    const rows = await store.range<Uint8Array>('wal', {
      gte: `${walKey(walTestVote(height, 0, 'prevote')).slice(0, 16)}/`,
      lt: '\uffff',
      limit: 1000,
    })
    await store.batch(
      rows.map(([key]) => ({ type: 'del' as const, sublevel: 'wal' as const, key })),
      { sync: true },
    )
    expect(await new ConsensusWal(store).load(height)).toEqual([])
  }

  it('an append is fdatasynced into the journal, not a synced LevelDB write; what LevelDB lost comes back', async () => {
    const store = temp.store
    const journal = join(dir, 'j1')
    const writes = await writesOf(store)
    const wal = new ConsensusWal(store, { journal })
    const entries = [
      { record: walTestProposal(40, 0), signature: sig, block: walTestBlock(1, 500) },
      { record: walTestVote(40, 0, 'prevote'), signature: sig },
      { record: walTestVote(40, 0, 'precommit'), signature: sig, block: walTestBlock(1, 500) },
    ]
    for (const e of entries) await wal.append(e)
    await wal.close()
    expect(writes.mock.calls.map((c) => (c[0] as { sync: boolean }).sync)).toEqual([false, false, false])
    vi.restoreAllMocks()
    await lose(store, 40)
    // A new process: the journal gives back every entry, and LevelDB holds them again (synced).
    const reopened = new ConsensusWal(store, { journal })
    expect(await reopened.load(40)).toEqual(entries)
    await reopened.close()
    expect(await new ConsensusWal(store).load(40)).toEqual(entries)
    // And the height is the WAL's own again: a conflicting vote is refused.
    const again = new ConsensusWal(store, { journal })
    await again.load(40)
    expect(await codeOf(again.append({ record: walTestVote(40, 0, 'prevote'), signature: sig }))).toBe(
      'WAL_CONFLICT',
    )
    await again.close()
  })

  it('a full journal takes one synced LevelDB write and starts over; nothing is lost across the wrap', async () => {
    const store = temp.store
    const journal = join(dir, 'j2')
    const writes = await writesOf(store)
    // Room for about three 1 KB entries.
    const wal = new ConsensusWal(store, { journal, journalBytes: 3_500 })
    const entries = Array.from({ length: 10 }, (_, r) => ({
      record: walTestVote(50, r, 'precommit'),
      signature: sig,
      block: walTestBlock(r, 1_000),
    }))
    for (const e of entries) await wal.append(e)
    await wal.close()
    const synced = writes.mock.calls.filter((c) => (c[0] as { sync: boolean }).sync).length
    expect(synced).toBeGreaterThanOrEqual(2)
    expect(synced).toBeLessThan(entries.length)
    vi.restoreAllMocks()
    expect(await new ConsensusWal(store).load(50)).toEqual(entries)
    // What the journal holds since its last wrap is the newest entries, in order.
    await lose(store, 50)
    const reopened = new ConsensusWal(store, { journal, journalBytes: 3_500 })
    const back = await reopened.load(50)
    await reopened.close()
    expect(back.length).toBeGreaterThan(0)
    expect(back).toEqual(entries.slice(entries.length - back.length))
  })

  it('a torn last record ends the chain: the records before it come back, it does not', async () => {
    const store = temp.store
    const journal = join(dir, 'j3')
    const wal = new ConsensusWal(store, { journal })
    const entries = [0, 1, 2].map((r) => ({ record: walTestVote(60, r, 'prevote'), signature: sig }))
    for (const e of entries) await wal.append(e)
    await wal.close()
    // A power cut in the middle of the third record's write: its last byte never reached the disk.
    const bytes = await readFile(journal)
    let end = 0
    for (let i = 0; i < 3; i++) end += 24 + bytes.readUInt32BE(end + 12) + bytes.readUInt32BE(end + 16)
    bytes[end - 1] = bytes[end - 1]! ^ 0xff
    await writeFile(journal, bytes)
    await lose(store, 60)
    const reopened = new ConsensusWal(store, { journal })
    expect(await reopened.load(60)).toEqual(entries.slice(0, 2))
    // The next process writes its own chain over it: the WAL takes appends again.
    await reopened.append(entries[2]!)
    await reopened.close()
    expect(await new ConsensusWal(store).load(60)).toEqual(entries)
  })
})

describe('WAL across a killed process', () => {
  let dir: string | undefined
  afterEach(async () => {
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    dir = undefined
  })

  // SIGKILL leaves the OS page cache alone, so this does not prove the fsync (the sync test above spies on
  // it); it proves the ordering: a record whose append resolved is in the WAL whatever happens after.
  // With the journal, LevelDB's write of the last entries may not have run when the kill comes (it is on
  // the thread pool): the journal gives them back.
  it.each([
    ['LevelDB synced', false],
    ['the journal', true],
  ])('keeps every record whose append resolved before SIGKILL (%s)', async (_, withJournal) => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-wal-kill-'))
    const location = join(dir, 'db')
    const journal = join(dir, 'wal-journal')
    const writer = fileURLToPath(new URL('./helpers/wal-writer.ts', import.meta.url))
    const args = withJournal ? [writer, location, journal] : [writer, location]
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    const announced: string[] = []
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    )
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop()!
      announced.push(...lines)
      // Killed mid-stream, the moment 40 appends resolved, while the next one is under way.
      if (announced.length >= 40) child.kill('SIGKILL')
    })
    const deadline = setTimeout(() => child.kill('SIGKILL'), 30_000)
    const exit = await exited
    clearTimeout(deadline)
    expect(exit, stderr).toEqual({ code: null, signal: 'SIGKILL' })
    expect(announced.length).toBeGreaterThanOrEqual(40)

    const store = new Store(location)
    await store.open()
    try {
      const wal = new ConsensusWal(store, withJournal ? { journal } : {})
      const entries = await wal.load(1)
      await wal.close()
      const held = new Map(entries.map((e) => [walKey(e.record), e]))
      for (const line of announced) {
        const [round, step] = line.split('/').map(Number) as [number, number]
        const record = walTestVote(1, round, step === 1 ? 'prevote' : 'precommit')
        const entry = held.get(walKey(record))
        expect(entry, `announced ${line}`).toEqual(
          step === 1 ? { record, signature: sig } : { record, signature: sig, block: walTestBlock(round) },
        )
      }
      // No gaps: what is there is a prefix of what the writer appended, in order.
      const order = entries.map((e) =>
        e.record.type === 'vote' ? `${e.record.vote.round}/${e.record.vote.kind}` : '',
      )
      const expected = Array.from(
        { length: entries.length },
        (_, i) => `${i >> 1}/${i % 2 === 0 ? 'prevote' : 'precommit'}`,
      )
      expect(order).toEqual(expected)
    } finally {
      await store.close()
    }
  })
})
