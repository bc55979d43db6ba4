/**
 * Executor inventory (issue 10, "Economics that close"): executors report their balances in their vote
 * extensions, the pool view subtracts what they already owe, and the router gives no executor a fill it
 * could not pay. The balances are read from a real anvil.
 */
import { encode as cborEncode } from 'cborg'
import pino from 'pino'
import type { Address, Hex } from 'viem'
import { createTestClient, http, parseEther } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollup, startRollup } from '../devnet/anvil.ts'
import type { CommitCertificate } from '../src/consensus/block.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { InventoryMonitor } from '../src/rollups/inventory.ts'
import {
  decodeExtension,
  encodeExtension,
  encodeObservations,
  type Observation,
} from '../src/rollups/observation.ts'
import { type HealthView, type RollupHealth, type RouteIntent, routeIntents } from '../src/rollups/router.ts'
import { genesisState } from '../src/state/genesis.ts'
import { commitBalances, poolView } from '../src/state/plan.ts'
import type { AppState, AssignmentState } from '../src/state/types.ts'
import { waitFor } from './helpers/wait.ts'

const NATIVE: Address = '0x0000000000000000000000000000000000000000'
const TOKEN: Address = `0x${'7e'.repeat(20)}`
const V1: Address = '0x1000000000000000000000000000000000000001'
const V2: Address = '0x2000000000000000000000000000000000000002'

const obs = (chainId: bigint): Observation => ({
  chainId,
  status: 0,
  blockNumber: 10n,
  gasUsed: 1n,
  gasLimit: 30_000_000n,
  baseFeeWei: 1_000n,
  blockTimeMs: 1000,
  latencyMs: 5,
})

describe('vote extension with balances', () => {
  it('round-trips, stays the bare observation list without balances, and refuses non-canonical bytes', () => {
    const balances = [
      { chainId: 902n, token: TOKEN, amount: 5n },
      { chainId: 901n, token: NATIVE, amount: 10n ** 18n },
    ]
    const bytes = encodeExtension({ observations: [obs(902n), obs(901n)], balances })
    const back = decodeExtension(bytes)
    expect(back.observations.map((o) => o.chainId)).toEqual([901n, 902n])
    expect(back.balances).toEqual([balances[1], balances[0]])
    // Without balances the bytes are exactly the observation list: validators without an executor, and
    // every extension signed before balances existed, decode alike.
    const bare = encodeObservations([obs(901n)])
    expect(Buffer.from(encodeExtension({ observations: [obs(901n)], balances: [] }))).toEqual(
      Buffer.from(bare),
    )
    expect(decodeExtension(bare)).toEqual({ observations: [obs(901n)], balances: [] })
    // Two balances of one token on one chain, and an envelope without balances, are refused.
    expect(() => encodeExtension({ observations: [], balances: [balances[0]!, balances[0]!] })).toThrow()
    // Balances out of order do not re-encode to the same bytes.
    const unordered = cborEncode([
      1,
      [],
      [
        [Uint8Array.of(0x03, 0x86), Buffer.from(TOKEN.slice(2), 'hex'), Uint8Array.of(5)],
        [Uint8Array.of(0x03, 0x85), Buffer.from(NATIVE.slice(2), 'hex'), Uint8Array.of(1)],
      ],
    ])
    expect(() => decodeExtension(unordered)).toThrow(/canonical/)
    expect(() => decodeExtension(Uint8Array.from([0x83, 0x01, 0x80, 0x80]))).toThrow(/without balances/)
  })
})

function health(): RollupHealth {
  return {
    status: 'up',
    gasUsedRatioBps: 1_000,
    baseFeeWei: 1_000n,
    blockTimeMs: 1_000,
    latencyMs: 10,
    gasLimit: 30_000_000n,
    gasUsed: 3_000_000n,
    type: 'optimistic',
    securityBps: 8_000,
  }
}

const intent = (n: number, amount: bigint, token: Address = TOKEN): RouteIntent => ({
  id: `0x${n.toString(16).padStart(64, '0')}` as Hex,
  user: V1,
  destinationChainIds: [901n],
  outputAmount: amount,
  outputToken: token,
})

