/**
 * The delay relay of a `--netns` devnet on a kernel without tc netem (docs/netns.md, "Delay without
 * netem"). Run inside a node's namespace as
 *
 *   ip netns exec NS node devnet/delay-relay.ts --listen 10.a.b.c:4001 --to 127.0.0.1:4001
 *
 * it accepts TCP connections on the node's namespace address and forwards each to the node's libp2p
 * port on the namespace's loopback, holding every chunk, in both directions, for the delay currently set
 * for the connection: the larger of this node's delay and the delay of the node the connection comes
 * from (its source address survives, since packets still cross the bridge from namespace to namespace).
 *
 * Control is the relay's stdin, one JSON line per change (RelayDelays), acknowledged on stdout with
 * `{"event":"delays","seq":N}`; nothing listens on a TCP port for control. The relay exits on SIGTERM or
 * SIGINT, and when its stdin closes (the devnet that started it is gone), so it never outlives its devnet.
 */
import net from 'node:net'
import { createInterface } from 'node:readline'

/** A delay for every chunk: `ms`, plus or minus up to `jitterMs` drawn per chunk. */
export interface ChunkDelay {
  ms: number
  jitterMs: number
}

/** One control line: the delays to apply from now on (replaces the previous ones whole). */
export interface RelayDelays {
  /** Echoed in the acknowledgement, so the sender knows when its change is in force. */
  seq: number
  /** This node's own delay: every connection of this relay. */
  self: ChunkDelay | null
  /** Delays of other nodes by IPv4 address: connections whose source is that address. */
  peers: Record<string, ChunkDelay>
}

/** Bytes queued in one direction of a connection at which its source is paused. */
export const RELAY_HIGH_WATER_BYTES = 1 << 20
/** Bytes queued at which a paused source is resumed. */
export const RELAY_LOW_WATER_BYTES = 1 << 18

/** The delay a chunk gets: `ms` plus a uniform draw in [-jitterMs, jitterMs], never below 0. */
function drawMs(d: ChunkDelay | null | undefined): number {
  if (d === null || d === undefined) return 0
  return Math.max(0, d.ms + (d.jitterMs > 0 ? (Math.random() * 2 - 1) * d.jitterMs : 0))
}

/** The larger of two delays (by their base; the jitter goes with the one chosen). */
export function maxDelay(
  a: ChunkDelay | null | undefined,
  b: ChunkDelay | null | undefined,
): ChunkDelay | null {
  if (a === null || a === undefined) return b ?? null
  if (b === null || b === undefined) return a
  return b.ms > a.ms ? b : a
}

/**
 * One direction of a relayed connection. Chunks leave in the order they came, each no earlier than
 * its arrival plus the delay then in force: one FIFO with due times and one timer for its head (a
 * timer per chunk would let a shorter delay overtake a longer one). A due time is never earlier than
 * the one before it, so a delay lowered mid-stream does not reorder; jitter spreads chunks, never
 * reorders them (TCP delivers in order; netem's reordering is not reproduced). The source is paused
 * while more than RELAY_HIGH_WATER_BYTES wait, and the queue stops while the destination's buffer is
 * full (its `drain`).
 */
export class DelayedPipe {
  readonly #src: net.Socket
  readonly #dst: net.Socket
  readonly #delay: () => ChunkDelay | null
  /** Waiting chunks (null: the source's end), oldest first from #head. */
  #queue: Array<{ dueMs: number; chunk: Buffer | null }> = []
  #head = 0
  #bytes = 0
  #lastDueMs = 0
  #timer: NodeJS.Timeout | undefined
  #paused = false
  #waitingDrain = false
  #done = false

