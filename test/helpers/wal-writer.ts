/**
 * Child process of the WAL crash test (test/wal.test.ts): appends a prevote and a precommit with a block
 * for round after round of height 1 to the WAL of the LevelDB at argv[2], and prints `<round>/<step>` on
 * stdout after each append resolves. The parent kills it with SIGKILL part-way. With argv[3], the WAL
 * has that journal file (wal-journal.ts).
 */
import { ConsensusWal } from '../../src/consensus/wal.ts'
import { Store } from '../../src/state/store.ts'
import { walTestBlock, walTestSignature, walTestVote } from './wal-records.ts'

const location = process.argv[2]
if (location === undefined) throw new Error('usage: wal-writer.ts <db location>')
const store = new Store(location)
await store.open()
const journal = process.argv[3]
const wal = new ConsensusWal(store, journal === undefined ? {} : { journal })
// Bounded, so that a parent that never kills it does not leave it running: the test fails on a clean exit.
for (let round = 0; round < 5000; round++) {
  await wal.append({ record: walTestVote(1, round, 'prevote'), signature: walTestSignature })
  process.stdout.write(`${round}/1\n`)
  await wal.append({
    record: walTestVote(1, round, 'precommit'),
    signature: walTestSignature,
    block: walTestBlock(round),
  })
  process.stdout.write(`${round}/2\n`)
}
await store.close()
