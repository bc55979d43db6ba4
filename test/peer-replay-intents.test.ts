/**
 * A peer that floods replays of accepted intents (issue 13: "never penalised, cost 0.44 of a core") on
 * the real `intents` topic of a real node: each replay is a new batch of already-known intents (new
 * bytes, so gossipsub's seen cache lets it through to the mempool, which IGNOREs it `DUPLICATE`). Past
 * the allowance it costs score; the node graylists, then bans and disconnects the peer.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { SignedIntent } from '../src/codec/intent.ts'
import type { TopicPayloads } from '../src/node/topics.ts'
import type { P2PHost } from '../src/p2p/host.ts'
import { SCORE_THRESHOLDS } from '../src/p2p/limits.ts'
import { topicString } from '../src/p2p/topics.ts'
import { startApiNode } from './helpers/api-node.ts'
import { makeIntent, wallet } from './helpers/intents.ts'
import { startQuietPeer } from './helpers/quiet-peer.ts'
import { getJson, waitFor } from './helpers/wait.ts'

describe('a peer replaying known intents to a real node', () => {
  let api: string
  let status: { peerId: string; networkId: string; listen: string[] }
  let stopNode: () => Promise<void>
  let attacker: P2PHost<TopicPayloads>
  let stopAttacker: () => Promise<void>

  beforeAll(async () => {
    // The node's HTTP API tells what it banned; unlimited, since the test polls it.
    ;({ api, stop: stopNode } = await startApiNode({ apiLimits: { rateLimit: undefined } }))
    status = await getJson(`${api}/v1/status`)
    // The attacker speaks the real wire format; it validates nothing it receives.
    ;({ host: attacker, stop: stopAttacker } = await startQuietPeer(status.networkId))
  }, 60_000)

  afterAll(async () => {
    await stopAttacker?.()
    await stopNode?.()
  })

  it('is penalised past the allowance, graylisted, then banned and disconnected', async () => {
    await attacker.libp2p.dial(multiaddr(status.listen[0]!)) // ends in /p2p/<peerId>
    const idA = attacker.peerId
    const made = await Promise.all([0, 1, 2, 3].map(() => makeIntent(wallet())))
    const allKnown = async () =>
      (await Promise.all(made.map((m) => fetch(`${api}/v1/intents/${m.id}`)))).every((r) => r.status === 200)
    const peers = () => getJson<Array<{ peerId: string; score: number }>>(`${api}/v1/peers`)
    const known: SignedIntent[] = made.map((m) => m.intent)
    // Publish only once the node's subscription has arrived: a republish of the same bytes is dropped.
    const topic = topicString(status.networkId, 'intents')
    await waitFor('the node subscribed, as the attacker sees it', () =>
      attacker.libp2p.services.pubsub.getSubscribers(topic).some((p) => p.toString() === status.peerId),
    )
    await waitFor('the node to accept the fresh batch', async () => {
      await attacker.publish('intents', known)
      return await allKnown()
    })

    // Replays: batch n lists the known intents by the base-4 digits of n, so every batch has new bytes.
    let n = 0
    const replay = (): SignedIntent[] => {
      n++
      return [...n.toString(4)].map((d) => known[Number(d)]!)
    }
    const t0 = Date.now()
    let penalisedAt = 0
    let graylistedAt = 0
    await waitFor(
      'the node to ban the replayer',
      async () => {
        for (let i = 0; i < 20; i++) await attacker.publish('intents', replay()).catch(() => 0)
        const s = (await peers()).find((p) => p.peerId === idA)?.score ?? 0
        if (penalisedAt === 0 && s < -1) penalisedAt = Date.now() - t0
        if (graylistedAt === 0 && s < SCORE_THRESHOLDS.graylistThreshold) graylistedAt = Date.now() - t0
        const bans = await getJson<Array<{ peerId: string; offences: number }>>(`${api}/v1/peers/bans`)
        return bans.some((b) => b.peerId === idA && b.offences === 1)
      },
      { timeoutMs: 30_000, intervalMs: 20 },
    )
    const bannedAt = Date.now() - t0
    await waitFor('the replayer disconnected', async () => !(await peers()).some((p) => p.peerId === idA))
    console.info(
      `intent replayer: ${n} batches; penalised ${penalisedAt} ms, graylisted ${graylistedAt} ms, banned ${bannedAt} ms after the flood began`,
    )
    expect(penalisedAt).toBeGreaterThan(0)
    expect(graylistedAt).toBeGreaterThanOrEqual(penalisedAt)
    expect(bannedAt).toBeGreaterThan(graylistedAt)
    const replays = await (await fetch(`${api}/metrics`)).text()
    expect(replays).toMatch(/topic="intents",penalised="no"} 50$/m) // the allowance, free
    expect(replays).toMatch(/topic="intents",penalised="yes"} [1-9]/)
    expect(await allKnown()).toBe(true) // replays changed nothing acknowledged
  }, 60_000)
})
