/**
 * The dashboard feed (devnet/dashboard-feed.ts) against fake nodes: HTTP servers on 127.0.0.1 answering
 * the five `/v1` routes it polls. Checks the statuses it derives, the peer links, a stopped rollup, the
 * fault ring and the history's bound and alignment. `poll()` is called by hand (no timer, no streams).
 */
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DashboardFeed, MAX_FAULTS } from '../devnet/dashboard-feed.ts'

interface Fake {
  status: { peerId: string; validator: string; height: number; syncing: boolean }
  peers: string[]
}

const ROLLUPS = [
  { chainId: 901, status: 'up', gasUsedRatioBps: 2500, baseFeeWei: '2000000000' },
  { chainId: 902, status: 'up', gasUsedRatioBps: 0, baseFeeWei: '1000000000' },
]

function fakeNode(f: Fake, jailed: string[]): Promise<{ server: Server; api: string }> {
  const server = createServer((req, res) => {
    const body: Record<string, unknown> = {
      '/v1/status': f.status,
      '/v1/peers': f.peers.map((peerId) => ({ peerId, addrs: [], direction: 'outbound', score: 0 })),
      '/v1/rollups': ROLLUPS,
      '/v1/staking': {
        epoch: '3',
        pools: [],
        moves: Array.from({ length: 30 }, (_, k) => ({ id: `m${k}` })),
        rewards: [{ epoch: '1' }, { epoch: '2' }],
      },
      '/v1/validators': ['0xa', '0xb', '0xc'].map((address) => ({
        address,
        jailed: jailed.includes(address),
        online: true,
        power: '1',
      })),
    }
    const b = body[req.url ?? '']
    res.writeHead(b === undefined ? 404 : 200, { 'content-type': 'application/json' })
    res.end(JSON.stringify(b ?? {}))
  })
  return new Promise((r) =>
    server.listen(0, '127.0.0.1', () => {
      const a = server.address() as { port: number }
      r({ server, api: `http://127.0.0.1:${a.port}` })
    }),
  )
}

/** A short history, so that the test goes past its bound in a few dozen polls. */
const POINTS = 20

describe('DashboardFeed', () => {
  const fakes: Fake[] = [
    { status: { peerId: 'p0', validator: '0xA', height: 20, syncing: false }, peers: ['p1', 'pX'] },
    { status: { peerId: 'p1', validator: '0xb', height: 20, syncing: false }, peers: ['p0'] },
    { status: { peerId: 'p2', validator: '0xc', height: 12, syncing: false }, peers: ['p0'] },
    { status: { peerId: 'p3', validator: '0xd', height: 19, syncing: true }, peers: ['p0'] },
    { status: { peerId: 'p4', validator: '0xe', height: 20, syncing: false }, peers: [] },
  ]
  const servers: Server[] = []
  let apis: string[] = []
  const running = new Map([
    [901, true],
    [902, false],
  ])
  let feed: DashboardFeed
  beforeAll(async () => {
    const made = await Promise.all(fakes.map((f) => fakeNode(f, ['0xb'])))
    servers.push(...made.map((m) => m.server))
    apis = made.map((m) => m.api)
    feed = new DashboardFeed(
      {
        // Node 5 is not running (no API).
        nodes: () => [
          ...fakes.map((f, index) => ({ index, api: apis[index]!, peerId: f.status.peerId })),
          { index: 5, api: null, peerId: 'p5' },
        ],
        rollups: () => [...running].map(([chainId, r]) => ({ chainId, running: r })),
      },
      1_000,
      POINTS,
    )
  })
  afterAll(async () => {
    feed.stop()
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  })

  it('derives each node status, its links to other nodes, and a stopped rollup as down', async () => {
    const tick = (await feed.poll())!
    expect(tick.nodes.map((n) => n.status)).toEqual([
      'up',
      'jailed',
      'degraded',
      'syncing',
      'degraded',
      'down',
    ])
    // A peer that is not a node of this network (pX) is no link.
    expect(tick.nodes[0]!.peers).toEqual([1])
    expect(tick.nodes[5]).toMatchObject({ height: null, peers: [] })
    expect(tick.rollups.map((r) => r.status)).toEqual(['up', 'down'])
    expect(tick.validators).toHaveLength(3)
    // Lists that grow with the chain are cut to what the page shows.
    expect(tick.staking).toMatchObject({ epoch: '3', movesInForce: 30, rewards: [{ epoch: '2' }] })
    expect((tick.staking as { moves: Array<{ id: string }> }).moves.map((m) => m.id)).toEqual(
      Array.from({ length: 20 }, (_, k) => `m${k + 10}`),
    )
  })

  it('keeps at most its bound of ticks, every column as long as the times, and MAX_FAULTS faults', async () => {
    const seen: string[] = []
    const off = feed.subscribe((m) => seen.push(m.type))
    for (let k = 0; k < POINTS + 5; k++) await feed.poll()
    const h = feed.history
    expect(h.t).toHaveLength(POINTS)
    for (const col of [
      ...h.heights,
      ...Object.values(h.gas),
      ...Object.values(h.baseFee),
      ...Object.values(h.health),
    ])
      expect(col).toHaveLength(POINTS)
    // The health chart's levels: 901 up, 902 stopped (down).
    expect([h.health['901']!.at(-1), h.health['902']!.at(-1)]).toEqual([2, 0])
    expect(h.gas['901']!.at(-1)).toBe(25)
    expect(h.baseFee['901']!.at(-1)).toBe(2)
    expect(h.heights[5]!.at(-1)).toBeNull()
    for (let k = 0; k < MAX_FAULTS + 3; k++) feed.fault('kill', [String(k)])
    expect(feed.faults).toHaveLength(MAX_FAULTS)
    expect(feed.faults.at(-1)!.args).toEqual([String(MAX_FAULTS + 2)])
    off()
    expect(seen.filter((t) => t === 'tick')).toHaveLength(POINTS + 5)
    expect(seen.filter((t) => t === 'fault')).toHaveLength(MAX_FAULTS + 3)
  })
})
