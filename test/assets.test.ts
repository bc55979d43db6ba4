/**
 * The asset table (issue 10, "Economics that close"): thin spreads of one asset are UNPROFITABLE, an
 * ERC-20 output that is not one asset on every destination is AMBIGUOUS_OUTPUT, the genesis refuses a bad
 * table, and both the mempool and block validation (acceptIntent) apply the checks.
 */
import type { Address } from 'viem'
import { describe, expect, it } from 'vitest'
import { validateIntent } from '../src/mempool/validate.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { AssetTable, type EconomicsOrder, type GenesisAsset } from '../src/state/assets.ts'
import { genesisState } from '../src/state/genesis.ts'
import { acceptIntent } from '../src/state/plan.ts'
import { makeIntent, wallet } from './helpers/intents.ts'

const NATIVE: Address = '0x0000000000000000000000000000000000000000'
const USD_A: Address = `0x${'a1'.repeat(20)}`
const USD_B: Address = `0x${'b2'.repeat(20)}`
const SAME: Address = `0x${'c3'.repeat(20)}`
const OTHER: Address = `0x${'d4'.repeat(20)}`

const ASSETS: GenesisAsset[] = [
  { symbol: 'USD', minSpreadBps: 10, tokens: { '901': USD_A, '902': USD_B } },
  { symbol: 'TKN', minSpreadBps: 0, tokens: { '901': SAME, '902': SAME, '903': SAME } },
  { symbol: 'ETH', minSpreadBps: 5, tokens: { '901': NATIVE, '902': NATIVE, '903': NATIVE } },
]
const table = new AssetTable(ASSETS, [901n, 902n, 903n])

const order = (o: Partial<EconomicsOrder>): EconomicsOrder => ({
  originChainId: 901n,
  inputToken: USD_A,
  inputAmount: 1_000_000n,
  outputToken: USD_B,
  outputAmount: 999_000n,
  destinationChainIds: [902n],
  ...o,
})

describe('asset table', () => {
  it('refuses a spread below the minimum of one asset, exactly at the bound', () => {
    // 10 bps of 1,000,000 is 1,000: an output of 999,000 leaves exactly the minimum.
    expect(table.check(order({ outputAmount: 999_000n }))).toEqual({ ok: true })
    const thin = table.check(order({ outputAmount: 999_001n }))
    expect(thin.ok === false && thin.code).toBe('UNPROFITABLE')
    const more = table.check(order({ outputAmount: 1_000_001n }))
    expect(more.ok === false && more.code).toBe('UNPROFITABLE')
    // Native in, native out: the ETH asset's 5 bps.
    const eth = table.check(
      order({ inputToken: NATIVE, outputToken: NATIVE, outputAmount: 999_600n, destinationChainIds: [903n] }),
    )
    expect(eth.ok === false && eth.code).toBe('UNPROFITABLE')
  })

  it('routes any spread with no minimum, and between different assets', () => {
    expect(table.check(order({ inputToken: SAME, outputToken: SAME, outputAmount: 1_000_000n }))).toEqual({
      ok: true,
    })
    expect(table.check(order({ inputToken: NATIVE, outputAmount: 2_000_000n }))).toEqual({ ok: true })
    expect(new AssetTable([], [901n]).check(order({ outputAmount: 5_000_000n }))).toEqual({ ok: true })
  })

  it('refuses an ERC-20 output that is not one asset on every destination', () => {
    // USD_B is USD on 902 only.
    const partial = table.check(order({ destinationChainIds: [902n, 903n] }))
    expect(partial.ok === false && partial.code).toBe('AMBIGUOUS_OUTPUT')
    // Empty destinations mean every rollup: the same.
    const any = table.check(order({ destinationChainIds: [] }))
    expect(any.ok === false && any.code).toBe('AMBIGUOUS_OUTPUT')
    // One address, one asset everywhere: fine; an address the table does not know at all: fine.
    expect(table.check(order({ inputToken: OTHER, outputToken: SAME, destinationChainIds: [] }))).toEqual({
      ok: true,
    })
    expect(table.check(order({ outputToken: OTHER, destinationChainIds: [901n, 902n] }))).toEqual({
      ok: true,
    })
    // Two assets at one address on different chains.
    const clash = new AssetTable(
      [
        { symbol: 'X', minSpreadBps: 0, tokens: { '901': OTHER } },
        { symbol: 'Y', minSpreadBps: 0, tokens: { '902': OTHER } },
      ],
      [901n, 902n],
    ).check(order({ outputToken: OTHER, destinationChainIds: [901n, 902n] }))
    expect(clash.ok === false && clash.code).toBe('AMBIGUOUS_OUTPUT')
  })

  it('lists the native coin and the known tokens of a chain as inventory', () => {
    expect(table.inventoryTokens(902n)).toEqual([NATIVE, USD_B, SAME].sort())
    expect(table.inventoryTokens(999n)).toEqual([NATIVE])
  })
})