describe('router with inventories', () => {
  const view: HealthView = new Map([[901n, health()]])
  const pools = (inv1?: Map<string, bigint>, inv2?: Map<string, bigint>) =>
    new Map([
      [
        901n,
        [
          { validator: V1, stake: 100n, outstanding: 0, ...(inv1 ? { inventory: inv1 } : {}) },
          { validator: V2, stake: 100n, outstanding: 0, ...(inv2 ? { inventory: inv2 } : {}) },
        ],
      ],
    ])

  it('skips an executor that cannot pay, and deducts what the batch already gave it', () => {
    // V1 holds 100 of TOKEN, V2 holds 150: intents of 60, 60 and 60.
    const r = routeIntents(
      [intent(1, 60n), intent(2, 60n), intent(3, 60n)],
      view,
      new Map(),
      pools(new Map([[TOKEN, 100n]]), new Map([[TOKEN, 150n]])),
    )
    // Least work first (V1, lower address, on a tie): V1 takes 1; V2 takes 2; V1 has 40 left, so 3 goes to V2.
    expect(r.assignments.map((a) => a.executor)).toEqual([V1, V2, V2])
    // A fourth 60 fits nobody: V2 has 30 left after two.
    const more = routeIntents(
      [intent(1, 60n), intent(2, 60n), intent(3, 60n), intent(4, 60n)],
      view,
      new Map(),
      pools(new Map([[TOKEN, 100n]]), new Map([[TOKEN, 150n]])),
    )
    expect(more.unroutable).toEqual([{ intentId: intent(4, 60n).id, reason: 'NO_INVENTORY' }])
  })

  it('a token missing from a reported inventory is zero; an executor that reported nothing is not filtered', () => {
    const r = routeIntents(
      [intent(1, 1n, NATIVE)],
      view,
      new Map(),
      pools(new Map([[TOKEN, 100n]]), undefined),
    )
    expect(r.assignments.map((a) => a.executor)).toEqual([V2])
    const none = routeIntents([intent(1, 1n, NATIVE)], view, new Map(), pools(new Map(), new Map()))
    expect(none.unroutable[0]?.reason).toBe('NO_INVENTORY')
  })
})

describe('pool view from the last commit', () => {
  const state: AppState = genesisState(
    parseGenesis({
      networkId: 'inv-test',
      genesisTime: 1_700_000_000,
      validators: [
        { address: V1, peerId: 'p1', stake: '100', pools: [901] },
        { address: V2, peerId: 'p2', stake: '100', pools: [901] },
      ],
      rollups: [{ chainId: 901, name: 'a', type: 'optimistic', securityBps: 8000 }],
    }),
  )
  const commit = (ext: Uint8Array): CommitCertificate => ({
    height: 1n,
    round: 0,
    blockHash: `0x${'11'.repeat(32)}`,
    precommits: [
      { validator: V1, signature: `0x${'00'.repeat(65)}`, timestampMs: 1, extension: ext },
      {
        validator: V2,
        signature: `0x${'00'.repeat(65)}`,
        timestampMs: 1,
        extension: encodeObservations([obs(901n)]),
      },
    ],
  })

  it("subtracts the outputs of an executor's open assignments from its reported balance", () => {
    const ext = encodeExtension({
      observations: [obs(901n)],
      balances: [{ chainId: 901n, token: TOKEN, amount: 100n }],
    })
    const open = {
      intentId: `0x${'aa'.repeat(32)}`,
      chainId: 901n,
      executor: V1,
      outputToken: TOKEN,
      outputAmount: 70n,
    }
    const balances = commitBalances(commit(ext))
    expect(balances.has(V2)).toBe(false)
    const members = poolView(state, [open as unknown as AssignmentState], new Set(), balances).get(901n)!
    expect(members.find((m) => m.validator === V1)?.inventory?.get(TOKEN)).toBe(30n)
    expect(members.find((m) => m.validator === V2)?.inventory).toBeUndefined()
    // Owing more than it holds leaves 0, never a negative inventory.
    const owes = { ...open, outputAmount: 500n }
    const after = poolView(state, [owes as unknown as AssignmentState], new Set(), balances).get(901n)!
    expect(after.find((m) => m.validator === V1)?.inventory?.get(TOKEN)).toBe(0n)
  })
})

describe('inventory monitor on anvil', () => {
  let rollup: Rollup
  const key = generatePrivateKey()
  const me = privateKeyToAccount(key).address
  const FAKE_TOKEN: Address = `0x${'5a'.repeat(20)}`
  const NO_CODE: Address = `0x${'5b'.repeat(20)}`

  beforeAll(async () => {
    rollup = await startRollup({ chainId: 931, accounts: [key], balanceWei: parseEther('3') })
    // A contract answering every call with 1234 (PUSH2 0x04d2, MSTORE at 0, RETURN 32 bytes): balanceOf.
    const test = createTestClient({ mode: 'anvil', transport: http(rollup.rpcUrl) })
    await test.setCode({ address: FAKE_TOKEN, bytecode: '0x6104d260005260206000f3' })
  })
  afterAll(async () => {
    await rollup?.close()
  })

  it('reads the native coin and tokens, holds 0 of a token without code, and drops a rollup that does not answer', async () => {
    const m = new InventoryMonitor(
      { rollups: new Map([[931, rollup.rpcUrl]]), intervalMs: 100, rpcTimeoutMs: 500 },
      { address: me, tokens: () => [FAKE_TOKEN, NO_CODE], log: pino({ level: 'silent' }) },
    )
    await m.poll()
    expect(m.balances()).toEqual([
      { chainId: 931n, token: NATIVE, amount: parseEther('3') },
      { chainId: 931n, token: FAKE_TOKEN, amount: 1234n },
      { chainId: 931n, token: NO_CODE, amount: 0n },
    ])
    rollup.setUnreachable(true)
    m.start()
    await waitFor('the rollup to drop out', () => m.balances().length === 0, { timeoutMs: 5_000 })
    rollup.setUnreachable(false)
    await waitFor('the rollup to come back', () => m.balances().length === 3, { timeoutMs: 5_000 })
    await m.stop()
  })
})
