/**
 * The devnet's dashboard over HTTP: the page's static files (devnet/dashboard/), uPlot from node_modules
 * (no CDN: the page works offline), `GET /api/state`, `GET /api/node/:i`, and ONE Server-Sent Events
 * stream `GET /api/stream` carrying the DashboardFeed's messages, so a page opens one connection whatever
 * the number of nodes. The devnet's control server hands it every request it does not answer itself.
 */
import { readFile } from 'node:fs/promises'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { DASHBOARD_FILES } from '../src/api/dashboard.ts'
import { DashboardFeed, type FeedMessage, type FeedSource } from './dashboard-feed.ts'

// The page's files: the same table the node's `--dashboard` route serves ('' = the page), here from '/'.
const FILES = new Map(Object.entries(DASHBOARD_FILES).map(([p, f]) => [`/${p}`, f]))
FILES.set('/index.html', DASHBOARD_FILES['']!)

/** Most pages streaming at once (each is one socket and one listener). */
const MAX_STREAMS = 32
/** A page whose socket holds more than this unsent is dropped rather than buffered without end. */
const MAX_STREAM_BUFFER = 1 << 20

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

/** What the dashboard asks of the devnet beyond the feed's source. */
export interface DashboardDevnet extends FeedSource {
  /** The devnet's recorded state (`devnet.json`), as `/api/state` always answered. */
  state(): object
  /** The first running node's `/v1/rollups`, and every node's `/v1/status` (the old `/api/state`). */
  statuses(): Promise<unknown>
}

export class DashboardServer {
  readonly feed: DashboardFeed
  readonly #devnet: DashboardDevnet
  #streams = 0

  constructor(devnet: DashboardDevnet, pollMs = 1_000) {
    this.#devnet = devnet
    this.feed = new DashboardFeed(devnet, pollMs)
  }

  /** Answers the request if it is the dashboard's; false leaves it to the caller. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (req.method !== 'GET') return false
    const path = (req.url ?? '/').split('?')[0]!
    const file = FILES.get(path)
    if (file !== undefined) {
      const body = await readFile(file[0])
      res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-cache' })
      res.end(body)
      return true
    }
    if (path === '/api/state') {
      sendJson(res, 200, {
        mode: 'devnet',
        ...this.#devnet.state(),
        ...((await this.#devnet.statuses()) as object),
        history: this.feed.history,
        faults: this.feed.faults,
        last: this.feed.last ?? null,
      })
      return true
    }
    const node = /^\/api\/node\/(\d+)$/.exec(path)
    if (node !== null) {
      sendJson(res, 200, await this.#nodeDetails(Number(node[1])))
      return true
    }
    if (path === '/api/stream') {
      this.#stream(req, res)
      return true
    }
    return false
  }

  async #nodeDetails(i: number): Promise<unknown> {
    const n = this.#devnet.nodes().find((x) => x.index === i)
    if (n === undefined) return { index: i, error: 'no such node' }
    if (n.api === null) return { index: i, peerId: n.peerId, down: true }
    const get = (p: string) =>
      fetch(`${n.api}${p}`, { signal: AbortSignal.timeout(2_000) })
        .then((r) => r.json())
        .catch((err: Error) => ({ error: err.message }))
    const [status, peers, rollups] = await Promise.all([
      get('/v1/status'),
      get('/v1/peers'),
      get('/v1/rollups'),
    ])
    return { index: i, api: n.api, status, peers, rollups }
  }

  #stream(req: IncomingMessage, res: ServerResponse): void {
    if (this.#streams >= MAX_STREAMS) {
      sendJson(res, 503, { error: { code: 'OVERLOADED', message: 'too many dashboard streams' } })
      return
    }
    this.#streams++
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    })
    const write = (m: FeedMessage) => {
      if (res.writableLength > MAX_STREAM_BUFFER) {
        res.destroy()
        return
      }
      res.write(`event: ${m.type}\ndata: ${JSON.stringify(m.data)}\n\n`)
    }
    res.write(': murmur dashboard\n\n')
    if (this.feed.last !== undefined) write({ type: 'tick', data: this.feed.last })
    const unsubscribe = this.feed.subscribe(write)
    req.on('close', () => {
      unsubscribe()
      this.#streams--
    })
  }
}
