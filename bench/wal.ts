/**
 * Cost of the WAL's fsync per height: appends what one height produces to the WAL of a fresh LevelDB (a
 * proposal with its block, a prevote, a precommit with the block), then writes the height's commit batch
 * (the block and the WAL prune), as the driver does. Three modes, interleaved run by run so that they share
 * the machine's noise:
 * - `nosync`: the WAL appends without fsync (what the node did before), commit unsynced;
 * - `sync`: every append a synced LevelDB write, commit unsynced (the node until session 16);
 * - `journal`: every append fdatasynced into the WAL's journal and written to LevelDB unsynced
 *   (consensus/wal-journal.ts: what the node does);
 * - `sync+commit`: `sync` with the commit batch fsynced too (what docs/decisions.md decides against).
 * Prints, per block size and mode, the median over runs of each run's median and p90 of the WAL time per
 * height and of the whole height (WAL + commit), and the cost fsync adds. Never fails on time.
 *
 * Run: `npm run bench -- wal [--runs 5] [--heights 200] [--block-bytes 2000,17000,62000] [--dir DIR]`
 * (17,000 bytes: a block of 25 assignments with 12 health reports, about one height's work at 100
 * intents/s; 2,000 an empty block; 62,000 a block of 100 assignments).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import type { Hex } from 'viem'
import type { WalRecord } from '../src/consensus/types.ts'
import { ConsensusWal } from '../src/consensus/wal.ts'
import { heightKey, Store, type SublevelName, type WriteOptions } from '../src/state/store.ts'
import { median, percentile } from './lib.ts'

const { values: args } = parseArgs({
  args: process.argv.slice(process.argv[2] === 'wal' ? 3 : 2),
  options: {
    runs: { type: 'string', default: '5' },
    heights: { type: 'string', default: '200' },
    'block-bytes': { type: 'string', default: '2000,17000,62000' },
    dir: { type: 'string' },
  },
})
const RUNS = Number(args.runs)
const HEIGHTS = Number(args.heights)
const SIZES = args['block-bytes'].split(',').map(Number)

type Mode = 'nosync' | 'sync' | 'journal' | 'sync+commit'
const MODES: readonly Mode[] = ['nosync', 'sync', 'journal', 'sync+commit']

/** A Store whose writes never fsync, whatever the caller asks: the WAL as it was before. */
class UnsyncedStore extends Store {
  override async put(
    sublevel: SublevelName,
    key: string,
    value: unknown,
    _opts?: WriteOptions,
  ): Promise<void> {
    await super.put(sublevel, key, value)
  }
}

const FROM = `0x${'ab'.repeat(20)}`
const SIG = `0x${'11'.repeat(65)}` as Hex

function heightRecords(height: number, value: string): WalRecord[] {
  return [
    { type: 'proposal', proposal: { height, round: 0, value, validRound: -1, from: FROM } },
    { type: 'vote', vote: { kind: 'prevote', height, round: 0, value, from: FROM } },
    { type: 'vote', vote: { kind: 'precommit', height, round: 0, value, from: FROM } },
  ]
}

interface RunResult {
  /** Per height, ms: the three appends. */
  wal: number[]
  /** Per height, ms: the three appends and the commit batch. */
  total: number[]
}

async function runOnce(mode: Mode, blockBytes: number, base: string): Promise<RunResult> {
  const dir = await mkdtemp(join(base, 'murmur-bench-wal-'))
  const store = mode === 'nosync' ? new UnsyncedStore(join(dir, 'db')) : new Store(join(dir, 'db'))
  await store.open()
  const wal = new ConsensusWal(store, mode === 'journal' ? { journal: join(dir, 'wal-journal') } : {})
  const block = new Uint8Array(blockBytes)
  for (let i = 0; i < blockBytes; i++) block[i] = (i * 131) & 0xff
  const out: RunResult = { wal: [], total: [] }
  try {
    for (let h = 1; h <= HEIGHTS; h++) {
      block[0] = h & 0xff // a new block each height (LevelDB does not compress, but keep it honest)
      const value = `0x${h.toString(16).padStart(64, '0')}`
      const [proposal, prevote, precommit] = heightRecords(h, value) as [WalRecord, WalRecord, WalRecord]
      const t0 = performance.now()
      await wal.append({ record: proposal, signature: SIG, block })
      await wal.append({ record: prevote, signature: SIG })
      await wal.append({ record: precommit, signature: SIG, block })
      const t1 = performance.now()
      const ops = [
        { type: 'put' as const, sublevel: 'blocks' as const, key: heightKey(h), value: block },
        ...(await wal.pruneOps(h + 1)),
      ]
      await store.batch(ops, { sync: mode === 'sync+commit' })
      const t2 = performance.now()
      out.wal.push(t1 - t0)
      out.total.push(t2 - t0)
    }
  } finally {
    await wal.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  }
  return out
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b)
const ms = (x: number) => x.toFixed(2)

const base = args.dir ?? tmpdir()
console.log(
  `WAL fsync benchmark: ${RUNS} runs x ${HEIGHTS} heights per mode, LevelDB under ${base}, ` +
    `${availableParallelism()} cores, load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
)
for (const size of SIZES) {
  const per = new Map<Mode, { walP50: number[]; walP90: number[]; totP50: number[]; totP90: number[] }>(
    MODES.map((m) => [m, { walP50: [], walP90: [], totP50: [], totP90: [] }]),
  )
  for (let r = 0; r < RUNS; r++) {
    for (const mode of MODES) {
      const res = await runOnce(mode, size, base)
      const w = sorted(res.wal)
      const t = sorted(res.total)
      const p = per.get(mode)!
      p.walP50.push(percentile(w, 50))
      p.walP90.push(percentile(w, 90))
      p.totP50.push(percentile(t, 50))
      p.totP90.push(percentile(t, 90))
    }
  }
  console.log(`\nblock ${size} bytes (medians over ${RUNS} runs of each run's p50 / p90, ms per height)`)
  console.log('mode          WAL p50   WAL p90   height p50   height p90')
  for (const mode of MODES) {
    const p = per.get(mode)!
    console.log(
      `${mode.padEnd(12)}  ${ms(median(p.walP50)).padStart(7)}   ${ms(median(p.walP90)).padStart(7)}` +
        `   ${ms(median(p.totP50)).padStart(10)}   ${ms(median(p.totP90)).padStart(10)}`,
    )
  }
  const a = per.get('nosync')!
  const b = per.get('sync')!
  const j = per.get('journal')!
  const c = per.get('sync+commit')!
  console.log(
    `fsync of the WAL adds ${ms(median(b.totP50) - median(a.totP50))} ms per height at p50, ` +
      `${ms(median(b.totP90) - median(a.totP90))} ms at p90; the journal ` +
      `${ms(median(j.totP50) - median(a.totP50))} ms at p50, ${ms(median(j.totP90) - median(a.totP90))} ms ` +
      `at p90; syncing the commit too would add ${ms(median(c.totP50) - median(b.totP50))} ms more at p50`,
  )
}
