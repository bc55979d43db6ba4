import rateLimit from '@fastify/rate-limit'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { P2PHost } from '../p2p/host.ts'
import type { Probe } from '../p2p/topics.ts'
import { ApiError, errorBody } from './errors.ts'
import { type ApiLimits, DEFAULT_API_LIMITS, formatRateLimit } from './limits.ts'

/**
 * What the API reads of the node: the few getters its routes use. MurmurNode satisfies it; the API does
 * not import the composition root that builds it (layers point down).
 */
export interface ApiNode {
  /** `GET /v1/status`. */
  status(): object
  /** `GET /metrics`. */
  readonly registry: Pick<Registry, 'contentType' | 'metrics'>
  /** Peers, partitions and probes of the admin routes. */
  readonly p2p: Pick<P2PHost<{ probe: Probe }>, 'peers' | 'bans' | 'partition' | 'peerId' | 'publish'>
  /** Probes sent (`POST /admin/v1/probe`) and received (`GET /admin/v1/probes`). */
  readonly probes: {
    next(origin: string, size: number): Probe
    recent(origin?: string): readonly object[]
  }
}

/** True for an address only this machine reaches (the admin API answers no one else). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export interface ApiOptions {
  host: string
  port: number
  admin: boolean
  /** Rate, size and time limits (limits.ts); each one defaults. */
  limits: ApiLimits
}

/** A route plug-in: modules (mempool, rollups, consensus) add their routes this way. */
export type RouteRegistrar = (app: FastifyInstance) => void

export interface ApiModules {
  node: ApiNode
  log: Logger
  /** Routes of the node's modules, mounted after the base ones. */
  routes?: RouteRegistrar[]
}

/** The node's HTTP API (Fastify): JSON in, JSON out, errors as `{error:{code,message}}`. */
export class ApiServer {
  readonly opts: ApiOptions
  readonly #m: ApiModules
  readonly app: FastifyInstance

  constructor(
    options: Partial<Omit<ApiOptions, 'limits'>> & {
      host: string
      port: number
      limits?: Partial<ApiLimits>
    },
    modules: ApiModules,
  ) {
    const limits = { ...DEFAULT_API_LIMITS, ...options.limits }
    this.opts = { admin: false, ...options, limits }
    this.#m = modules
    this.app = Fastify({
      logger: false,
      bodyLimit: limits.bodyLimit,
      // A URL Fastify cannot route (a bad percent escape, found by test/fuzz/api.test.ts) is answered
      // before any handler: in the API's error shape, not Fastify's own.
      frameworkErrors: (err, _req, reply) => {
        ;(reply as FastifyReply).code(400).send(errorBody('MALFORMED', err.message))
      },
      forceCloseConnections: true,
      // Slow-loris: a client dribbling its head or body, or holding idle sockets, is cut off.
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionTimeout: limits.connectionTimeoutMs,
      http: {
        maxHeaderSize: limits.maxHeaderSize,
        // Node checks the head and request timeouts on this interval (30 s by default, which would let a
        // slow client hold its socket 30 s past its timeout).
        connectionsCheckingInterval: Math.max(100, Math.min(2000, limits.headersTimeoutMs / 2)),
      },
    })
    this.app.server.headersTimeout = limits.headersTimeoutMs
    this.app.server.maxConnections = limits.maxConnections
    const rate = limits.rateLimit
    if (rate !== undefined) {
      // Every route added after this one is limited per client, unless it opts out (admin).
      void this.app.register(rateLimit, {
        global: true,
        max: rate.max,
        timeWindow: rate.windowMs,
        ipv6Subnet: limits.ipv6Subnet,
        errorResponseBuilder: (_req, ctx) =>
          new ApiError(
            429,
            'RATE_LIMITED',
            `more than ${formatRateLimit(rate)} requests from this client; retry in ${ctx.after} (batch intents: up to 256 per POST /v1/intents)`,
          ),
      })
    }
    // In the root context (no encapsulation) but after the rate-limit plug-in, whose onRoute hook must
    // see the routes: the fastify-plugin convention.
    const routes = async () => this.#routes()
    Object.assign(routes, { [Symbol.for('skip-override')]: true })
    void this.app.register(routes)
  }

