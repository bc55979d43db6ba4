import { describe, expect, it } from 'vitest'
import { parseGenesis } from '../src/node/genesis.ts'

const good = () => ({
  networkId: 'devnet-1',
  genesisTime: 1700000000,
  validators: [{ address: '0x' + 'ab'.repeat(20), peerId: '12D3KooWtest', stake: '1000', pools: [901, 902] }],
  rollups: [
    { chainId: 901, name: 'a', type: 'optimistic', securityBps: 8000 },
    { chainId: 902, name: 'b', type: 'zk', securityBps: 9500 },
  ],
})

function codeAndMessage(fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    return `${(err as { code: string }).code}: ${(err as Error).message}`
  }
  return 'no error'
}

describe('genesis', () => {
  it('accepts a valid file and fills defaults', () => {
    const g = parseGenesis(good())
    expect(g.validators[0]!.stake).toBe(1000n)
    expect(g.delegations).toEqual([])
    expect(g.params.maxClockSkewSec).toBe(30)
    expect(g.rollups.map((r) => r.confirmations)).toEqual([0, 0])
  })

  it("keeps a rollup's confirmations", () => {
    const g = good() as any
    g.rollups[1].confirmations = 12
    expect(parseGenesis(g).rollups.map((r) => r.confirmations)).toEqual([0, 12])
  })

  it.each([
    ['missing networkId', (g: Record<string, unknown>) => delete g['networkId'], 'networkId'],
    ['bad address', (g: any) => (g.validators[0].address = '0x12'), 'validators[0].address'],
    ['negative stake', (g: any) => (g.validators[0].stake = '-5'), 'validators[0].stake'],
    ['unknown pool', (g: any) => (g.validators[0].pools = [999]), 'validators[0].pools[0]'],
    ['bad rollup type', (g: any) => (g.rollups[1].type = 'plasma'), 'rollups[1].type'],
    ['duplicate chain', (g: any) => (g.rollups[1].chainId = 901), 'rollups'],
    ['unknown field', (g: any) => (g.extra = 1), '(root)'],
    ['bad param', (g: any) => (g.params = { blockIntervalMs: -1 }), 'params.blockIntervalMs'],
    ['negative confirmations', (g: any) => (g.rollups[1].confirmations = -1), 'rollups[1].confirmations'],
    ['fractional confirmations', (g: any) => (g.rollups[0].confirmations = 1.5), 'rollups[0].confirmations'],
    ['confirmations as text', (g: any) => (g.rollups[0].confirmations = '2'), 'rollups[0].confirmations'],
  ])('names the field: %s', (_name, mutate, field) => {
    const g = good() as Record<string, unknown>
    mutate(g)
    const msg = codeAndMessage(() => parseGenesis(g, 'g.json'))
    expect(msg.startsWith(`BAD_GENESIS: g.json: ${field}`)).toBe(true)
  })
})
