/**
 * Hostile peers shut out (issue 13, item 1): replays of known payloads cost score, a peer that stays
 * graylisted is banned (persisted, lifted on expiry, doubled on a repeat, not lifted by a partition
 * heal), its request/response streams are refused, and the gater's per-IP and per-peer caps hold.
 * Two or three real P2PHosts in one process on 127.0.0.1:0, as in test/gossip-watch.test.ts.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { BanBook, type BanModules, banMs } from '../src/p2p/bans.ts'
import { DenyListGater } from '../src/p2p/gater.ts'
import { P2PHost, type P2POptions, type TopicHandler } from '../src/p2p/host.ts'
import { type PeerLimits, SCORE_THRESHOLDS } from '../src/p2p/limits.ts'
import { STATUS_PROTOCOL } from '../src/p2p/protocols.ts'
import { ReplayMeter } from '../src/p2p/replays.ts'
import { PROBE_TOPIC, type Probe } from '../src/p2p/topics.ts'
import { ACCEPT, ignore } from '../src/p2p/validation.ts'
import { Store } from '../src/state/store.ts'
import { waitFor } from './helpers/wait.ts'

const log = pino({ level: process.env['MURMUR_TEST_LOG'] ?? 'silent' })
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c()
})

async function tempStore(name: string): Promise<{ store: Store; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), `murmur-bans-${name}-`))
  const store = new Store(join(dir, 'db'))
  await store.open()
  return { store, dir }
}

describe('banMs and ReplayMeter', () => {
  it('bans double from the base and stop at the cap', () => {
    expect([1, 2, 3, 4].map((n) => banMs(n, 600_000, 2_000_000))).toEqual([
      600_000, 1_200_000, 2_000_000, 2_000_000,
    ])
  })

  it('replays are free within the allowance, each further one costs the penalty, a new window forgives', () => {
    const m = new ReplayMeter({ allowance: 3, windowMs: 10_000, penalty: 5 })
    expect([0, 1, 2].map((t) => m.record('a', t))).toEqual([0, 0, 0])
    expect(m.record('a', 3)).toBe(5)
    expect(m.record('b', 4)).toBe(0) // per peer
    expect(m.record('a', 10_000)).toBe(0)
  })
})

describe('BanBook', () => {
  function fakeLibp2p(peers: string[]) {
    const hungUp: string[] = []
    const libp2p = {
      getPeers: () => peers.map((id) => ({ toString: () => id }) as unknown as PeerId),
      hangUp: async (p: PeerId) => {
        hungUp.push(p.toString())
      },
    } as unknown as Libp2p
    return { libp2p, hungUp }
  }

  /** A book over `libp2p` and `store` with a 3 s grace and 60 s first bans; the rest from `m`. */
  function bookOf(
    libp2p: Libp2p,
    store: BanModules['store'],
    m: Pick<BanModules, 'score' | 'onChange' | 'now' | 'isProtected'>,
  ): BanBook {
    return new BanBook(
      { graceMs: 3_000, baseMs: 60_000, maxMs: 1_000_000, checkMs: 60_000 },
      { libp2p, store, log, graylistThreshold: SCORE_THRESHOLDS.graylistThreshold, ...m },
    )
  }

  it('bans after the grace below the graylist, persists, lifts on expiry and doubles on a repeat', async () => {
    const { store, dir } = await tempStore('book')
    cleanup.push(async () => {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    })
    let now = 1_000_000
    const scores = new Map([
      ['bad', -500],
      ['good', 10],
    ])
    const { libp2p, hungUp } = fakeLibp2p(['bad', 'good'])
    const gater = new DenyListGater()
    const book = (): BanBook =>
      bookOf(libp2p, store, {
        score: (p) => scores.get(p) ?? 0,
        onChange: (banned) => gater.setBanned(banned),
        now: () => now,
      })
    const b1 = book()
    await b1.start()
    expect(b1.check()).toEqual([]) // first look: below since now
    now += 2_999
    expect(b1.check()).toEqual([])
    now += 1
    expect(b1.check()).toEqual(['bad'])
    expect(hungUp).toEqual(['bad'])
    expect(gater.isDenied('bad')).toBe(true)
    expect(gater.isDenied('good')).toBe(false)
    // A heal of a partition replaces the deny list only.
    gater.setDenied(['good'])
    gater.setDenied([])
    expect(gater.isDenied('bad')).toBe(true)
    await b1.stop()

    // A restart reads the ban back.
    gater.setBanned([])
    const b2 = book()
    await b2.start()
    expect(gater.isBanned('bad')).toBe(true)
    expect(hungUp).toEqual(['bad', 'bad']) // connected before the book was read: hung up on again
    expect(b2.list().map((r) => [r.peerId, r.offences, r.untilMs - r.sinceMs])).toEqual([['bad', 1, 60_000]])

    // Expiry lets it in again; a second offence bans for twice as long.
    now += 60_000
    scores.set('bad', 0)
    b2.check()
    expect(gater.isBanned('bad')).toBe(false)
    scores.set('bad', -401)
    b2.check()
    now += 3_000
    expect(b2.check()).toEqual(['bad'])
    expect(b2.list().map((r) => [r.offences, r.untilMs - r.sinceMs])).toEqual([[2, 120_000]])
    await b2.stop()
  })

  it('never bans a protected peer (a validator), and lifts a ban it kept from before', async () => {
    const { store, dir } = await tempStore('book-protected')
    cleanup.push(async () => {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    })
    let now = 1_000_000
    const validators = new Set<string>()
    const { libp2p } = fakeLibp2p(['val', 'other'])
    const gater = new DenyListGater()
    const book = (): BanBook =>
      bookOf(libp2p, store, {
        score: () => -500,
        isProtected: (p) => validators.has(p),
        onChange: (banned) => gater.setBanned(banned),
        now: () => now,
      })
    // Not protected yet (its node had not loaded the validator set): both are banned.
    const b1 = book()
    await b1.start()
    b1.check()
    now += 3_000
    expect(b1.check().sort()).toEqual(['other', 'val'])
    await b1.stop()
    // Restarted with the set known: the validator's kept ban is lifted, the other's stays, and the
    // validator is never banned again however low its score.
    validators.add('val')
    const b2 = book()
    await b2.start()
    expect(gater.isBanned('val')).toBe(true)
    b2.check()
    expect(gater.isBanned('val')).toBe(false)
    expect(gater.isBanned('other')).toBe(true)
    now += 10_000
    expect(b2.check()).not.toContain('val')
    expect(b2.list().map((r) => r.peerId)).not.toContain('val')
    await b2.stop()
  })
})

