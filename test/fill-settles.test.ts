/**
 * Which fill settles an assignment (state/plan.ts `fillSettles`): its executor on its chain; on a rollup
 * with a settler among its destinations, also any validator (the settler records one fill of an order and
 * names its filler: an executor the intent was taken from, also for ROLLUP_DOWN, finished it after its
 * assignment moved), but never someone outside the set, and never on a chain without a settler.
 */
import type { Address, Hex } from 'viem'
import { describe, expect, it } from 'vitest'
import { parseGenesis } from '../src/node/genesis.ts'
import { genesisState } from '../src/state/genesis.ts'
import { fillSettles } from '../src/state/plan.ts'
import type { AssignmentState } from '../src/state/types.ts'

const V1: Address = '0x1000000000000000000000000000000000000001'
const V2: Address = '0x2000000000000000000000000000000000000002'
const V3: Address = '0x3000000000000000000000000000000000000003'
const state = genesisState(
  parseGenesis({
    networkId: 'fill-settles',
    genesisTime: 1_700_000_000,
    validators: [V1, V2, V3].map((address, i) => ({
      address,
      peerId: `p${i}`,
      stake: '100',
      pools: [901, 902],
    })),
    rollups: [
      {
        chainId: 901,
        name: 'settled',
        type: 'optimistic',
        securityBps: 8000,
        settlement: { settler: `0x${'51'.repeat(20)}`, lightClient: `0x${'1c'.repeat(20)}` },
      },
      { chainId: 902, name: 'bare', type: 'zk', securityBps: 9000 },
    ],
  }),
)
const a = (over: Partial<AssignmentState> = {}) =>
  ({
    intentId: `0x${'ab'.repeat(32)}` as Hex,
    chainId: 901n,
    executor: V2,
    destinationChainIds: [901n, 902n],
    avoid: [V1],
    ...over,
  }) as AssignmentState

describe('fillSettles', () => {
  it('takes the assigned executor on the assigned chain', () => {
    expect(fillSettles(state, a(), { chainId: 901n, executor: V2 })).toBe(true)
    expect(fillSettles(state, a({ chainId: 902n }), { chainId: 902n, executor: V2 })).toBe(true)
  })

  it('takes an executor it was taken from, on a settler chain among its destinations only', () => {
    expect(fillSettles(state, a(), { chainId: 901n, executor: V1 })).toBe(true)
    // No settler on 902: a transfer there proves nothing about who filled first.
    expect(fillSettles(state, a({ chainId: 902n }), { chainId: 902n, executor: V1 })).toBe(false)
    // 901 is not among the destinations.
    expect(fillSettles(state, a({ destinationChainIds: [902n] }), { chainId: 901n, executor: V1 })).toBe(
      false,
    )
  })

  it('takes any validator on a settler chain: the assignment moved for ROLLUP_DOWN keeps no avoid', () => {
    // V3 held the assignment before a ROLLUP_DOWN move (avoid stays [V1]); its fill landed as the rollup
    // came back, the settler names it, and it is the only fill that can land.
    expect(fillSettles(state, a(), { chainId: 901n, executor: V3 })).toBe(true)
  })

  it('refuses anyone outside the set, and other validators where no settler records the filler', () => {
    const stranger = '0x4000000000000000000000000000000000000004' as Address
    expect(fillSettles(state, a(), { chainId: 901n, executor: stranger })).toBe(false)
    expect(fillSettles(state, a(), { chainId: 902n, executor: V2 })).toBe(false)
    expect(fillSettles(state, a({ chainId: 902n }), { chainId: 902n, executor: V3 })).toBe(false)
  })
})