  get address(): { host: string; port: number } | undefined {
    const a = this.app.server.address()
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : undefined
  }

  get url(): string | undefined {
    const a = this.address
    return a === undefined ? undefined : `http://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`
  }

  async start(): Promise<void> {
    await this.app.listen({ host: this.opts.host, port: this.opts.port })
    this.#m.log.info({ url: this.url, admin: this.opts.admin }, 'api listening')
  }

  async stop(): Promise<void> {
    await this.app.close()
  }

  #routes(): void {
    const app = this.app
    const node = this.#m.node

    app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
      if (err instanceof ApiError) {
        reply.headers(err.headers).code(err.status).send(errorBody(err.code, err.message))
        return
      }
      const status = err.statusCode ?? 500
      if (status >= 500) this.#m.log.error({ err }, 'api handler failed')
      const code =
        status === 413
          ? 'TOO_LARGE'
          : status === 415
            ? 'UNSUPPORTED_MEDIA_TYPE'
            : status < 500
              ? 'MALFORMED'
              : 'INTERNAL'
      reply.code(status).send(errorBody(code, status >= 500 ? 'internal error' : err.message))
    })
    // Probing unknown paths costs a client its budget too (the 404 handler is not a route).
    const limited = this.opts.limits.rateLimit === undefined ? {} : { preHandler: app.rateLimit() }
    app.setNotFoundHandler(limited, (req, reply) => {
      reply.code(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url}`))
    })

    app.get('/v1/status', async () => node.status())
    app.get('/v1/peers', async () => node.p2p.peers())
    // Peers banned now (p2p/bans.ts), soonest expiry first; a ban is public knowledge of our policy.
    app.get('/v1/peers/bans', async () => node.p2p.bans())
    app.get('/metrics', async (_req, reply) => {
      reply.header('content-type', node.registry.contentType)
      return node.registry.metrics()
    })

    for (const r of this.#m.routes ?? []) r(app)

    if (this.opts.admin) this.#adminRoutes()
  }

  #adminRoutes(): void {
    const app = this.app
    const node = this.#m.node
    // Admin routes answer loopback clients only, whatever the listen address, and only with --admin: the
    // operator's tools (partitions, probes) are not rate limited.
    const config = { rateLimit: false } as const
    const loopbackOnly = async (req: FastifyRequest, _reply: FastifyReply) => {
      if (!isLoopback(req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '')) {
        throw new ApiError(403, 'FORBIDDEN', 'admin endpoints answer loopback clients only')
      }
    }
    app.post<{ Body: { deny?: unknown } }>(
      '/admin/v1/partition',
      { preHandler: loopbackOnly, config },
      async (req) => {
        const deny = req.body?.deny
        if (
          !Array.isArray(deny) ||
          !deny.every((p) => typeof p === 'string' && p.length > 0 && p.length < 128)
        ) {
          throw new ApiError(400, 'MALFORMED', 'body must be {deny: [peerId, ...]}')
        }
        return { deny: await node.p2p.partition(deny as string[]) }
      },
    )
    app.post<{ Body: { size?: unknown } }>(
      '/admin/v1/probe',
      { preHandler: loopbackOnly, config },
      async (req) => {
        const size = req.body?.size ?? 300
        if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > 60_000) {
          throw new ApiError(400, 'MALFORMED', 'size must be an integer in [0, 60000]')
        }
        const probe = node.probes.next(node.p2p.peerId, size)
        const recipients = await node.p2p.publish('probe', probe)
        return { origin: probe.origin, seq: probe.seq, recipients }
      },
    )
    app.get<{ Querystring: { origin?: string } }>(
      '/admin/v1/probes',
      { preHandler: loopbackOnly, config },
      async (req) => node.probes.recent(req.query.origin),
    )
  }
}