const genesis = () => ({
  networkId: 'devnet-1',
  genesisTime: 1700000000,
  validators: [{ address: `0x${'ab'.repeat(20)}`, peerId: '12D3KooWtest', stake: '1000', pools: [901, 902] }],
  rollups: [
    { chainId: 901, name: 'a', type: 'optimistic', securityBps: 8000 },
    { chainId: 902, name: 'b', type: 'zk', securityBps: 9500 },
  ],
  assets: [{ symbol: 'USD', minSpreadBps: 10, tokens: { '901': USD_A, '902': USD_B } }] as unknown[],
})

function genesisError(g: unknown): string {
  try {
    parseGenesis(g)
  } catch (err) {
    return (err as Error).message
  }
  return 'no error'
}

describe('genesis assets', () => {
  it('parses assets, lowercases tokens, defaults minSpreadBps to 0', () => {
    const g = genesis()
    g.assets.push({ symbol: 'TKN', tokens: { '901': SAME.toUpperCase().replace('0X', '0x') } })
    const parsed = parseGenesis(g)
    expect(parsed.assets[1]).toEqual({ symbol: 'TKN', minSpreadBps: 0, tokens: { '901': SAME } })
    expect(parseGenesis({ ...genesis(), assets: undefined }).assets).toEqual([])
  })

  it.each([
    [
      'an unknown rollup',
      (g: any) => (g.assets[0].tokens['999'] = OTHER),
      'assets[0].tokens.999: unknown rollup 999',
    ],
    [
      'a duplicate symbol',
      (g: any) => g.assets.push({ symbol: 'USD', tokens: { '901': OTHER } }),
      'duplicate symbol',
    ],
    [
      'one token in two assets',
      (g: any) => g.assets.push({ symbol: 'X', tokens: { '901': USD_A } }),
      `${USD_A} on 901 is already asset USD`,
    ],
    ['a bad address', (g: any) => (g.assets[0].tokens['901'] = '0x12'), 'assets[0].tokens.901'],
    ['a spread over 100 %', (g: any) => (g.assets[0].minSpreadBps = 10_001), 'assets[0].minSpreadBps'],
  ])('refuses %s', (_what, change, message) => {
    const g = genesis()
    change(g)
    expect(genesisError(g)).toContain(message)
  })

  it('changes the genesis hash only when assets are declared', () => {
    const base = parseGenesis({ ...genesis(), assets: [] })
    const withAssets = parseGenesis(genesis())
    expect(genesisState(withAssets).genesisHash).not.toBe(genesisState(base).genesisHash)
  })
})

describe('the checks where intents enter', () => {
  const ctx = {
    nowSec: Math.floor(Date.now() / 1000),
    maxClockSkewSec: 30,
    knownChainIds: new Set([901n, 902n]),
    assets: new AssetTable(genesis().assets as never, [901n, 902n]),
  }

  it('the mempool refuses UNPROFITABLE and AMBIGUOUS_OUTPUT, and accepts a fair spread', async () => {
    const w = wallet()
    const thin = await makeIntent(w, {
      inputToken: USD_A,
      outputToken: USD_B,
      inputAmount: 1_000n,
      outputAmount: 1_000n,
      destinationChainIds: [902n],
    })
    expect(await validateIntent(thin.intent, ctx)).toMatchObject({ ok: false, code: 'UNPROFITABLE' })
    const ambiguous = await makeIntent(w, {
      inputToken: USD_A,
      outputToken: USD_B,
      destinationChainIds: [901n, 902n],
    })
    expect(await validateIntent(ambiguous.intent, ctx)).toMatchObject({ ok: false, code: 'AMBIGUOUS_OUTPUT' })
    const fair = await makeIntent(w, {
      inputToken: USD_A,
      outputToken: USD_B,
      inputAmount: 1_000n,
      outputAmount: 999n,
      destinationChainIds: [902n],
    })
    expect(await validateIntent(fair.intent, ctx)).toMatchObject({ ok: true })
  })

  it('a block cannot assign what the table refuses (acceptIntent)', async () => {
    const state = genesisState(parseGenesis(genesis()))
    const thin = await makeIntent(wallet(), {
      inputToken: USD_A,
      outputToken: USD_B,
      inputAmount: 1_000n,
      outputAmount: 1_000n,
      destinationChainIds: [902n],
    })
    const r = acceptIntent(state, thin.id, thin.intent, 0n)
    expect(r.ok === false && r.why).toContain('UNPROFITABLE')
  })
})
