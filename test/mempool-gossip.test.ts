import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prepareNetwork } from '../devnet/network.ts'
import type { SignedIntent } from '../src/codec/intent.ts'
import { MurmurNode } from '../src/node/node.ts'
import { makeIntent, wallet } from './helpers/intents.ts'

// The `intents` topic handler of a real node, called directly with each kind of bad batch.
describe('intents gossip validation', () => {
  let node: MurmurNode
  let dir: string
  const from = peerIdFromString('12D3KooWGRUVh5Y6FsD5ZbPUbWmHqPRWWHkjRwdBLvyN7UB2Ktrm')
  const validate = (batch: SignedIntent[]) => node.mempool.topicHandler.validate(batch, from)

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-gossip-'))
    const net = await prepareNetwork({ dir, nodes: 1 })
    node = new MurmurNode(
      { dataDir: net.nodes[0]!.dataDir, genesisPath: net.genesisPath, api: undefined },
      pino({ level: 'silent' }),
    )
    await node.start()
  })
  afterAll(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('ACCEPTs a batch with something new, and only after it is in the pool', async () => {
    const a = await makeIntent(wallet())
    const b = await makeIntent(wallet())
    expect(await validate([a.intent, b.intent])).toEqual({ result: 'ACCEPT' })
    expect(node.pool.has(a.id) && node.pool.has(b.id)).toBe(true)
  })

  it('IGNOREs a batch with nothing new (DUPLICATE)', async () => {
    const a = await makeIntent(wallet())
    await validate([a.intent])
    expect(await validate([a.intent, a.intent])).toEqual({ result: 'IGNORE', code: 'DUPLICATE' })
  })

  it.each([
    [
      'BAD_SIGNATURE',
      async () => {
        const a = await makeIntent(wallet())
        const b = await makeIntent(wallet())
        return { ...a.intent, signature: b.intent.signature }
      },
    ],
    ['UNKNOWN_CHAIN', async () => (await makeIntent(wallet(), { destinationChainIds: [777n] })).intent],
    [
      'TOO_LARGE',
      async () =>
        (await makeIntent(wallet(), { destinationChainIds: Array.from({ length: 111 }, () => 901n) })).intent,
    ],
    [
      'MALFORMED',
      async () => {
        const a = await makeIntent(wallet())
        return { ...a.intent, order: { ...a.intent.order, fillDeadline: a.intent.order.openDeadline } }
      },
    ],
  ])('REJECTs a batch holding a %s intent, and keeps none of the batch', async (code, bad) => {
    const good = await makeIntent(wallet())
    expect(await validate([good.intent, await bad()])).toEqual({ result: 'REJECT', code })
    expect(node.pool.has(good.id)).toBe(false)
  })

  it('IGNOREs EXPIRED and NONCE_USED items (time and order dependent, not provably wrong)', async () => {
    const now = Math.floor(Date.now() / 1000)
    const expired = await makeIntent(wallet(), { openDeadline: now - 600, fillDeadline: now - 60 })
    expect(await validate([expired.intent])).toEqual({ result: 'IGNORE', code: 'NOTHING_NEW' })
    const w = wallet()
    const first = await makeIntent(w, { nonce: 42n })
    await validate([first.intent])
    const replay = await makeIntent(w, { nonce: 42n, outputAmount: 1n })
    expect(await validate([replay.intent])).toEqual({ result: 'IGNORE', code: 'NOTHING_NEW' })
    expect(node.pool.has(replay.id)).toBe(false)
    // Mixed with something new, the new one is kept and the message relayed.
    const fresh = await makeIntent(wallet())
    expect(await validate([expired.intent, fresh.intent])).toEqual({ result: 'ACCEPT' })
    expect(node.pool.has(fresh.id)).toBe(true)
  })
})
