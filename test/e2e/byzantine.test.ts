/**
 * A Byzantine validator as a process (issue 13, item 4): node 3 of four equal validators (1/4 of the
 * stake, below 1/3) runs the real node with the test-only `--byzantine` flag (node/byzantine.ts), one
 * network for every mode, in phases (each a restart of node 3 with other modes):
 *
 * A. `bad-assign,bad-fill,lie-health`: its proposals route work to an executor that does not exist or
 *    carry fills that never happened (an invented transaction, its own fill with a wrong block hash); its
 *    health reports and vote extensions say a healthy rollup is down and invent heads of the others.
 * B. `withhold,lie-health`: it signs its votes and sends none; the three honest nodes go on. Then honest
 *    node 2 stops: with two of four silent the network stalls (expected: two faults of four), and node 3
 *    has signed votes of the stalled height that nobody saw.
 * C. node 3 is killed (SIGKILL) and restarted with `fork-after-restart`: its WAL is deleted before the
 *    start (its last-signed state is lost) and it signs, for every vote that WAL held (or its precommit
 *    in its head block's certificate), votes for blocks that do not exist, ten times over: signatures for
 *    different blocks at a height and round it had signed, while the honest nodes are still at that height
 *    or the next (the stall of B). Node 2 comes back at the same time.
 * D. `equivocate,bad-assign,bad-fill,lie-health`: two votes on every vote, two proposals on every proposal.
 *    Tombstoned by then, it proposed nothing in our runs, but it stays in the set until the epoch boundary and
 *    its double votes are detected again: the tombstone keeps that evidence out of blocks.
 *
 * Checked over the honest nodes' HTTP API (and the rollups' RPC) only: heights advance in every phase but
 * the stall; honest nodes agree on every block hash; no committed block assigns to an executor outside the
 * validator set or carries a fill whose transaction is not where it says on its rollup; honest intents
 * are filled; node 3 is slashed exactly once (one evidence in the whole chain, its power cut by
 * slashDoubleSignBps once) and tombstoned; the rollup it reports down is up in the honest view.
 */
import { createPublicClient, type Hex, http, type PublicClient } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { NO_SUCH_EXECUTOR } from '../../src/node/byzantine.ts'
import { Cluster } from '../helpers/cluster.ts'
import { wallet } from '../helpers/intents.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

const BYZ = 3
const HONEST = [0, 1, 2]
/** Genesis slashDoubleSignBps (node/genesis.ts default). */
const SLASH_BPS = 500n
/** The rollup lie-health reports down: the lowest chain id (node/byzantine.ts). */
const LIED_DOWN = 901

interface Status {
  height: number
  round: number
}
interface BlockJson {
  hash: string
  assignments: Array<{ intentId: string; executor: string; chainId: string }>
  reassignments: Array<{ intentId: string; executor: string; chainId: string }>
  fills: Array<{ chainId: string; txHash: Hex; blockNumber: string; blockHash: string; executor: string }>
  evidence: Array<{ validator: string }>
}
interface ValidatorJson {
  address: string
  power: string
  pools: Record<string, string>
  tombstoned: boolean
  jailed: boolean
}

