import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { type GossipSub, gossipsub, StrictNoSign } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { messageId } from '../../src/p2p/host.ts'
import { topicString } from '../../src/p2p/topics.ts'
import { type HealthReport, healthReportCodec, signHealthReport } from '../../src/rollups/health-report.ts'
import { Cluster } from '../helpers/cluster.ts'
import { wallet } from '../helpers/intents.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

interface Row {
  chainId: number
  status: string
  gasUsedRatioBps: number
  baseFeeWei: string
  blockTimeMs: number
}

// Three node processes watching three real anvil chains.
describe('rollup health across node processes', () => {
  let c: Cluster
  let chains: Rollups
  let peer: Libp2p<{ pubsub: GossipSub }>
  const rows = async (i: number) => getJson<Row[]>(`${c.node(i).api}/v1/rollups`)
  const row = async (i: number, chainId: number) => (await rows(i)).find((r) => r.chainId === chainId)!
  const everywhere = async (what: string, pred: (r: Row) => boolean, chainId: number, timeoutMs = 15_000) => {
    for (const i of [0, 1, 2])
      await waitFor(`${what} on node ${i}`, async () => pred(await row(i, chainId)), { timeoutMs })
  }

  beforeAll(async () => {
    c = await Cluster.create(3)
    chains = await startRollups({
      count: 3,
      blockTimeSec: 1,
      gasLimit: 3_000_000n,
      accounts: c.net.nodes.map((n) => n.validatorPrivateKey),
    })
    const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
    const boot = await c.start(0, { rollups: flags })
    await Promise.all([1, 2].map((i) => c.start(i, { rollups: flags, bootstrap: [boot.listen[0]!] })))
    await c.waitConnected([0, 1, 2], 2)
    peer = await createLibp2p({
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      services: {
        identify: identify(),
        pubsub: gossipsub({ globalSignaturePolicy: StrictNoSign, msgIdFn: messageId }),
      },
    })
    peer.services.pubsub.subscribe(topicString(c.net.genesis.networkId, 'health'))
    await peer.dial(multiaddr(c.node(0).listen[0]!))
  }, 90_000)
  afterAll(async () => {
    await peer?.stop()
    await c?.close()
    await chains?.stop()
  })

  it('every node sees every rollup up, with real figures', async () => {
    for (const chainId of [901, 902, 903]) {
      await everywhere(
        `${chainId} up`,
        (r) => r.status === 'up' && r.blockTimeMs >= 500 && BigInt(r.baseFeeWei) > 0n,
        chainId,
      )
    }
  })

  it('a congested chain shows gas near the limit and a rising base fee', async () => {
    const before = BigInt((await row(0, 903)).baseFeeWei)
    const load = chains.get(903).congest({ txPerBlock: 4 })
    try {
      await everywhere('903 congested', (r) => r.gasUsedRatioBps >= 9_000, 903)
      await waitFor('base fee to rise', async () => BigInt((await row(1, 903)).baseFeeWei) > before)
    } finally {
      await load.stop()
    }
  })

  it('a killed chain is down on every node within 3 s, and up again after restart', async () => {
    await everywhere('902 up', (r) => r.status === 'up', 902)
    const killedAt = Date.now()
    await chains.get(902).stop()
    await everywhere('902 down', (r) => r.status === 'down', 902, 10_000)
    expect(Date.now() - killedAt).toBeLessThan(3_000)
    await chains.get(902).start()
    await everywhere('902 up again', (r) => r.status === 'up', 902)
  })

  const report = (validator: `0x${string}`, over: Partial<HealthReport> = {}): HealthReport => ({
    validator,
    chainId: 901n,
    blockNumber: 1n,
    gasUsed: 0n,
    gasLimit: 3_000_000n,
    gasUsedRatioBps: 0,
    baseFeeWei: 1n,
    blockTimeMs: 1000,
    latencyMs: 1,
    status: 2,
    timestampMs: BigInt(Date.now()),
    ...over,
  })
  const publish = async (bytes: Uint8Array) => {
    const topic = topicString(c.net.genesis.networkId, 'health')
    await waitFor('node 0 subscribed', () => peer.services.pubsub.getSubscribers(topic).length > 0)
    await peer.services.pubsub.publish(topic, bytes)
  }
  const counted = async (result: string, code: string) => {
    const text = await (await fetch(`${c.node(0).api}/metrics`)).text()
    const m = new RegExp(
      `murmur_p2p_gossip_validation_total\\{topic="health",result="${result}",code="${code}"\\} (\\d+)`,
    ).exec(text)
    return Number(m?.[1] ?? 0)
  }

  it('a forged report (not a validator) is REJECTed and changes nothing', async () => {
    const w = wallet()
    const forged = await signHealthReport(
      w,
      c.net.genesis.networkId,
      report(w.address.toLowerCase() as `0x${string}`),
    )
    await publish(healthReportCodec.encode(forged))
    await waitFor('the REJECT', async () => (await counted('reject', 'NOT_VALIDATOR')) > 0)
    // A validator's key over a report it did not sign: BAD_SIGNATURE.
    const v = c.net.nodes[1]!
    // Dated ahead (within the allowed skew) so it is newer than node 1's own reports, not a replay.
    const honest = await signHealthReport(
      privateKeyToAccount(v.validatorPrivateKey),
      c.net.genesis.networkId,
      report(v.address, { timestampMs: BigInt(Date.now() + 5_000) }),
    )
    const tampered = { ...honest, report: { ...honest.report, latencyMs: 999 } }
    await publish(healthReportCodec.encode(tampered))
    await waitFor('the BAD_SIGNATURE REJECT', async () => (await counted('reject', 'BAD_SIGNATURE')) > 0)
    expect((await row(0, 901)).status).toBe('up')
  })

  it('a stale report, even correctly signed, is IGNOREd', async () => {
    const v = c.net.nodes[2]!
    const stale = await signHealthReport(
      privateKeyToAccount(v.validatorPrivateKey),
      c.net.genesis.networkId,
      report(v.address, { timestampMs: BigInt(Date.now() - 120_000) }),
    )
    await publish(healthReportCodec.encode(stale))
    await waitFor('the IGNORE', async () => (await counted('ignore', 'STALE')) > 0)
    expect((await row(0, 901)).status).toBe('up')
  })
})
