import { createPublicClient, http } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { Cluster } from '../helpers/cluster.ts'
import { wallet } from '../helpers/intents.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

interface View {
  state: string
  assignment: { chainId: string } | null
  fill: { chainId: string; txHash: string } | null
}

// Four validator processes, three anvil rollups, consensus end to end.
describe('agreement across four validator processes', () => {
  let c: Cluster
  let chains: Rollups
  const height = async (i: number) => (await getJson<{ height: number }>(`${c.node(i).api}/v1/status`)).height
  const heights = (idx: number[]) => Promise.all(idx.map((i) => height(i)))
  const balance = (chainId: number, address: `0x${string}`) =>
    createPublicClient({ transport: http(chains.get(chainId).rpcUrl) }).getBalance({ address })

  beforeAll(async () => {
    c = await Cluster.create(4)
    chains = await startRollups({
      count: 3,
      blockTimeSec: 1,
      accounts: c.net.nodes.map((n) => n.validatorPrivateKey),
    })
    const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
    const boot = await c.start(0, { rollups: flags })
    await Promise.all([1, 2, 3].map((i) => c.start(i, { rollups: flags, bootstrap: [boot.listen[0]!] })))
    await c.waitConnected([0, 1, 2, 3], 3)
    // The network commits before the tests begin (a slow first height on a loaded machine is not what
    // they test); if it never does, the error carries every node's status and log tail.
    await c.waitHeight([0, 1, 2, 3], 1)
  }, 240_000)
  afterAll(async () => {
    await c?.close()
    await chains?.stop()
  })

  it('intents end filled: the recipient is paid exactly outputAmount, once, and every node agrees', async () => {
    const sent: Array<{ id: `0x${string}`; to: `0x${string}`; amount: bigint }> = []
    for (let k = 0; k < 6; k++) {
      const w = wallet()
      const to = wallet().address.toLowerCase() as `0x${string}`
      const amount = 1_000_000_000_000n + BigInt(k)
      const { id } = await new MurmurClient(c.node(k % 4).api).send(w, {
        to,
        amount,
        chains: [901n, 902n, 903n],
      })
      sent.push({ id, to, amount })
    }
    for (const s of sent) {
      const v = await new MurmurClient(c.node(0).api).waitFor(s.id, { timeoutMs: 60_000 })
      expect(v.state).toBe('filled')
      const chainId = Number(v.fill!.chainId)
      expect(await balance(chainId, s.to)).toBe(s.amount)
      for (const other of [901, 902, 903].filter((x) => x !== chainId))
        expect(await balance(other, s.to)).toBe(0n)
      for (const i of [1, 2, 3]) {
        await waitFor(`node ${i} to see ${s.id} filled`, async () => {
          const w = await getJson<View>(`${c.node(i).api}/v1/intents/${s.id}`)
          return w.state === 'filled' && w.fill?.txHash === v.fill!.txHash
        })
      }
    }
  })

  it('heights go on with one validator killed, stop with two, and resume when they come back', async () => {
    await c.node(3).kill9()
    c.procs[3] = undefined
    const [h0] = await heights([0])
    await c.waitHeight([0, 1, 2], h0! + 3, 30_000)

    await c.node(2).kill9()
    c.procs[2] = undefined
    // The last block possibly in flight lands; after that, 2 of 4 (1/2 of the power) cannot commit.
    await new Promise((r) => setTimeout(r, 3_000))
    const stuck = await heights([0, 1])
    await new Promise((r) => setTimeout(r, 5_000))
    expect(await heights([0, 1])).toEqual(stuck)

    await c.start(2, {
      rollups: new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl])),
      bootstrap: [c.node(0).listen[0]!],
    })
    await c.start(3, {
      rollups: new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl])),
      bootstrap: [c.node(0).listen[0]!],
    })
    const top = Math.max(...stuck)
    await c.waitHeight([0, 1, 2, 3], top + 3, 60_000)
    // Its waits add up to more than the default test timeout on a loaded machine: 30 s + 8 s + two
    // process starts + 60 s.
  }, 180_000)

  it('a killed rollup: its open intents are filled elsewhere', async () => {
    const ids: Array<{ id: `0x${string}`; to: `0x${string}`; amount: bigint }> = []
    for (let k = 0; k < 6; k++) {
      const to = wallet().address.toLowerCase() as `0x${string}`
      const amount = 2_000_000_000_000n + BigInt(k)
      const { id } = await new MurmurClient(c.node(0).api).send(wallet(), {
        to,
        amount,
        chains: [902n, 903n],
      })
      ids.push({ id, to, amount })
    }
    // Kill 902 as soon as anything is assigned to it (or everything is already settled).
    await waitFor(
      'an assignment',
      async () => {
        for (const s of ids) {
          const v = await getJson<View>(`${c.node(0).api}/v1/intents/${s.id}`)
          if (v.state === 'assigned' && v.assignment?.chainId === '902') return true
        }
        return false
      },
      { timeoutMs: 30_000, intervalMs: 20 },
    ).catch(() => undefined)
    const killedAt = Date.now()
    await chains.get(902).stop()
    for (const s of ids) {
      const v = await new MurmurClient(c.node(1).api)
        .waitFor(s.id, { timeoutMs: 180_000 })
        .catch(async (err) => {
          const views = await Promise.all(ids.map((x) => getJson(`${c.node(1).api}/v1/intents/${x.id}`)))
          throw new Error(
            `${err.message} ${Date.now() - killedAt} ms after the kill: ${JSON.stringify(views)}`,
          )
        })
      expect(v.state).toBe('filled')
      if (v.fill!.chainId === '903') expect(await balance(903, s.to)).toBe(s.amount)
    }
    await chains.get(902).start()
  }, 300_000)

  it('every node returns the same block hash at every height', async () => {
    const top = Math.min(...(await heights([0, 1, 2, 3])))
    expect(top).toBeGreaterThan(3)
    for (let h = 1; h <= top; h++) {
      const hashes = await Promise.all(
        [0, 1, 2, 3].map(
          async (i) => (await getJson<{ hash: string }>(`${c.node(i).api}/v1/blocks/${h}`)).hash,
        ),
      )
      expect(new Set(hashes).size, `height ${h}: ${hashes.join(' ')}`).toBe(1)
    }
  })
})
