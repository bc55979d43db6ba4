import type { Libp2p, PeerId, Stream } from '@libp2p/interface'
import { lpStream } from '@libp2p/utils'
import type { Logger } from 'pino'
import type { Counter } from 'prom-client'
import type { Codec } from '../codec/cbor.ts'
import { P2PError } from '../errors.ts'
import { protocolString } from './topics.ts'

/**
 * Request/response over libp2p streams. One exchange per stream:
 *   request  = one length-prefixed frame holding the request codec's bytes;
 *   response = one length-prefixed frame: a status byte, then the response codec's bytes
 *              (status OK) or a short UTF-8 reason (any other status).
 * Sizes are bounded by each codec's maxBytes before any byte is buffered beyond it,
 * and every exchange has a deadline.
 */
export interface ProtocolSpec<Req, Res> {
  /** Short name; the protocol id is `/murmur/<networkId>/<name>/1`. */
  readonly name: string
  readonly request: Codec<Req>
  readonly response: Codec<Res>
  /** Whole-exchange deadline (dial, write, read), milliseconds. */
  readonly timeoutMs: number
  /** Inbound streams of this protocol open at once per connection. */
  readonly maxInboundStreams: number
}

export const RESPONSE_OK = 0
export const RESPONSE_INVALID_REQUEST = 1
export const RESPONSE_SERVER_ERROR = 2
export const RESPONSE_RATE_LIMITED = 3

export type RequestHandler<Req, Res> = (req: Req, from: PeerId) => Promise<Res> | Res

export interface ReqRespModules {
  log: Logger
  metrics: { reqresp: Counter<'protocol' | 'direction' | 'outcome'> }
  /** Called when a peer sends something that does not decode: lowers its score. */
  onBadPeer: (peer: PeerId, reason: string) => void
  /**
   * True for a peer whose streams we do not serve (banned, graylisted): its stream is reset before a
   * byte is read, so a peer we shut out costs no decode and gets no answer.
   */
  refuse?: (peer: PeerId) => boolean
  /** Inbound requests served at once per peer, over all protocols and connections (default 32). */
  maxInflightPerPeer?: number
}

/** Default bound of inbound requests in flight per peer. */
export const DEFAULT_MAX_INFLIGHT_PER_PEER = 32

export class ReqResp {
  readonly #libp2p: Libp2p
  readonly #networkId: string
  readonly #mod: ReqRespModules
  readonly #registered: string[] = []
  /** Inbound requests being served, per peer: the per-peer bound of work a peer can queue here. */
  readonly #inflight = new Map<string, number>()

  constructor(libp2p: Libp2p, networkId: string, modules: ReqRespModules) {
    this.#libp2p = libp2p
    this.#networkId = networkId
    this.#mod = modules
  }