  constructor(src: net.Socket, dst: net.Socket, delay: () => ChunkDelay | null) {
    this.#src = src
    this.#dst = dst
    this.#delay = delay
    src.on('data', (chunk: Buffer) => this.#push(chunk))
    src.on('end', () => this.#push(null))
    dst.on('close', () => this.#stop())
  }

  /** Bytes waiting in this direction (for the backpressure test). */
  get queuedBytes(): number {
    return this.#bytes
  }

  #push(chunk: Buffer | null): void {
    if (this.#done) return
    const now = performance.now()
    const dueMs = Math.max(this.#lastDueMs, now + drawMs(this.#delay()))
    this.#lastDueMs = dueMs
    this.#queue.push({ dueMs, chunk })
    if (chunk !== null) this.#bytes += chunk.length
    if (this.#bytes > RELAY_HIGH_WATER_BYTES && !this.#paused) {
      this.#paused = true
      this.#src.pause()
    }
    if (this.#queue.length - this.#head === 1) this.#pump()
  }

  #pump(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#timer = undefined
    const now = performance.now()
    while (this.#head < this.#queue.length && !this.#waitingDrain && !this.#done) {
      const next = this.#queue[this.#head]!
      if (next.dueMs > now) break
      this.#head++
      if (next.chunk === null) {
        this.#dst.end()
        continue
      }
      this.#bytes -= next.chunk.length
      if (!this.#dst.write(next.chunk)) {
        this.#waitingDrain = true
        this.#dst.once('drain', () => {
          this.#waitingDrain = false
          this.#pump()
        })
      }
    }
    // Compact now and then, so a long-lived connection's array does not grow without bound.
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head)
      this.#head = 0
    }
    if (this.#paused && this.#bytes < RELAY_LOW_WATER_BYTES) {
      this.#paused = false
      this.#src.resume()
    }
    const next = this.#queue[this.#head]
    if (next !== undefined && !this.#waitingDrain && !this.#done)
      this.#timer = setTimeout(() => this.#pump(), Math.max(1, Math.ceil(next.dueMs - now)))
  }

  #stop(): void {
    this.#done = true
    if (this.#timer !== undefined) clearTimeout(this.#timer)
    this.#queue = []
    this.#head = 0
    this.#bytes = 0
  }
}

/** A relay server: one listening socket, the connections it forwards, the delays in force. */
export class DelayRelay {
  readonly #to: { host: string; port: number }
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()
  #delays: RelayDelays = { seq: 0, self: null, peers: {} }

  constructor(to: { host: string; port: number }) {
    this.#to = to
    this.#server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#accept(s))
  }

  /** Listens on host:port (0: any free port); resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject)
      this.#server.listen(port, host, () => {
        this.#server.off('error', reject)
        resolve((this.#server.address() as net.AddressInfo).port)
      })
    })
  }

  /** Replaces the delays; chunks already queued keep their due times. */
  set(delays: RelayDelays): void {
    this.#delays = delays
  }

  /** The delay of a connection from `from` now: the larger of this node's and the source's. */
  delayFor(from: string): ChunkDelay | null {
    return maxDelay(this.#delays.self, this.#delays.peers[from])
  }

  #accept(inbound: net.Socket): void {
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    const from = (inbound.remoteAddress ?? '').replace(/^::ffff:/, '')
    const outbound = net.connect({ ...this.#to, allowHalfOpen: true, noDelay: true })
    const kill = () => {
      inbound.destroy()
      outbound.destroy()
    }
    for (const s of [inbound, outbound]) {
      this.#sockets.add(s)
      s.on('error', kill)
      s.on('close', () => this.#sockets.delete(s))
    }
    const delay = () => this.delayFor(from)
    new DelayedPipe(inbound, outbound, delay)
    new DelayedPipe(outbound, inbound, delay)
  }

  /** Stops listening and drops every connection. */
  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.#server.close(() => r()))
    for (const s of this.#sockets) s.destroy()
    await closed
  }
}

function hostPort(flag: string, v: string | undefined): { host: string; port: number } {
  const m = /^([\d.]+):(\d+)$/.exec(v ?? '')
  if (m === null) {
    process.stderr.write(`delay-relay: ${flag} needs IPV4:PORT, got ${v ?? 'nothing'}\n`)
    process.exit(2)
  }
  return { host: m[1]!, port: Number(m[2]) }
}

/** The relay as a process: `--listen IPV4:PORT --to IPV4:PORT`, control on stdin, events on stdout. */
async function main(argv: string[]): Promise<void> {
  const listen = hostPort('--listen', argv[argv.indexOf('--listen') + 1])
  const to = hostPort('--to', argv[argv.indexOf('--to') + 1])
  const relay = new DelayRelay(to)
  const port = await relay.listen(listen.host, listen.port)
  const say = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`)
  let stopping = false
  const stop = () => {
    if (stopping) return
    stopping = true
    void relay.close().then(() => process.exit(0))
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    try {
      const d = JSON.parse(line) as RelayDelays
      relay.set({ seq: Number(d.seq), self: d.self ?? null, peers: d.peers ?? {} })
      say({ event: 'delays', seq: d.seq })
    } catch (err) {
      say({ event: 'error', message: (err as Error).message })
    }
  })
  lines.on('close', stop)
  say({ event: 'listening', host: listen.host, port })
}

if (import.meta.main) await main(process.argv.slice(2))
