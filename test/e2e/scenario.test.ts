import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Address, createPublicClient, http } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Devnet, type DevnetState, STATE_FILE } from '../../devnet/devnet.ts'
import type { ScenarioReport } from '../../devnet/scenario.ts'
import { DEVNET_ASSET, DEVNET_MINT, DEVNET_REFUND_GRACE_SEC } from '../../devnet/settlement.ts'
import { MAX_ALLOWANCE, MurmurClient, tokenAllowance, tokenBalance } from '../../src/client/index.ts'
import { runCli } from '../helpers/cli.ts'
import { diagnoseNodes } from '../helpers/diagnose.ts'
import { findKeyLeaks } from '../helpers/key-leak.ts'
import { waitFor } from '../helpers/wait.ts'

const INVARIANTS = [
  'same-blocks',
  'heights-advance',
  'no-lost-intents',
  'intents-filled',
  'back-at-height',
  'timeline-ran',
]

const murmur = runCli

/**
 * The e2e runs check that a restarted or healed node gets back to the network's height, not how fast:
 * tests never fail on a time. The scenario's own default (10 s) is the figure a devnet run reports; on
 * CI's two cores, shared with the other project, one restart took 8.2 s and the node 11.4 s more to get
 * back (a failure of the old bound). How fast is the `recoverMs` figure a `murmur devnet scenario` run
 * prints on a devnet of its own; test/scenario-checks.test.ts checks the bound itself.
 */
const RECOVER_BOUND_MS = 30_000

/** `murmur devnet scenario NAME --dir DIR --short --report FILE ...args`, and the report it wrote. */
async function scenario(
  dir: string,
  name: string,
  args: string[] = [],
  env: Record<string, string> = {},
  timeoutMs = 120_000,
) {
  const report = join(dir, `${name}-${Date.now()}.json`)
  const r = await murmur(
    [
      'devnet',
      'scenario',
      name,
      '--dir',
      dir,
      '--short',
      '--report',
      report,
      '--recover-bound-ms',
      String(RECOVER_BOUND_MS),
      ...args,
    ],
    env,
    timeoutMs,
  )
  let rep: ScenarioReport
  try {
    rep = JSON.parse(await readFile(report, 'utf8')) as ScenarioReport
  } catch (err) {
    throw new Error(`no report (exit ${r.code}): ${r.stdout.slice(-2000)} ${r.stderr.slice(-3000)}`, {
      cause: err,
    })
  }
  return { ...r, rep }
}

