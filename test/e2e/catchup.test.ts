/**
 * Catch-up as processes: four real `murmur node` processes on loopback. Three validators run 500 heights
 * ahead on a short block interval while the fourth is down; then the fourth starts and must reach the
 * network's height through the protocol (status, signed gossip, blocks-by-range), observed over the HTTP
 * API alone, with `syncing` true meanwhile.
 *
 * The fourth validator holds a sliver of the stake, so the three alone are far past 2/3 and it is
 * (almost) never the proposer: the 500 heights are not slowed by its proposer turns timing out (3 s
 * each by default; that is issue 9's "offline validators skipped", not this test's subject).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type PreparedNetwork, prepareNetwork } from '../../devnet/network.ts'
import { type NodeProcess, spawnNode } from '../../devnet/process.ts'
import { parseGenesis } from '../../src/node/genesis.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

const BEHIND = 500

interface Status {
  height: number
  syncing: boolean
  peers: number
}

describe('catch-up of a validator process 500 heights behind', () => {
  let net: PreparedNetwork
  const procs: NodeProcess[] = []
  const status = (p: NodeProcess) => getJson<Status>(`${p.api}/v1/status`)
  const start = async (i: number, bootstrap: string[]) => {
    const n = net.nodes[i]!
    const p = await spawnNode({
      dataDir: n.dataDir,
      genesisPath: net.genesisPath,
      bootstrap,
      logFile: join(net.dir, `node-${i}.log`),
    })
    procs.push(p)
    return p
  }

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-catchup-'))
    net = await prepareNetwork({ dir, nodes: 4, params: { blockIntervalMs: 20 } as never })
    const g = JSON.parse(await readFile(net.genesisPath, 'utf8'))
    g.validators[3].stake = '1'
    parseGenesis(g) // still a valid genesis
    await writeFile(net.genesisPath, JSON.stringify(g, null, 2))
  })
  afterAll(async () => {
    await Promise.allSettled(procs.map((p) => p.stop(5_000)))
    if (net !== undefined) await rm(net.dir, { recursive: true, force: true })
  })

  it('reaches the network height over the API, syncing meanwhile', async () => {
    const boot = await start(0, [])
    const others = [boot, await start(1, [boot.listen[0]!]), await start(2, [boot.listen[0]!])]
    await waitFor(
      `three validators ${BEHIND} heights on`,
      async () => (await status(boot)).height >= BEHIND,
      { timeoutMs: 240_000, intervalMs: 500 },
    )
    const late = await start(3, [boot.listen[0]!])
    const t0 = Date.now()
    const target = Math.max(...(await Promise.all(others.map(async (p) => (await status(p)).height))))
    let sawSyncing = false
    let first: Status | undefined
    await waitFor(
      'the late validator at the network height',
      async () => {
        const s = await status(late)
        first ??= s
        sawSyncing ||= s.syncing
        return s.height >= target
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    )
    const ms = Date.now() - t0
    console.log(`process catch-up: 0 -> ${target} heights in ${ms} ms after the start line`)
    expect(first!.height).toBeLessThan(target)
    expect(sawSyncing).toBe(true)
    expect(ms).toBeLessThan(30_000)
    // In step afterwards: it follows the network's new heights and no longer says syncing.
    await waitFor(
      'syncing false and within a few heights of the network',
      async () => {
        const [s, b] = await Promise.all([status(late), status(boot)])
        return !s.syncing && b.height - s.height <= 3
      },
      { timeoutMs: 30_000 },
    )
  }, 360_000)
})