describe('a Byzantine validator process (1/4 of the stake) among three honest ones', () => {
  let c: Cluster
  let chains: Rollups
  let rollupFlags: Map<number, string>
  let byzAddress: string
  /** Node 3's power once slashed once: each pool keeps the floor of (10 000 - slashDoubleSignBps) / 10 000. */
  let slashedOnce: bigint
  const started = Date.now()
  const status = (i: number) => getJson<Status>(`${c.node(i).api}/v1/status`)
  const height = async (i: number) => (await status(i)).height
  const validators = (i: number) => getJson<ValidatorJson[]>(`${c.node(i).api}/v1/validators`)
  const startByz = (modes: string) =>
    c.start(BYZ, {
      rollups: rollupFlags,
      bootstrap: [c.node(0).listen[0]!],
      extraArgs: ['--byzantine', modes],
    })
  /** Waits until every node listed has committed `more` heights past the highest of them now. */
  const advance = async (idx: number[], more: number, timeoutMs = 40_000) => {
    const now = Math.max(...(await Promise.all(idx.map(height))))
    await c.waitHeight(idx, now + more, timeoutMs)
  }
  /** Proposals node `i` refused (`murmur_consensus_invalid_proposals_total`, every code). */
  const refused = async (i: number) => {
    const text = await (await fetch(`${c.node(i).api}/metrics`)).text()
    const counts = [...text.matchAll(/^murmur_consensus_invalid_proposals_total\{[^}]*\} (\d+)/gm)]
    return counts.reduce((t, m) => t + Number(m[1]), 0)
  }
  /** Sends `n` intents through honest nodes and waits until node 0 sees every one filled. */
  const fillIntents = async (n: number, tag: bigint) => {
    const ids: Hex[] = []
    for (let k = 0; k < n; k++) {
      const { id } = await new MurmurClient(c.node(HONEST[k % 3]!).api).send(wallet(), {
        to: wallet().address,
        amount: 1_000_000_000_000n + tag * 100n + BigInt(k),
        chains: [901n, 902n, 903n],
      })
      ids.push(id)
    }
    for (const id of ids) {
      const v = await new MurmurClient(c.node(0).api).waitFor(id, { timeoutMs: 60_000 })
      expect(v.state, `intent ${id}`).toBe('filled')
    }
  }

  beforeAll(async () => {
    // The flag is refused without it; the honest nodes inherit it too and do not pass the flag.
    process.env.MURMUR_TEST_BYZANTINE = '1'
    c = await Cluster.create(4)
    byzAddress = c.net.nodes[BYZ]!.address
    chains = await startRollups({
      count: 3,
      blockTimeSec: 1,
      accounts: c.net.nodes.map((n) => n.validatorPrivateKey),
    })
    rollupFlags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
    const boot = await c.start(0, { rollups: rollupFlags })
    await Promise.all([
      ...[1, 2].map((i) => c.start(i, { rollups: rollupFlags, bootstrap: [boot.listen[0]!] })),
      startByz('bad-assign,bad-fill,lie-health'),
    ])
    await c.waitConnected([0, 1, 2, 3], 3)
    await c.waitHeight([0, 1, 2, 3], 1)
    const pools = (await validators(0)).find((v) => v.address === byzAddress)!.pools
    slashedOnce = Object.values(pools).reduce((t, p) => t + (BigInt(p) * (10_000n - SLASH_BPS)) / 10_000n, 0n)
  }, 240_000)
  afterAll(async () => {
    delete process.env.MURMUR_TEST_BYZANTINE
    await c?.close()
    await chains?.stop()
  })

  it('commits nothing invalid, slashes the double signer once, and keeps going', async () => {
    // A: invalid proposals and lying health; honest intents are filled meanwhile.
    // Intents until node 3 has proposed with work at least once (it proposes every fourth height; only a
    // block with assignments or open ones can be tampered with) and node 0 refused it.
    let round = 0n
    while ((await refused(0)) === 0) {
      expect(Date.now() - started, 'an invalid proposal of node 3 refused').toBeLessThan(120_000)
      await fillIntents(2, ++round)
    }
    await advance(HONEST, 3)

    // B: withheld votes. Three honest nodes of four commit without them.
    await c.stop(BYZ)
    await startByz('withhold,lie-health')
    await advance(HONEST, 3)
    // One honest node down besides the silent one: the height stalls (two faults of four), and node 3
    // signs votes of it that nobody sees (with its own it has 3/4, and commits the height alone).
    await c.stop(2)
    let stalled = 0
    await waitFor('node 0 to vote at the height it stalls at', async () => {
      const s = await getJson<Status & { step: string }>(`${c.node(0).api}/v1/status`)
      stalled = s.height
      return s.step !== 'propose'
    })
    // Node 3's own view (the attacker's, not an honest node's): it signed at the stalled height. (A block
    // in flight when node 2 stopped may still land: then it is the next one.)
    await waitFor('node 3 to sign past the stalled height', async () => (await height(BYZ)) > stalled, {
      timeoutMs: 10_000,
    }).catch(() => undefined)

    // C: the signer loses its WAL and signs for another block at heights and rounds it already signed.
    await c.node(BYZ).kill9()
    c.procs[BYZ] = undefined
    await Promise.all([
      startByz('fork-after-restart'),
      c.start(2, { rollups: rollupFlags, bootstrap: [c.node(0).listen[0]!] }),
    ])
    await waitFor(
      'node 3 tombstoned at every honest node',
      async () => {
        for (const i of HONEST) {
          const v = (await validators(i)).find((x) => x.address === byzAddress)
          if (v?.tombstoned !== true) return false
        }
        return true
      },
      { timeoutMs: 40_000 },
    )
    await advance(HONEST, 3)

    // D: equivocation on every vote and proposal, with the invalid proposals and lies of A.
    await c.stop(BYZ)
    await startByz('equivocate,bad-assign,bad-fill,lie-health')
    await fillIntents(4, 1_000n)
    await advance(HONEST, 5)

    // Slashed once, tombstoned, at every honest node.
    for (const i of HONEST) {
      const v = (await validators(i)).find((x) => x.address === byzAddress)!
      expect(v.tombstoned).toBe(true)
      expect(v.jailed).toBe(true)
      expect(BigInt(v.power)).toBe(slashedOnce)
    }
    // The rollup the liar says is down is up in the honest view.
    for (const i of HONEST) {
      const rows = await getJson<Array<{ chainId: number; status: string }>>(`${c.node(i).api}/v1/rollups`)
      expect(rows.find((r) => r.chainId === LIED_DOWN)?.status, `node ${i}`).toBe('up')
    }

    // Every committed block: the same at every honest node, no assignment outside the validator set, every
    // fill's transaction in the rollup block it names, one evidence against node 3 in the whole chain.
    const members = new Set(c.net.nodes.map((n) => n.address))
    const clients = new Map<number, PublicClient>(
      chains.rollups.map((r) => [
        r.chainId,
        createPublicClient({ transport: http(r.rpcUrl) }) as PublicClient,
      ]),
    )
    const top = Math.min(...(await Promise.all(HONEST.map(height))))
    let evidence = 0
    let fills = 0
    let assignments = 0
    for (let h = 1; h <= top; h++) {
      const blocks = await Promise.all(
        HONEST.map((i) => getJson<BlockJson>(`${c.node(i).api}/v1/blocks/${h}`)),
      )
      expect(new Set(blocks.map((b) => b.hash)).size, `height ${h}`).toBe(1)
      const b = blocks[0]!
      for (const a of [...b.assignments, ...b.reassignments]) {
        assignments++
        expect(a.executor).not.toBe(NO_SUCH_EXECUTOR)
        expect(members.has(a.executor as `0x${string}`), `executor ${a.executor} at ${h}`).toBe(true)
      }
      for (const f of b.fills) {
        fills++
        const receipt = await clients.get(Number(f.chainId))!.getTransactionReceipt({ hash: f.txHash })
        expect(receipt.status).toBe('success')
        expect(receipt.blockNumber).toBe(BigInt(f.blockNumber))
        expect(receipt.blockHash).toBe(f.blockHash)
      }
      evidence += b.evidence.filter((e) => e.validator === byzAddress).length
    }
    expect(evidence).toBe(1)
    // The honest nodes did refuse node 3's invalid proposals.
    expect(await refused(0)).toBeGreaterThanOrEqual(1)
    expect(fills).toBeGreaterThanOrEqual(6)
    expect(assignments).toBeGreaterThanOrEqual(6)
    console.log(
      `byzantine e2e: ${top} heights, ${assignments} assignments, ${fills} fills, ${Date.now() - started} ms`,
    )
  }, 300_000)
})