describe('DenyListGater connection caps', () => {
  const conn = (peer: string, ip: string, direction: 'inbound' | 'outbound') =>
    ({
      remotePeer: { toString: () => peer },
      remoteAddr: multiaddr(`/ip4/${ip}/tcp/4001`),
      direction,
    }) as unknown as Connection
  const maConn = (ip: string) => ({ remoteAddr: multiaddr(`/ip4/${ip}/tcp/5555`) }) as never
  const pid = (id: string) => ({ toString: () => id }) as unknown as PeerId

  it('refuses an IP past its inbound cap (loopback exempt) and a peer past its connection cap', () => {
    const g = new DenyListGater()
    const conns = [
      conn('p1', '10.0.0.1', 'inbound'),
      conn('p2', '10.0.0.1', 'inbound'),
      conn('p3', '10.0.0.2', 'outbound'),
      conn('p4', '127.0.0.1', 'inbound'),
      conn('p4', '127.0.0.1', 'inbound'),
    ]
    g.setLimits({ maxInboundPerIp: 2, maxConnectionsPerPeer: 2, ipCapExempt: ['127.0.0.1'] }, () => conns)
    const cg = g.gater()
    expect(cg.denyInboundConnection?.(maConn('10.0.0.1'))).toBe(true)
    expect(cg.denyInboundConnection?.(maConn('10.0.0.2'))).toBe(false) // outbound ones do not count
    conns.push(conn('p5', '127.0.0.1', 'inbound'))
    expect(cg.denyInboundConnection?.(maConn('127.0.0.1'))).toBe(false)
    expect(cg.denyInboundEncryptedConnection?.(pid('p4'), maConn('127.0.0.1'))).toBe(true)
    expect(cg.denyInboundEncryptedConnection?.(pid('p5'), maConn('127.0.0.1'))).toBe(false)
  })
})

/** Probes whose `seq` was accepted once are "already known": IGNORE `DUPLICATE`, as the mempool does. */
class KnownProbes implements TopicHandler<Probe> {
  readonly known = new Set<number>()
  validate(msg: Probe) {
    if (this.known.has(msg.seq)) return ignore('DUPLICATE')
    this.known.add(msg.seq)
    return ACCEPT
  }
}

