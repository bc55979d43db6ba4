import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { createPublicClient, type Hex, http } from 'viem'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { prepareNetwork } from '../../devnet/network.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { signOrder } from '../../src/codec/intent.ts'
import { MurmurNode } from '../../src/node/node.ts'
import { wallet } from '../helpers/intents.ts'

const POOL = 50
const ROUNDS = 10
const JUNK_PER_HONEST = 10

/**
 * Spam against a full pool, on the smallest network that fills: one validator in this process, one anvil
 * rollup. Junk comes from fresh keys with far deadlines and a spread of 1 wei, and asks for more than any
 * executor holds, so it is never assigned and stays pending: it fills the pool and keeps it full. Under
 * nearest-deadline eviction the honest intents (10-minute deadlines) were the ones to go.
 */
describe('mempool under 10x junk, end to end', () => {
  let dir: string
  let chains: Rollups
  let node: MurmurNode
  let api: string

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-spam-e2e-'))
    const net = await prepareNetwork({
      dir,
      nodes: 1,
      rollups: [{ chainId: 901, name: 'rollup-901', type: 'optimistic', securityBps: 8000 }],
    })
    chains = await startRollups({ count: 1, blockTimeSec: 1, accounts: [net.nodes[0]!.validatorPrivateKey] })
    node = new MurmurNode(
      {
        dataDir: net.nodes[0]!.dataDir,
        genesisPath: net.genesisPath,
        api: { host: '127.0.0.1', port: 0 },
        rollups: new Map([[901, chains.get(901).rpcUrl]]),
        mempool: { pool: { maxCount: POOL }, service: {} },
        // One client (this test) posts for a wallet and a spammer at once.
        apiLimits: { rateLimit: undefined },
      },
      pino({ level: 'silent' }),
    )
    await node.start()
    api = `http://127.0.0.1:${node.apiAddress!.port}`
  }, 120_000)
  afterAll(async () => {
    await node?.stop()
    await chains?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('every honest intent is accepted and filled while 10x as many junk ones arrive', async () => {
    const client = new MurmurClient(api)
    const honest: Array<{ id: Hex; to: Hex; amount: bigint }> = []
    let junkAccepted = 0
    let junkRefused = 0
    const started = Date.now()
    for (let r = 0; r < ROUNDS; r++) {
      const w = wallet()
      const to = wallet().address.toLowerCase() as Hex
      const amount = 1_000_000_000_000n + BigInt(r)
      // 10 bps for the executor: a normal spread.
      const order = MurmurClient.order(w.address, {
        to,
        amount,
        inputAmount: amount + amount / 1000n,
        chains: [901n],
      })
      const junk = await Promise.all(
        Array.from({ length: JUNK_PER_HONEST }, async () => {
          const j = wallet()
          const out = 10n ** 30n
          const o = MurmurClient.order(j.address, {
            to: j.address,
            amount: out,
            inputAmount: out + 1n,
            chains: [901n],
            fillInSec: 20 * 3600,
          })
          return { order: o, signature: await signOrder(j, o) }
        }),
      )
      // The honest intent and its junk at the same moment.
      const [h, js] = await Promise.all([
        client.submit(order, await signOrder(w, order)),
        client.submitMany(junk),
      ])
      honest.push({ id: h.id, to, amount })
      for (const a of js)
        if ('id' in a) junkAccepted++
        else junkRefused++
    }
    const acceptedMs = Date.now() - started
    // The pool is full of junk: what it gave up for the honest intents was junk.
    expect(junkAccepted).toBeGreaterThanOrEqual(POOL - ROUNDS)
    expect(junkAccepted + junkRefused).toBe(ROUNDS * JUNK_PER_HONEST)
    const rpc = createPublicClient({ transport: http(chains.get(901).rpcUrl) })
    for (const s of honest) {
      const v = await client.waitFor(s.id, { timeoutMs: 60_000 })
      expect(v.state, s.id).toBe('filled')
      expect(await rpc.getBalance({ address: s.to })).toBe(s.amount)
    }
    const filledMs = Date.now() - started
    const evicted = (await node.registry.metrics()).match(/murmur_mempool_evicted_total (\d+)/)?.[1]
    // For docs/reliability.md.
    console.log(
      `spam e2e: ${ROUNDS} honest + ${ROUNDS * JUNK_PER_HONEST} junk; junk accepted ${junkAccepted}, refused ${junkRefused}; evicted ${evicted}; honest accepted in ${acceptedMs} ms, all filled in ${filledMs} ms`,
    )
  }, 150_000)
})
