import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Devnet, type DevnetState } from '../../devnet/devnet.ts'
import { erc20Intent } from '../../devnet/settlement.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

interface RollupRow {
  chainId: number
  name: string
  status: string
  blockTimeMs: number
  gasUsedRatioBps: number
  baseFeeWei: string
}

/** The anvil command line of a running rollup, as the kernel has it. */
async function cmdline(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter((a) => a !== '')
}
const flag = (args: string[], name: string) => args[args.indexOf(name) + 1]

// A mixed devnet of five rollups (arbitrum-like, base-like, zksync-like, congested-like, scroll-like),
// with the mixed traffic: what a node measures of each must differ as the profiles do.
// Slow (a five-rollup devnet with 2 s chains and a congested one: about two minutes), so opt-in to keep
// CI under 20 minutes: `npm run test:slow`. test/profiles.test.ts checks every profile's anvil arguments
// and genesis fields in CI.
const SLOW = process.env['MURMUR_SLOW_TESTS'] === '1'

describe.runIf(SLOW)(`devnet --profile mixed${SLOW ? '' : ' (opt-in: npm run test:slow)'}`, () => {
  let dir: string
  let net: Devnet
  let state: DevnetState
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-profiles-'))
    net = new Devnet({
      dir,
      rollups: 5,
      profile: 'mixed',
      traffic: 'mixed',
      rate: 2,
      statusEveryMs: 0,
      out: () => {},
    })
    state = await net.up()
  }, 120_000)
  afterAll(async () => {
    await net?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('each anvil runs its profile; the genesis carries the kinds, types and finality delays', async () => {
    expect(state.rollups.map((r) => r.kind)).toEqual([
      'arbitrum-like',
      'base-like',
      'zksync-like',
      'congested-like',
      'scroll-like',
    ])
    const args = await Promise.all(state.rollups.map((r) => cmdline(r.pid!)))
    expect(args.map((a) => flag(a, '--block-time'))).toEqual(['0.25', '2', '1', '1', '3'])
    expect(args.map((a) => flag(a, '--chain-id'))).toEqual(['901', '902', '903', '904', '905'])
    expect(flag(args[3]!, '--gas-limit')).toBe('4000000')
    expect(flag(args[3]!, '--block-base-fee-per-gas')).toBe('5000000000')
    const g = JSON.parse(await readFile(state.genesis, 'utf8')) as {
      rollups: Array<{ name: string; type: string; confirmations: number }>
    }
    expect(g.rollups.map((r) => [r.name, r.type, r.confirmations])).toEqual([
      ['arbitrum-like-901', 'optimistic', 0],
      ['base-like-902', 'optimistic', 0],
      ['zksync-like-903', 'zk', 3],
      ['congested-like-904', 'optimistic', 0],
      ['scroll-like-905', 'zk', 2],
    ])
  })

  it('GET /v1/rollups shows each profile: its block time, and the congested one full and degraded', async () => {
    const api = state.nodes[0]!.api!
    const rows = await waitFor(
      'every rollup measured, the congested one over 90 % full and its base fee 10x the others',
      async () => {
        const r = await getJson<RollupRow[]>(`${api}/v1/rollups`)
        // Its base fee fell while the contracts were deployed (empty blocks); full blocks raise it
        // 12.5 % a block again, so it takes a minute or so to tower over the idle chains'.
        const fee = BigInt(r[3]!.baseFeeWei)
        const others = r.filter((_, i) => i !== 3).map((x) => BigInt(x.baseFeeWei))
        const ok =
          r.every((x) => x.blockTimeMs > 0) &&
          r[3]!.gasUsedRatioBps > 9_000 &&
          others.every((o) => fee > 10n * o)
        return ok ? r : undefined
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    )
    const bt = rows.map((r) => r.blockTimeMs)
    // Timestamps are whole seconds: a 250 ms chain averages over its last blocks, so allow a band.
    // Anvil's interval mining drifts a little on a loaded machine too: a band of about 30 % around
    // each profile's block time, and their order.
    const within = (ms: number, target: number) => ms >= target * 0.7 && ms <= target * 1.3
    expect(bt[0]).toBeGreaterThanOrEqual(100)
    expect(bt[0]).toBeLessThanOrEqual(500)
    expect(
      [within(bt[1]!, 2000), within(bt[2]!, 1000), within(bt[3]!, 1000), within(bt[4]!, 3000)],
      `${bt}`,
    ).toEqual([true, true, true, true])
    expect(bt[0]! < bt[2]! && bt[2]! < bt[1]! && bt[1]! < bt[4]!, `${bt}`).toBe(true)
    expect(rows[3]!.status).toBe('degraded')
  }, 150_000)

  it('intents to the fast, the zk and the congested rollup are filled', async () => {
    const s = state.settlement!
    const w = privateKeyToAccount(s.wallets[0]!)
    const client = new MurmurClient(state.nodes[1]!.api!)
    const ids = await Promise.all(
      [901n, 903n, 904n].map(
        async (c, k) => (await client.send(w, erc20Intent(s, w.address, [c], 1_000 + k))).id,
      ),
    )
    const done = await Promise.all(ids.map((id) => client.waitFor(id, { timeoutMs: 90_000 })))
    expect(done.map((v) => v.state)).toEqual(['filled', 'filled', 'filled'])
    expect(done.map((v) => Number(v.fill?.chainId))).toEqual([901, 903, 904])
  }, 120_000)
})