async function host(
  name: string,
  opts: {
    key?: PrivateKey
    store?: { store: Store; dir: string }
    p2p?: Partial<Omit<P2POptions, 'limits'>> & { limits?: Partial<PeerLimits> }
    /** Another probe validator, and the probe topic's queue bounds. */
    probeHandler?: TopicHandler<Probe>
    queue?: { maxLength: number; concurrency: number }
  } = {},
) {
  const st = opts.store ?? (await tempStore(name))
  const registry = new Registry()
  const probes = new KnownProbes()
  const h = new P2PHost<{ probe: Probe }>(
    {
      networkId: 'peer-bans',
      peerManager: { heartbeatMs: 200, backoffBaseMs: 100, backoffMaxMs: 500 },
      bans: { checkMs: 200, graceMs: 1_000 },
      ...opts.p2p,
    },
    {
      topics: { probe: { ...PROBE_TOPIC, queue: opts.queue ?? PROBE_TOPIC.queue } },
      privateKey: opts.key ?? (await generateKeyPair('Ed25519')),
      store: st.store,
      log: log.child({ host: name }),
      registry,
      head: () => ({ height: 0, blockHash: `0x${'0'.repeat(64)}` }),
    },
  )
  await h.start({ probe: opts.probeHandler ?? probes })
  let stopped = false
  const stop = async (keepStore = false) => {
    if (stopped) return
    stopped = true
    await h.stop()
    if (!keepStore) {
      await st.store.close()
      await rm(st.dir, { recursive: true, force: true })
    }
  }
  cleanup.push(() => stop())
  return { h, probes, registry, stop, st }
}

const addrOf = (h: P2PHost<unknown>) => h.libp2p.getMultiaddrs()[0]!
/**
 * Whether `to` lets `from` in: a dial (that may look open at first: the muxer is negotiated lazily),
 * then a `status` request over it, which only an accepted connection answers. Resolves when the
 * outcome is known and, when refused, once `from` has no connection left to `to`.
 */
async function letIn(from: P2PHost<unknown>, to: P2PHost<unknown>): Promise<boolean> {
  try {
    await from.libp2p.dial(addrOf(to), { signal: AbortSignal.timeout(5_000) })
    await from.reqresp.request(to.libp2p.peerId, STATUS_PROTOCOL, { height: 0 })
    return true
  } catch {
    await waitFor(
      'the refused connection to close',
      () => from.libp2p.getConnections(to.libp2p.peerId).length === 0,
    )
    return false
  }
}
const metric = async (r: Registry, name: string) => (await r.getSingleMetricAsString(name)) ?? ''

describe('a peer replaying known payloads, two hosts', () => {
  it('is penalised, graylisted (its requests refused), banned, kept out across a restart and a heal', async () => {
    const keyB = await generateKeyPair('Ed25519')
    const b = await host('victim', { key: keyB, p2p: { bans: { checkMs: 200, graceMs: 3_000 } } })
    const a = await host('replayer')
    await a.h.libp2p.dial(addrOf(b.h))
    const idA = a.h.peerId
    const probe = (seq: number, k: number): Probe => ({
      seq,
      origin: idA,
      sentAtMs: 1,
      padding: new Uint8Array([k & 255, k >> 8]), // new bytes, new gossip id: the seen cache does not catch it
    })
    // Wait until B accepts A's first probe: from then on every probe with seq 1 is a replay.
    // (A new padding each try: gossipsub drops a republish of the same bytes.)
    let k = 0
    await waitFor('B to accept a probe from A', async () => {
      await a.h.publish('probe', probe(1, k++))
      return b.probes.known.has(1)
    })
    expect(b.h.score(idA)).toBeGreaterThan(-1)
    const status = () => a.h.reqresp.request(b.h.libp2p.peerId, STATUS_PROTOCOL, { height: 0 })
    expect((await status()).peerId).toBe(b.h.peerId) // answered while A is in good standing

    // Replay until B has graylisted A. 50 are free per 10 s, each further one costs 5.
    const t0 = Date.now()
    await waitFor(
      'A graylisted at B',
      async () => {
        for (let i = 0; i < 20; i++) await a.h.publish('probe', probe(1, k++)).catch(() => 0)
        return b.h.score(idA) < SCORE_THRESHOLDS.graylistThreshold
      },
      { timeoutMs: 20_000, intervalMs: 20 },
    )
    const tGray = Date.now() - t0
    expect(k).toBeGreaterThan(50) // the allowance held
    expect(await metric(b.registry, 'murmur_p2p_gossip_replays_total')).toMatch(/penalised="yes"[^\n]* [1-9]/)
    // Graylisted and not yet banned (the grace is 3 s): B resets A's streams unanswered.
    expect(b.h.gater.isBanned(idA)).toBe(false)
    await expect(status()).rejects.toThrow()
    expect(await metric(b.registry, 'murmur_p2p_reqresp_total')).toMatch(/outcome="REFUSED"[^\n]* [1-9]/)

    await waitFor(
      'B to ban and disconnect A',
      () => b.h.bans().some((r) => r.peerId === idA) && !b.h.libp2p.getPeers().map(String).includes(idA),
    )
    // The figure of docs/reliability.md: flood start to graylist, and to disconnection (grace 3 s).
    console.info(
      `replayer: ${k} probes, graylisted after ${tGray} ms, disconnected after ${Date.now() - t0} ms`,
    )
    expect(await metric(b.registry, 'murmur_p2p_banned')).toMatch(/ 1$/m)
    expect(await metric(b.registry, 'murmur_p2p_bans_total')).toMatch(/ 1$/m)
    expect(await letIn(a.h, b.h)).toBe(false)

    // A heal of a partition does not lift a ban.
    await b.h.partition([])
    expect(b.h.gater.isDenied(idA)).toBe(true)

    // Restart B on the same store: the ban is read back and A still cannot get in.
    await b.stop(true)
    const b2 = await host('victim2', { key: keyB, store: b.st })
    expect(b2.h.bans().map((r) => r.peerId)).toEqual([idA])
    expect(await letIn(a.h, b2.h)).toBe(false)
    expect(b2.h.libp2p.getPeers().map(String)).not.toContain(idA)
  }, 60_000)
})