// One devnet (4 node processes, 3 anvil rollups, no background traffic: the scenarios send their own)
// for every scenario below; each scenario leaves it whole (all nodes up, healed, rollups up).
describe('devnet scenarios, loopback, short timelines', () => {
  let dir: string
  let net: Devnet
  const printed: string[] = []
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-scenario-'))
    net = new Devnet({ dir, rate: 0, statusEveryMs: 0, out: (l) => printed.push(l) })
    await net.up()
    // The scenarios start from a network that commits; a first height slow on a loaded machine is not
    // what they test (the runner itself waits 60 s). If it never commits, say why.
    await waitFor(
      'every devnet node to commit height 1',
      async () => (await net.nodeStatuses()).every((s) => !('down' in s) && Number(s['height']) >= 1),
      { timeoutMs: 120_000 },
    ).catch(async (err: Error) => {
      const nodes = net.net!.nodes.map((n) => ({
        index: n.index,
        api: net.procs[n.index]?.api,
        logFile: join(net.net!.dir, `node-${n.index}.log`),
      }))
      throw new Error(`${err.message}\n${await diagnoseNodes(nodes)}`)
    })
  }, 240_000)
  afterAll(async () => {
    await net?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('devnet up deployed the settlement: contracts in the genesis, tokens and allowances on every rollup', async () => {
    const state = JSON.parse(await readFile(join(dir, STATE_FILE), 'utf8')) as DevnetState
    const s = state.settlement!
    expect(s).not.toBeNull()
    const genesis = JSON.parse(await readFile(state.genesis, 'utf8')) as {
      validators: Array<{ address: Address }>
      rollups: Array<{ chainId: number; settlement?: unknown }>
      assets: unknown
      params: { refundGraceSec: number }
    }
    expect(genesis.rollups.map((r) => r.chainId)).toEqual([901, 902, 903])
    for (const r of genesis.rollups) expect(r.settlement).toEqual(s.contracts[String(r.chainId)])
    // One deployer with the same nonces everywhere: one settler address on every rollup.
    expect(new Set(Object.values(s.contracts).map((c) => c.settler)).size).toBe(1)
    expect(genesis.assets).toEqual([
      { ...DEVNET_ASSET, tokens: { '901': s.token, '902': s.token, '903': s.token } },
    ])
    expect(genesis.params.refundGraceSec).toBe(DEVNET_REFUND_GRACE_SEC)
    expect(s.wallets).toHaveLength(8)
    const wallets = s.wallets.map((k) => privateKeyToAccount(k).address)
    const executors = genesis.validators.map((v) => v.address)
    // No traffic ran yet: every balance is exactly what the devnet minted.
    for (const r of state.rollups) {
      const c = { public: createPublicClient({ transport: http(r.rpcUrl) }) }
      const settler = s.contracts[String(r.chainId)]!.settler
      expect((await c.public.getCode({ address: settler }))?.length).toBeGreaterThan(2)
      for (const a of [...wallets, ...executors]) expect(await tokenBalance(c, s.token, a)).toBe(DEVNET_MINT)
      for (const a of wallets) expect(await tokenAllowance(c, s.token, a, settler)).toBe(MAX_ALLOWANCE)
    }
    // A wallet learns the origin settler from any node.
    const rows = await new MurmurClient(state.nodes[0]!.api!).rollups()
    expect(rows.map((r) => r.settlement)).toEqual(genesis.rollups.map((r) => r.settlement))
  }, 60_000)

  it('partition-heal: a node cut off and healed, twice, every invariant holds', async () => {
    const { rep, ...r } = await scenario(dir, 'partition-heal')
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(rep.passed).toBe(true)
    expect(rep.timeline.filter((e) => /^partition \d [\d,]+$/.test(e.event))).toHaveLength(2)
    expect(rep.figures['detectMs']).toBeTypeOf('number')
  }, 120_000)

  it('load-spike: the wallets send at 5x the rate for 4 s, every intent filled and every escrow closed', async () => {
    // The short run waits at most 60 s after its traffic for the last fills and claims.
    const { rep, ...r } = await scenario(dir, 'load-spike', [], {}, 170_000)
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(rep.invariants.map((i) => i.name)).toEqual([...INVARIANTS, 'escrows-closed'])
    expect(rep.invariants.filter((i) => !i.passed)).toEqual([])
    expect(rep.timeline.map((e) => e.event)).toContain('spike 10 4')
    const spike = rep.figures['spike'] as {
      peakAcceptedPerSec: number
      before: { accepted: number; acceptedPerSec: number; fillP50Ms: number | null }
      during: { accepted: number; fillP50Ms: number | null; fillP90Ms: number | null }
      after: { accepted: number }
      unfilled: number
    }
    const why = JSON.stringify(spike)
    // The scenario sends 2/s; the devnet's wallets add 10/s for 4 s: node 0's stream sees the 40 more
    // (some accepted after the window on a loaded machine), and a second far busier than the baseline.
    const seen = spike.before.accepted + spike.during.accepted + spike.after.accepted
    expect(seen, why).toBeGreaterThanOrEqual((rep.figures['intentsAccepted'] as number) + 36)
    expect(spike.before.acceptedPerSec, why).toBeLessThan(4)
    expect(spike.peakAcceptedPerSec, why).toBeGreaterThanOrEqual(6)
    expect(spike.during.fillP50Ms, why).toBeTypeOf('number')
    expect(spike.during.fillP90Ms, why).toBeGreaterThanOrEqual(spike.during.fillP50Ms!)
    expect(spike.unfilled, why).toBe(0)
    const escrows = rep.figures['escrows'] as {
      opened: number
      open: number
      settled: number
      refunded: number
    }
    // The spike's intents escrow too: more escrows than the scenario's own intents.
    expect(escrows.opened).toBeGreaterThan(rep.figures['intentsAccepted'] as number)
    expect(escrows.open).toBe(0)
    expect(escrows.settled + escrows.refunded).toBe(escrows.opened)
    expect(r.stdout).toMatch(/^PASS escrows-closed: all \d+ escrows opened on the settlers are closed/m)
    expect(r.stdout).toMatch(/spike peak \d+\/s accepted; fill p50\/p90 before/)
  }, 180_000)

  it('validator-crash: one validator killed -9 and restarted, every invariant holds', async () => {
    const { rep, ...r } = await scenario(dir, 'validator-crash', ['--seed', '3'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(rep.invariants.map((i) => i.name)).toEqual(INVARIANTS)
    expect(rep.passed).toBe(true)
    expect(rep.timeline.map((e) => e.event.split(' ')[0])).toEqual(
      expect.arrayContaining(['kill', 'restart']),
    )
    expect(rep.figures['recoverMs']).toBeTypeOf('number')
  }, 120_000)

  it('rollup-outage: a rollup stops answering and returns, every invariant holds', async () => {
    const { rep, ...r } = await scenario(dir, 'rollup-outage', ['--seed', '5'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(rep.invariants.map((i) => i.name)).toEqual(INVARIANTS)
    expect(rep.passed).toBe(true)
    expect(rep.timeline.map((e) => e.event.split(' ')[0])).toEqual(
      expect.arrayContaining(['rollup-down', 'rollup-up']),
    )
  }, 120_000)

  // Churn runs last of the fault scenarios, on a network the others already shook (session 8 had moved it
  // first: a validator jailed by a racing missed-blocks window made it fail there; docs/decisions.md,
  // "Offline is fast, jailing is slow").
  it('churn: validators killed and restarted at random, every invariant holds', async () => {
    const { rep, ...r } = await scenario(dir, 'churn', ['--seed', '7'])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(rep.scenario).toBe('churn')
    expect(rep.invariants.map((i) => i.name)).toEqual(INVARIANTS)
    expect(rep.invariants.filter((i) => !i.passed)).toEqual([])
    expect(rep.passed).toBe(true)
    // Several random faults really ran, and the figures were measured.
    expect(rep.timeline.filter((e) => /^restart \d$/.test(e.event)).length).toBeGreaterThanOrEqual(3)
    expect(rep.figures['recoverMs']).toBeTypeOf('number')
    expect(rep.figures['intentsAccepted']).toBeGreaterThan(10)
    for (const name of INVARIANTS) expect(r.stdout).toMatch(new RegExp(`^PASS ${name}: `, 'm'))
  }, 150_000)

  it('MURMUR_SCENARIO_BREAK=lost-intent: the checker sees an accepted intent no node knows and exits 1', async () => {
    const { rep, ...r } = await scenario(dir, 'partition-heal', ['--duration-ms', '4000'], {
      MURMUR_SCENARIO_BREAK: 'lost-intent',
    })
    expect(r.code, r.stdout + r.stderr).toBe(1)
    expect(r.stderr).toMatch(/^murmur: INVARIANT_BROKEN: /m)
    expect(rep.passed).toBe(false)
    const madeUp = /made-up intent (0x[0-9a-f]{8})/.exec(rep.timeline.map((e) => e.event).join('\n'))?.[1]
    expect(madeUp).toBeDefined()
    const lost = rep.invariants.find((i) => i.name === 'no-lost-intents')!
    expect(lost.passed).toBe(false)
    expect(lost.detail).toContain(`${madeUp}`)
    expect(lost.detail).toMatch(/node 0 missing/)
    // Only what the made-up intent touches broke: the network itself was fine.
    const broken = rep.invariants.filter((i) => !i.passed).map((i) => i.name)
    expect(broken.every((n) => n === 'no-lost-intents' || n === 'intents-filled')).toBe(true)
    expect(r.stdout).toMatch(/^FAIL no-lost-intents: /m)
  }, 120_000)

  it('bad usage exits 2 with one line; a directory without a devnet exits 1', async () => {
    const [bad, hook, none] = await Promise.all([
      murmur(['devnet', 'scenario', 'no-such', '--dir', dir]),
      murmur(['devnet', 'scenario', 'churn', '--dir', dir], { MURMUR_SCENARIO_BREAK: 'bogus' }),
      murmur(['devnet', 'scenario', 'churn', '--dir', join(dir, 'nothing-here')]),
    ])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    expect(hook.code).toBe(2)
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/^murmur: NO_DEVNET: /)
  }, 60_000)

  // Last, so the logs hold the whole run: starts, churn kills and restarts, partitions, the spike.
  it('no private key of the devnet in any node log, output, metrics or API answer (issue 13, item 7)', async () => {
    expect(await findKeyLeaks(net, printed)).toEqual([])
  }, 60_000)
})
