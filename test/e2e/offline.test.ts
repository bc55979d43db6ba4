/**
 * One of four validator processes killed (SIGKILL) while it holds open assignments, black-box over the
 * HTTP API: within offlineAfterBlocks blocks its proposer turns are skipped (blocks commit in round 0 and
 * never name it), its open assignments move to live executors (reason `executor-offline`), and intents
 * sent after it is offline are never assigned to it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { Cluster } from '../helpers/cluster.ts'
import { wallet } from '../helpers/intents.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

interface View {
  state: string
  assignment: { chainId: string; executor: string; height: string } | null
  history: Array<{ state: string; reason?: string; height?: string }>
}
interface BlockJson {
  height: string
  round: number
  proposer: string
  assignments: Array<{ executor: string }>
  reassignments: Array<{ executor: string }>
}

const OFFLINE_AFTER_BLOCKS = 3 // genesis default

describe('an offline validator is skipped', () => {
  let c: Cluster
  let chains: Rollups
  const height = async (i: number) => (await getJson<{ height: number }>(`${c.node(i).api}/v1/status`)).height
  const view = (id: string) => getJson<View>(`${c.node(0).api}/v1/intents/${id}`)

  beforeAll(async () => {
    c = await Cluster.create(4)
    chains = await startRollups({
      count: 2,
      blockTimeSec: 1,
      accounts: c.net.nodes.map((n) => n.validatorPrivateKey),
    })
    const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
    const boot = await c.start(0, { rollups: flags })
    await Promise.all([1, 2, 3].map((i) => c.start(i, { rollups: flags, bootstrap: [boot.listen[0]!] })))
    await c.waitConnected([0, 1, 2, 3], 3)
  }, 120_000)
  afterAll(async () => {
    await c?.close()
    await chains?.stop()
  })

  it('skips its proposer turns, moves its open assignments and gives it no new ones', async () => {
    const dead = c.net.nodes[3]!.address
    const client = new MurmurClient(c.node(0).api)
    // Load until the victim holds an open assignment, then kill it at once (it cannot announce fills).
    const before: string[] = []
    let victimIds: string[] = []
    await waitFor(
      'an open assignment to validator 3',
      async () => {
        for (let k = 0; k < 4; k++) {
          const { id } = await client.send(wallet(), {
            to: wallet().address,
            amount: 1_000_000_000n,
            chains: [901n, 902n],
          })
          before.push(id)
        }
        const views = await Promise.all(before.map(view))
        victimIds = before.filter(
          (_, i) => views[i]!.state === 'assigned' && views[i]!.assignment?.executor === dead,
        )
        return victimIds.length > 0
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    )
    await c.node(3).kill9()
    c.procs[3] = undefined
    const killedAt = Date.now()
    const killHeight = await height(0)

    // Its open assignments move to live executors, for being offline.
    await waitFor(
      'the dead validator to hold no open assignment',
      async () => {
        const views = await Promise.all(victimIds.map(view))
        return views.every((v) => v.assignment === null || v.assignment.executor !== dead)
      },
      { timeoutMs: 30_000, intervalMs: 50 },
    )
    const movedMs = Date.now() - killedAt
    const moved = await Promise.all(victimIds.map(view))
    for (const v of moved.filter((x) => x.state === 'assigned' || x.state === 'filled')) {
      expect(v.history.some((h) => h.reason === 'executor-offline')).toBe(true)
    }
    process.stderr.write(
      `offline test: ${victimIds.length} open assignment(s) of the killed validator moved ${movedMs} ms after the kill\n`,
    )

    // After the detection window: blocks commit in round 0 and never name the dead validator.
    const from = killHeight + OFFLINE_AFTER_BLOCKS + 2
    await waitFor('ten more heights', async () => (await height(0)) >= from + 10, { timeoutMs: 60_000 })
    for (let h = from; h <= from + 10; h++) {
      const b = await getJson<BlockJson>(`${c.node(0).api}/v1/blocks/${h}`)
      expect(b.proposer, `height ${h}`).not.toBe(dead)
      expect(b.round, `height ${h}`).toBe(0)
    }

    // Intents sent now are filled by the others: no block after the detection window assigns or
    // re-assigns anything to it.
    const after: string[] = []
    for (let k = 0; k < 12; k++) {
      const { id } = await client.send(wallet(), {
        to: wallet().address,
        amount: 1_000_000_000n,
        chains: [901n, 902n],
      })
      after.push(id)
    }
    for (const id of after) {
      const v = await client.waitFor(id as `0x${string}`, { timeoutMs: 60_000 })
      expect(v.state).toBe('filled')
    }
    const top = await height(0)
    let assigned = 0
    for (let h = from; h <= top; h++) {
      const b = await getJson<BlockJson>(`${c.node(0).api}/v1/blocks/${h}`)
      for (const a of [...b.assignments, ...b.reassignments]) {
        expect(a.executor, `height ${h}`).not.toBe(dead)
        assigned++
      }
    }
    expect(assigned).toBeGreaterThanOrEqual(after.length)
  }, 240_000)
})