describe('per-IP inbound cap, three hosts', () => {
  it('refuses the second inbound connection from one address when loopback is not exempt', async () => {
    const b = await host('capped', { p2p: { limits: { maxInboundPerIp: 1, ipCapExempt: [] } } })
    const a = await host('first')
    const c = await host('second')
    expect(await letIn(a.h, b.h)).toBe(true)
    await waitFor('B to see A', () => b.h.libp2p.getPeers().map(String).includes(a.h.peerId))
    expect(await letIn(c.h, b.h)).toBe(false)
    expect(b.h.libp2p.getPeers().map(String)).not.toContain(c.h.peerId)
  }, 30_000)
})

describe('per-peer bounds of queued work, two hosts', () => {
  it('one peer holds at most its share of a topic validation queue; the rest is IGNOREd PEER_QUEUE_FULL', async () => {
    // A validator that holds every message until the test lets go: the queue fills.
    const held: Array<() => void> = []
    const slow: TopicHandler<Probe> = {
      validate: () =>
        new Promise((resolve) => {
          held.push(() => resolve(ACCEPT))
        }),
    }
    const b = await host('queued', { probeHandler: slow, queue: { maxLength: 4, concurrency: 4 } })
    const a = await host('pusher')
    await a.h.libp2p.dial(addrOf(b.h))
    let k = 0
    const validated = () => metric(b.registry, 'murmur_p2p_gossip_validation_total')
    await waitFor(
      'B to refuse a probe of A for its queue share',
      async () => {
        await a.h.publish('probe', { seq: k++, origin: a.h.peerId, sentAtMs: 1, padding: new Uint8Array(1) })
        return /code="PEER_QUEUE_FULL"[^\n]* [1-9]/.test(await validated())
      },
      { intervalMs: 50 },
    )
    expect(held.length).toBe(2) // half of maxLength 4, and never more
    expect(await validated()).not.toMatch(/code="QUEUE_FULL"/)
    for (const release of held.splice(0)) release()
  }, 30_000)

  it('a peer has at most maxInflightRequestsPerPeer requests served at once; one more is refused', async () => {
    const gate: Array<() => void> = []
    let open = false
    const SLOW = { ...STATUS_PROTOCOL, name: 'slow' }
    const b = await host('served', {
      p2p: { limits: { maxInflightRequestsPerPeer: 2 }, peerManager: { exchangeIntervalMs: 3_600_000 } },
    })
    await b.h.handle(SLOW, async () => {
      if (!open) await new Promise<void>((resolve) => gate.push(resolve))
      return b.h.status()
    })
    const a = await host('asker', { p2p: { peerManager: { exchangeIntervalMs: 3_600_000 } } })
    await a.h.libp2p.dial(addrOf(b.h))
    // A's peer manager asks B for peers once on connecting: let that exchange finish first.
    await waitFor('the peer exchange answered', async () =>
      /protocol="status",direction="inbound",outcome="OK"[^\n]* [1-9]/.test(
        await metric(b.registry, 'murmur_p2p_reqresp_total'),
      ),
    )
    const ask = () => a.h.reqresp.request(b.h.libp2p.peerId, SLOW, { height: 0 })
    const first = [ask(), ask()]
    await waitFor('two requests held by the handler', () => gate.length === 2)
    await expect(ask()).rejects.toThrow()
    expect(await metric(b.registry, 'murmur_p2p_reqresp_total')).toMatch(/outcome="PEER_BUSY"[^\n]* 1$/m)
    open = true
    for (const release of gate.splice(0)) release()
    for (const r of await Promise.all(first)) expect(r.peerId).toBe(b.h.peerId)
    expect((await ask()).peerId).toBe(b.h.peerId) // served again once the others are done
  }, 30_000)
})
