/**
 * The claim relayer (rollups/claims.ts) tries a failed claim again: one failure (here, reading the
 * block's settlement leaves; an origin RPC timing out takes the same path) no longer leaves the escrow
 * unclaimed until the next start (the crash soak found 3 of 80 escrows open that way).
 */
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { CLAIM_RETRY_MS, ClaimRelayer } from '../src/rollups/claims.ts'
import type { Executor } from '../src/rollups/executor.ts'
import type { SettlementSource } from '../src/state/settlement.ts'
import { waitFor } from './helpers/wait.ts'

describe('claim relayer retries', () => {
  it('looks at a block again after a failure, and stops after stop()', async () => {
    const calls: number[] = []
    let failures = 1
    const source = {
      leaves: async (h: bigint) => {
        calls.push(Date.now())
        if (h === 7n && failures-- > 0) throw new Error('RPC timed out')
        return []
      },
    } as unknown as SettlementSource
    const relayer = new ClaimRelayer({
      contracts: new Map(),
      rpc: new Map(),
      executor: { address: '0x00000000000000000000000000000000000000aa' } as unknown as Executor,
      source,
      epochBlocks: 10,
      head: () => 0n,
      log: pino({ level: 'silent' }),
    })
    relayer.committed(7n)
    await waitFor('block 7 read again after its failure', () => calls.length >= 2, { timeoutMs: 10_000 })
    expect(calls[1]! - calls[0]!).toBeGreaterThanOrEqual(CLAIM_RETRY_MS[0]! - 50)
    // A success is not retried; a stopped relayer retries nothing.
    await relayer.stop()
    relayer.committed(7n)
    expect(calls).toHaveLength(2)
  })
})
