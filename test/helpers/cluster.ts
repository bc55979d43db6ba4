import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type PreparedNetwork, type PrepareOptions, prepareNetwork } from '../../devnet/network.ts'
import { type NodeProcess, type NodeProcessOptions, spawnNode } from '../../devnet/process.ts'
import { diagnoseNodes } from './diagnose.ts'
import { getJson, postJson, waitFor } from './wait.ts'

/** A set of node processes on 127.0.0.1 sharing one genesis; `close()` stops every one by pid. */
export class Cluster {
  readonly net: PreparedNetwork
  readonly procs: Array<NodeProcess | undefined>
  readonly #all: NodeProcess[] = []

  private constructor(net: PreparedNetwork) {
    this.net = net
    this.procs = net.nodes.map(() => undefined)
  }

  static async create(n: number, params?: PrepareOptions['params']): Promise<Cluster> {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-test-'))
    return new Cluster(await prepareNetwork({ dir, nodes: n, ...(params === undefined ? {} : { params }) }))
  }

  node(i: number): NodeProcess {
    const p = this.procs[i]
    if (p === undefined) throw new Error(`node ${i} is not running`)
    return p
  }

  async start(i: number, extra: Partial<NodeProcessOptions> = {}): Promise<NodeProcess> {
    const n = this.net.nodes[i]!
    const p = await spawnNode({
      dataDir: n.dataDir,
      genesisPath: this.net.genesisPath,
      logFile: join(this.net.dir, `node-${i}.log`),
      ...extra,
    })
    this.procs[i] = p
    this.#all.push(p)
    return p
  }

  async stop(i: number): Promise<void> {
    await this.procs[i]?.stop()
    this.procs[i] = undefined
  }

  async status(i: number): Promise<{ peers: number; peerId: string }> {
    return getJson(`${this.node(i).api}/v1/status`)
  }

  async peers(i: number): Promise<Array<{ peerId: string; score: number }>> {
    return getJson(`${this.node(i).api}/v1/peers`)
  }

  /** Publishes a probe from node i; returns its (origin, seq). */
  async probe(i: number, size = 300): Promise<{ origin: string; seq: number }> {
    const r = await postJson<{ origin: string; seq: number }>(`${this.node(i).api}/admin/v1/probe`, { size })
    if (r.status !== 200) throw new Error(`probe failed: ${JSON.stringify(r.body)}`)
    return r.body
  }

  async received(i: number, p: { origin: string; seq: number }): Promise<boolean> {
    const list = await getJson<Array<{ seq: number }>>(
      `${this.node(i).api}/admin/v1/probes?origin=${encodeURIComponent(p.origin)}`,
    )
    return list.some((r) => r.seq === p.seq)
  }

  async partition(i: number, deny: string[]): Promise<void> {
    const r = await postJson(`${this.node(i).api}/admin/v1/partition`, { deny })
    if (r.status !== 200) throw new Error(`partition failed: ${JSON.stringify(r.body)}`)
  }

  /** Waits until each listed running node is connected to at least `min` peers. */
  async waitConnected(indexes: number[], min: number, timeoutMs = 30_000): Promise<void> {
    for (const i of indexes) {
      await waitFor(`node ${i} to have ${min} peers`, async () => (await this.status(i)).peers >= min, {
        timeoutMs,
      })
    }
  }

  /**
   * Waits until each listed running node has committed at least `height`; on timeout, throws with every
   * node's status and the loud end of its log (diagnoseNodes).
   */
  async waitHeight(indexes: number[], height: number, timeoutMs = 120_000): Promise<void> {
    try {
      await waitFor(
        `nodes ${indexes.join(',')} to commit height ${height}`,
        async () => {
          for (const i of indexes) {
            const s = await getJson<{ height: number }>(`${this.node(i).api}/v1/status`)
            if (s.height < height) return false
          }
          return true
        },
        { timeoutMs },
      )
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${await this.diagnose()}`)
    }
  }

  /** Status and log tail of every node of the network (running or not). */
  diagnose(): Promise<string> {
    return diagnoseNodes(
      this.net.nodes.map((n) => ({
        index: n.index,
        api: this.procs[n.index]?.api,
        logFile: join(this.net.dir, `node-${n.index}.log`),
      })),
    )
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.#all.map((p) => p.stop(5_000)))
    // MURMUR_KEEP_TEST_DIR=1 keeps the nodes' data and logs for a look after a failure.
    if (process.env.MURMUR_KEEP_TEST_DIR === '1') console.log(`cluster kept at ${this.net.dir}`)
    else await rm(this.net.dir, { recursive: true, force: true })
  }
}
