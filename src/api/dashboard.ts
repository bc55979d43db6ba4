import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance } from 'fastify'
import { IntentTally } from './intent-tally.ts'

// The page is the devnet's (devnet/dashboard/, plain browser JavaScript); its URLs are relative, so the
// same files work here under /dashboard/ against this node's own stream.
const PAGE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'devnet', 'dashboard')
const UPLOT = dirname(createRequire(import.meta.url).resolve('uplot'))

/**
 * The dashboard's files, by path under the page's base URL ('' the page itself): [file, content type].
 * Nothing else is served (no file path is taken from a request). The devnet's server serves the same.
 */
export const DASHBOARD_FILES: Readonly<Record<string, readonly [string, string]>> = {
  '': [join(PAGE, 'index.html'), 'text/html; charset=utf-8'],
  'app.js': [join(PAGE, 'app.js'), 'text/javascript; charset=utf-8'],
  'style.css': [join(PAGE, 'style.css'), 'text/css; charset=utf-8'],
  'vendor/uplot.iife.min.js': [join(UPLOT, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
  'vendor/uPlot.min.css': [join(UPLOT, 'uPlot.min.css'), 'text/css; charset=utf-8'],
}

/** How often the node's dashboard stream sends a tick. */
const TICK_MS = 1_000
/** Pages streaming at once from one node. */
const MAX_DASHBOARD_STREAMS = 8

/** What the node's dashboard takes from the node beside its `/v1` routes. */
export interface DashboardSources {
  /**
   * Subscribes to this node's `intent` events (the data `/v1/events` sends: pool transitions and
   * settlement changes), for the intent counts and latencies; returns the unsubscribe.
   */
  readonly intentEvents?: (listener: (data: unknown) => void) => () => void
  /** The height a connected peer is known to have committed (consensus/sync.ts), for the peer cards. */
  readonly peerHeight?: (peerId: string) => bigint | undefined
}

/**
 * `GET /dashboard/` (`murmur node start --dashboard`): the devnet's dashboard page showing this one node's
 * view: itself and the peers it is connected to, its view of the rollups, staking and validators, with
 * no fault buttons. `GET /dashboard/api/state` says `{mode: "node"}`; `GET /dashboard/api/stream` is a
 * Server-Sent Events stream of `tick` messages (the devnet stream's format) built once a second from
 * this node's own `/v1` routes, asked in-process (no socket), with the intent counts of the intents this
 * node saw since it started and its peers' heights; `GET /dashboard/api/node/0` its status.
 */
export function dashboardRoutes(sources: DashboardSources = {}) {
  return (app: FastifyInstance): void => {
    const tally = new IntentTally()
    const unsubscribe = sources.intentEvents?.((data) => tally.onEvent(data))
    const local = async (url: string): Promise<unknown> => {
      const r = await app.inject({ method: 'GET', url })
      return r.statusCode === 200 ? r.json() : null
    }
    const tick = async () => {
      const [status, peers, rollups, staking, validators] = (await Promise.all([
        local('/v1/status'),
        local('/v1/peers'),
        local('/v1/rollups'),
        local('/v1/staking'),
        local('/v1/validators'),
      ])) as [
        { peerId: string; validator: string; height: number; syncing: boolean },
        Array<{ peerId: string }> | null,
        unknown[] | null,
        unknown,
        Array<{ address: string; jailed: boolean }> | null,
      ]
      const others = (peers ?? []).map((p, k) => ({
        i: k + 1,
        status: 'up',
        height: ((h) => (h === undefined ? null : Number(h)))(sources.peerHeight?.(p.peerId)),
        peers: [0],
        peerId: p.peerId,
        validator: null,
        api: null,
      }))
      const jailed = (validators ?? []).some((v) => v.jailed && v.address.toLowerCase() === status.validator)
      const self = {
        i: 0,
        status: jailed ? 'jailed' : status.syncing ? 'syncing' : others.length === 0 ? 'degraded' : 'up',
        height: status.height,
        peers: others.map((o) => o.i),
        peerId: status.peerId,
        validator: status.validator,
        api: null,
      }
      return {
        t: Date.now(),
        nodes: [self, ...others],
        rollups: rollups ?? [],
        intents: tally.figures(),
        staking,
        validators: validators ?? [],
        extra: {},
      }
    }

    for (const [path, [file, type]] of Object.entries(DASHBOARD_FILES)) {
      app.get(`/dashboard/${path}`, async (_req, reply) => {
        reply.header('content-type', type).header('cache-control', 'no-cache')
        return readFile(file)
      })
    }
    app.get('/dashboard', async (_req, reply) => reply.redirect('/dashboard/'))
    app.get('/dashboard/api/state', async () => ({
      mode: 'node',
      peerId: ((await local('/v1/status')) as { peerId: string }).peerId,
      history: { t: [], heights: [], gas: {}, baseFee: {} },
      faults: [],
    }))
    app.get('/dashboard/api/node/0', async () => ({
      index: 0,
      status: await local('/v1/status'),
      peers: await local('/v1/peers'),
      rollups: await local('/v1/rollups'),
    }))

    const streams = new Set<() => void>()
    app.addHook('onClose', async () => {
      unsubscribe?.()
      for (const end of streams) end()
    })
    app.get('/dashboard/api/stream', (req, reply) => {
      if (streams.size >= MAX_DASHBOARD_STREAMS) {
        reply.code(503).send({ error: { code: 'OVERLOADED', message: 'too many dashboard streams' } })
        return
      }
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      res.write(': murmur node dashboard\n\n')
      const send = () =>
        tick()
          .then((t) => res.write(`event: tick\ndata: ${JSON.stringify(t)}\n\n`))
          .catch(() => {})
      const timer = setInterval(send, TICK_MS)
      void send()
      const end = () => {
        clearInterval(timer)
        streams.delete(end)
        res.end()
      }
      streams.add(end)
      req.raw.on('close', end)
    })
  }
}
