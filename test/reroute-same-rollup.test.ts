/**
 * An assignment moved off an executor that is offline, gone or late stays on its rollup when that
 * rollup has settlement (its settler takes one fill of an order), so the first executor's fill in
 * flight and the new executor's cannot both land; only a rollup that is down lets it move elsewhere
 * (state/plan.ts rerouteOf; the crash soak saw intents filled on two rollups before).
 */
import type { Address } from 'viem'
import { describe, expect, it } from 'vitest'
import { avoidAfter, rerouteOf } from '../src/state/plan.ts'
import type { AppState, AssignmentState } from '../src/state/types.ts'

const settler = {
  settler: '0x1111111111111111111111111111111111111111',
  lightClient: '0x2222222222222222222222222222222222222222',
}
const state = {
  rollups: [{ chainId: 901, settlement: settler }, { chainId: 902, settlement: settler }, { chainId: 903 }],
} as unknown as Pick<AppState, 'rollups'>
const assignment = (chainId: bigint) =>
  ({
    intentId: `0x${'ab'.repeat(32)}`,
    chainId,
    executor: '0x3333333333333333333333333333333333333333' as Address,
    user: '0x4444444444444444444444444444444444444444' as Address,
    destinationChainIds: [901n, 902n, 903n],
    outputAmount: 1n,
    outputToken: '0x5555555555555555555555555555555555555555' as Address,
    avoid: [],
  }) as unknown as AssignmentState

describe('rerouteOf', () => {
  it('keeps an intent taken from an offline, gone or late executor on its settled rollup', () => {
    for (const reason of ['EXECUTOR_OFFLINE', 'EXECUTOR_GONE', 'DEADLINE_PASSED'])
      expect(rerouteOf(state, assignment(902n), reason).destinationChainIds).toEqual([902n])
  })

  it('lets it move to any of its destinations when the rollup is down, or has no settlement', () => {
    expect(rerouteOf(state, assignment(902n), 'ROLLUP_DOWN').destinationChainIds).toEqual([901n, 902n, 903n])
    expect(rerouteOf(state, assignment(903n), 'EXECUTOR_OFFLINE').destinationChainIds).toEqual([
      901n,
      902n,
      903n,
    ])
  })

  it('avoids the executor it is taken from unless its rollup is down (a late one may have filled)', () => {
    const a = assignment(902n)
    for (const reason of ['EXECUTOR_OFFLINE', 'EXECUTOR_GONE', 'DEADLINE_PASSED']) {
      expect(rerouteOf(state, a, reason).avoidExecutors).toEqual([a.executor])
      expect(avoidAfter(a, reason)).toEqual([a.executor])
    }
    expect(rerouteOf(state, a, 'ROLLUP_DOWN').avoidExecutors).toEqual([])
    expect(avoidAfter(a, 'ROLLUP_DOWN')).toEqual([])
    // Remembered once.
    const again = { ...a, avoid: [a.executor] }
    expect(avoidAfter(again, 'DEADLINE_PASSED')).toEqual([a.executor])
  })
})