  protocolId(spec: ProtocolSpec<unknown, unknown>): string {
    return protocolString(this.#networkId, spec.name)
  }

  async handle<Req, Res>(spec: ProtocolSpec<Req, Res>, handler: RequestHandler<Req, Res>): Promise<void> {
    const id = this.protocolId(spec as ProtocolSpec<unknown, unknown>)
    await this.#libp2p.handle(
      id,
      (stream, connection) => {
        const from = connection.remotePeer
        if (this.#mod.refuse?.(from) === true) {
          this.#count(spec, 'inbound', 'REFUSED')
          stream.abort(new P2PError('DENIED', 'peer shut out'))
          return
        }
        const id = from.toString()
        const n = this.#inflight.get(id) ?? 0
        if (n >= (this.#mod.maxInflightPerPeer ?? DEFAULT_MAX_INFLIGHT_PER_PEER)) {
          this.#count(spec, 'inbound', 'PEER_BUSY')
          stream.abort(new P2PError('DENIED', 'too many requests in flight'))
          return
        }
        this.#inflight.set(id, n + 1)
        // Never let a remote's stream crash the node: every failure ends here.
        this.#serve(spec, handler, stream, from)
          .catch((err: Error) => {
            this.#mod.log.debug({ protocol: spec.name, err: err.message }, 'inbound request failed')
            stream.abort(err)
          })
          .finally(() => {
            const left = (this.#inflight.get(id) ?? 1) - 1
            if (left <= 0) this.#inflight.delete(id)
            else this.#inflight.set(id, left)
          })
      },
      { maxInboundStreams: spec.maxInboundStreams },
    )
    this.#registered.push(id)
  }

  async #serve<Req, Res>(
    spec: ProtocolSpec<Req, Res>,
    handler: RequestHandler<Req, Res>,
    stream: Stream,
    from: PeerId,
  ): Promise<void> {
    const signal = AbortSignal.timeout(spec.timeoutMs)
    const lp = lpStream(stream, { maxDataLength: spec.request.maxBytes })
    let req: Req
    try {
      const frame = await lp.read({ signal })
      req = spec.request.decode(frame.subarray())
    } catch (err) {
      const reason = err instanceof P2PError ? err.code : 'READ_FAILED'
      this.#count(spec, 'inbound', reason)
      // A frame that does not decode or exceeds the limit is misbehaviour; a timeout is not.
      if (reason !== 'READ_FAILED' || /length|data/i.test((err as Error).message)) {
        this.#mod.onBadPeer(from, `${spec.name}:${reason}`)
      }
      await this.#writeStatus(lp, RESPONSE_INVALID_REQUEST, reason, signal)
      return
    }
    let res: Res
    try {
      res = await handler(req, from)
    } catch (err) {
      this.#mod.log.warn({ protocol: spec.name, err: (err as Error).message }, 'request handler failed')
      this.#count(spec, 'inbound', 'SERVER_ERROR')
      await this.#writeStatus(lp, RESPONSE_SERVER_ERROR, 'internal error', signal)
      return
    }
    const body = spec.response.encode(res)
    const frame = new Uint8Array(body.length + 1)
    frame[0] = RESPONSE_OK
    frame.set(body, 1)
    await lp.write(frame, { signal })
    await stream.close({ signal })
    this.#count(spec, 'inbound', 'OK')
  }

  async #writeStatus(
    lp: ReturnType<typeof lpStream<Stream>>,
    status: number,
    reason: string,
    signal: AbortSignal,
  ): Promise<void> {
    const text = new TextEncoder().encode(reason.slice(0, 200))
    const frame = new Uint8Array(text.length + 1)
    frame[0] = status
    frame.set(text, 1)
    try {
      await lp.write(frame, { signal })
      await lp.unwrap().close({ signal })
    } catch {
      lp.unwrap().abort(new Error(reason))
    }
  }

  /** Sends one request and returns the decoded response; P2PError on any failure. */
  async request<Req, Res>(
    peer: PeerId,
    spec: ProtocolSpec<Req, Res>,
    req: Req,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Res> {
    const signals = [AbortSignal.timeout(spec.timeoutMs)]
    if (opts.signal !== undefined) signals.push(opts.signal)
    const signal = AbortSignal.any(signals)
    let stream: Stream | undefined
    try {
      stream = await this.#libp2p.dialProtocol(
        peer,
        this.protocolId(spec as ProtocolSpec<unknown, unknown>),
        {
          signal,
        },
      )
      // The response may carry up to maxBytes of body plus its status byte.
      const lp = lpStream(stream, { maxDataLength: spec.response.maxBytes + 1 })
      await lp.write(spec.request.encode(req), { signal })
      const frame = (await lp.read({ signal })).subarray()
      await stream.close({ signal }).catch(() => {})
      const status = frame[0]
      if (status !== RESPONSE_OK) {
        const reason = new TextDecoder().decode(frame.subarray(1))
        this.#count(spec, 'outbound', 'REMOTE_ERROR')
        throw new P2PError('REMOTE_ERROR', `${spec.name}: peer answered ${status}: ${reason}`)
      }
      const res = spec.response.decode(frame.subarray(1))
      this.#count(spec, 'outbound', 'OK')
      return res
    } catch (err) {
      stream?.abort(err as Error)
      if (err instanceof P2PError) {
        if (err.code === 'DECODE' || err.code === 'TOO_LARGE')
          this.#mod.onBadPeer(peer, `${spec.name}:${err.code}`)
        this.#count(spec, 'outbound', err.code)
        throw err
      }
      if (signal.aborted) {
        this.#count(spec, 'outbound', 'TIMEOUT')
        throw new P2PError('TIMEOUT', `${spec.name}: no answer within ${spec.timeoutMs} ms`)
      }
      this.#count(spec, 'outbound', 'FAILED')
      throw new P2PError('REMOTE_ERROR', `${spec.name}: ${(err as Error).message}`, { cause: err })
    }
  }

  #count(
    spec: ProtocolSpec<unknown, unknown> | ProtocolSpec<never, never>,
    direction: string,
    outcome: string,
  ) {
    this.#mod.metrics.reqresp.inc({ protocol: spec.name, direction, outcome })
  }

  async stop(): Promise<void> {
    if (this.#registered.length > 0) await this.#libp2p.unhandle(this.#registered.splice(0))
  }
}
