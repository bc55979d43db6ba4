/**
 * `murmur node start --announce MULTIADDR`: the node tells its peers an address other than the one it
 * listens on (NAT, a port mapping, a relay), and they reach it there. Node 0 listens on one loopback
 * port and announces a relay's (devnet/delay-relay.ts, in process, forwarding to node 0); node 1 dials
 * what node 0 announced and is connected to it through the relay.
 */
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DelayRelay } from '../../devnet/delay-relay.ts'
import { Cluster } from '../helpers/cluster.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

/** A port free on 127.0.0.1 right now (bound and released: the node binds it next). */
async function freePort(): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

describe('node --announce', () => {
  let c: Cluster
  let relay: DelayRelay
  let relayPort: number
  beforeAll(async () => {
    c = await Cluster.create(2)
    const p2pPort = await freePort()
    relay = new DelayRelay({ host: '127.0.0.1', port: p2pPort })
    relayPort = await relay.listen('127.0.0.1', 0)
    await c.start(0, {
      listen: `/ip4/127.0.0.1/tcp/${p2pPort}`,
      announce: [`/ip4/127.0.0.1/tcp/${relayPort}`],
    })
  }, 60_000)
  afterAll(async () => {
    await c?.close()
    await relay?.close()
  })

  it('the node gives the announced address, and a peer dialling it gets through', async () => {
    const n0 = c.node(0)
    expect(n0.listen).toEqual([`/ip4/127.0.0.1/tcp/${relayPort}/p2p/${n0.peerId}`])
    const status = await getJson<{ listen: string[] }>(`${n0.api}/v1/status`)
    expect(status.listen).toEqual(n0.listen)
    await c.start(1, { bootstrap: [n0.listen[0]!] })
    await c.waitConnected([0, 1], 1)
    // Node 1's connection to node 0 is to the announced (relay's) port.
    const peers = await waitFor('node 1 connected to node 0', async () => {
      const ps = await getJson<Array<{ peerId: string; addrs: string[] }>>(`${c.node(1).api}/v1/peers`)
      return ps.find((p) => p.peerId === n0.peerId)
    })
    expect(peers.addrs.some((a) => a.includes(`/tcp/${relayPort}`))).toBe(true)
  }, 60_000)
})
