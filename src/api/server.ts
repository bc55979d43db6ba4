import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { P2PHost } from '../p2p/host.ts'
import type { Probe } from '../p2p/topics.ts'
import { ApiError, errorBody } from './errors.ts'

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
  readonly p2p: Pick<P2PHost<{ probe: Probe }>, 'peers' | 'partition' | 'peerId' | 'publish'>
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
  /** Largest request body accepted, bytes. */
  bodyLimit: number
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

  constructor(options: Partial<ApiOptions> & { host: string; port: number }, modules: ApiModules) {
    this.opts = { admin: false, bodyLimit: 64 * 1024, ...options }
    this.#m = modules
    this.app = Fastify({ logger: false, bodyLimit: this.opts.bodyLimit, forceCloseConnections: true })
    this.#routes()
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
    app.setNotFoundHandler((req, reply) => {
      reply.code(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url}`))
    })

    app.get('/v1/status', async () => node.status())
    app.get('/v1/peers', async () => node.p2p.peers())
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
    // Admin routes answer loopback clients only, whatever the listen address.
    const loopbackOnly = async (req: FastifyRequest, _reply: FastifyReply) => {
      if (!isLoopback(req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '')) {
        throw new ApiError(403, 'FORBIDDEN', 'admin endpoints answer loopback clients only')
      }
    }
    app.post<{ Body: { deny?: unknown } }>(
      '/admin/v1/partition',
      { preHandler: loopbackOnly },
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
    app.post<{ Body: { size?: unknown } }>('/admin/v1/probe', { preHandler: loopbackOnly }, async (req) => {
      const size = req.body?.size ?? 300
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0 || size > 60_000) {
        throw new ApiError(400, 'MALFORMED', 'size must be an integer in [0, 60000]')
      }
      const probe = node.probes.next(node.p2p.peerId, size)
      const recipients = await node.p2p.publish('probe', probe)
      return { origin: probe.origin, seq: probe.seq, recipients }
    })
    app.get<{ Querystring: { origin?: string } }>(
      '/admin/v1/probes',
      { preHandler: loopbackOnly },
      async (req) => node.probes.recent(req.query.origin),
    )
  }
}
