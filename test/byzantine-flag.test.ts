/**
 * The test-only `--byzantine` flag (node/byzantine.ts): refused without MURMUR_TEST_BYZANTINE=1 (one line,
 * exit 2), and the seams it wraps: withheld votes are not sent, an equivocation is a second vote of the
 * same height, round and kind for another block signed by the same key, a lying health report is
 * re-signed by the liar, fork-after-restart deletes the WAL and signs another block at what it held.
 * The process-level network with every mode is test/e2e/byzantine.test.ts.
 */
import { spawnSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { type Hex, keccak256, toHex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterEach, describe, expect, it } from 'vitest'
import type { ConsensusMessage } from '../src/consensus/messages.ts'
import { recoverVoteSigner, type SignedVote, signVote } from '../src/consensus/votes.ts'
import { ConsensusWal } from '../src/consensus/wal.ts'
import { Byzantine, type ByzantineMode, parseByzantineModes } from '../src/node/byzantine.ts'
import { recoverHealthReportSigner, type SignedHealthReport } from '../src/rollups/health-report.ts'
import { Store } from '../src/state/store.ts'

const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts')
const NETWORK = 'byz-flag-test'
const account = privateKeyToAccount(keccak256(toHex('byzantine flag test key')))
const self = account.address.toLowerCase() as Hex
const log = pino({ level: 'silent' })
const byz = (modes: ByzantineMode[]) =>
  new Byzantine(new Set(modes), { account, networkId: NETWORK, targetChainId: 901n, log })

async function ownVote(kind: 'prevote' | 'precommit', blockHash: Hex | null): Promise<SignedVote> {
  return signVote(account, NETWORK, { kind, height: 5n, round: 1, blockHash })
}

describe('--byzantine', () => {
  const dirs: string[] = []
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
  })

  it('is refused unless MURMUR_TEST_BYZANTINE=1; unknown or no modes are refused too', () => {
    expect(() => parseByzantineModes('equivocate', {})).toThrow(/MURMUR_TEST_BYZANTINE=1/)
    expect(() => parseByzantineModes('equivocate', { MURMUR_TEST_BYZANTINE: 'yes' })).toThrow(
      expect.objectContaining({ code: 'BAD_OPTION' }),
    )
    const on = { MURMUR_TEST_BYZANTINE: '1' }
    expect(() => parseByzantineModes('equivocate,typo', on)).toThrow(/unknown mode typo/)
    expect(() => parseByzantineModes(',', on)).toThrow(/no mode/)
    expect([...parseByzantineModes('withhold, lie-health', on)]).toEqual(['withhold', 'lie-health'])
  })

  it('on the command line without the variable: one line on stderr, exit code 2, nothing started', () => {
    const env = { ...process.env }
    delete env.MURMUR_TEST_BYZANTINE
    const r = spawnSync(
      process.execPath,
      [CLI, 'node', 'start', '--data-dir', 'x', '--genesis', 'g', '--byzantine', 'equivocate'],
      { encoding: 'utf8', timeout: 30_000, env },
    )
    expect(r.status).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^murmur: error: .*test-only flag: refused unless the environment has/)
  })

  it('withhold sends none of its own votes; others’ messages and its proposals pass', async () => {
    const sent: ConsensusMessage[] = []
    const send = byz(['withhold']).wrapBroadcast(async (m) => {
      sent.push(m)
    })
    await send({ type: 'vote', vote: await ownVote('prevote', null) })
    const other = await signVote(privateKeyToAccount(keccak256(toHex('other'))), NETWORK, {
      kind: 'prevote',
      height: 5n,
      round: 1,
      blockHash: null,
    })
    await send({ type: 'vote', vote: other })
    expect(sent.map((m) => (m.type === 'vote' ? m.vote.validator : ''))).toEqual([other.validator])
  })

  it('equivocate sends, after each own vote, one of the same height, round and kind for another block', async () => {
    const sent: SignedVote[] = []
    const send = byz(['equivocate']).wrapBroadcast(async (m) => {
      if (m.type === 'vote') sent.push(m.vote)
    })
    const block = keccak256(toHex('a block'))
    await send({ type: 'vote', vote: await ownVote('prevote', block) })
    await send({ type: 'vote', vote: await ownVote('prevote', null) })
    expect(sent).toHaveLength(4)
    for (const k of [0, 2]) {
      const honest = sent[k]!
      const twin = sent[k + 1]!
      expect([twin.kind, twin.height, twin.round]).toEqual([honest.kind, honest.height, honest.round])
      expect(twin.blockHash).not.toBe(honest.blockHash)
      expect(twin.blockHash).not.toBeNull()
      expect(await recoverVoteSigner(NETWORK, twin)).toBe(self)
    }
  })

  it('lie-health re-signs its reports: the target rollup down, invented heads elsewhere', async () => {
    const published: Array<[string, unknown]> = []
    const host = {
      async publish(topic: string, payload: unknown) {
        published.push([topic, payload])
        return 1
      },
    }
    const wrapped = byz(['lie-health']).wrapHealthHost(host)
    const report = (chainId: bigint) => ({
      validator: self,
      chainId,
      blockNumber: 10n,
      gasUsed: 1n,
      gasLimit: 2n,
      gasUsedRatioBps: 5000,
      baseFeeWei: 1n,
      blockTimeMs: 1000,
      latencyMs: 1,
      status: 0 as const,
      timestampMs: 1n,
    })
    await wrapped.publish('health', { report: report(901n), signature: '0x' })
    await wrapped.publish('health', { report: report(902n), signature: '0x' })
    await wrapped.publish('fills', [])
    const [down, ahead] = published.map(([, p]) => p as SignedHealthReport)
    expect(down!.report.status).toBe(2)
    expect(ahead!.report.blockNumber).toBe(1_000_010n)
    expect(await recoverHealthReportSigner(NETWORK, ahead!)).toBe(self)
    expect(published[2]).toEqual(['fills', []])
  })

  it('fork-after-restart deletes the WAL and signs, for each vote it held, votes for other blocks', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-byz-'))
    dirs.push(dir)
    const store = new Store(join(dir, 'db'))
    await store.open()
    try {
      const wal = new ConsensusWal(store)
      const v = await ownVote('prevote', keccak256(toHex('signed before')))
      await wal.append({
        record: {
          type: 'vote',
          vote: { kind: 'prevote', height: 5, round: 1, value: v.blockHash, from: self },
        },
        signature: v.signature,
      })
      const b = byz(['fork-after-restart'])
      await b.forgetWal(store)
      expect(await new ConsensusWal(store).load(5n)).toEqual([])
      const sent: SignedVote[] = []
      await b.signForks(
        async (m) => {
          if (m.type === 'vote') sent.push(m.vote)
        },
        undefined,
        { times: 2, everyMs: 1, stopped: () => false },
      )
      expect(sent).toHaveLength(2)
      expect(new Set([v.blockHash, ...sent.map((s) => s.blockHash)]).size).toBe(3)
      for (const s of sent) {
        expect([s.kind, s.height, s.round]).toEqual(['prevote', 5n, 1])
        expect(await recoverVoteSigner(NETWORK, s)).toBe(self)
      }
    } finally {
      await store.close()
    }
  })
})
