/**
 * The delay relay (devnet/delay-relay.ts) on loopback, no root needed: as a process controlled over its
 * stdin, it delays both directions by the larger of its own delay and the source's, and a cleared delay
 * is gone; in process, a chunk sent after the delay was lowered never overtakes one sent before, and a
 * destination that does not read pauses the source instead of filling the relay's memory.
 */
import net from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { DelayedPipe, RELAY_HIGH_WATER_BYTES } from '../devnet/delay-relay.ts'
import { RelayProcess } from '../devnet/relays.ts'
import { alive } from './helpers/proc.ts'
import { waitFor } from './helpers/wait.ts'

const closers: Array<() => unknown> = []
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c()
})

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  )
}

async function echoServer(): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {})
    s.pipe(s)
  })
  closers.push(() => new Promise((r) => server.close(r)))
  const sockets = new Set<net.Socket>()
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  closers.push(() => {
    for (const s of sockets) s.destroy()
  })
  return listen(server)
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, noDelay: true }, () => resolve(s))
    s.once('error', reject)
    closers.push(() => s.destroy())
  })
}

/** Median round trip of one small message through `port` to the echo server and back, in ms. */
async function rttMs(port: number, n = 5): Promise<number> {
  const s = await connect(port)
  const times: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = performance.now()
    const back = new Promise<void>((r) => s.once('data', () => r()))
    s.write(`ping ${i}\n`)
    await back
    times.push(performance.now() - t0)
  }
  s.destroy()
  return times.sort((a, b) => a - b)[Math.floor(n / 2)]!
}

describe('delay relay process: control over stdin, both directions, max of self and source', () => {
  let relay: RelayProcess
  let port: number
  beforeAll(async () => {
    const echo = await echoServer()
    // The echo server's closers must outlive the per-test afterEach: keep them for afterAll.
    const keep = closers.splice(0)
    relay = await RelayProcess.start(0, '127.0.0.1:0', `127.0.0.1:${echo}`)
    port = Number(relay.listen.split(':')[1])
    afterAll(async () => {
      await relay.stop()
      for (const c of keep.reverse()) await c()
    })
  })

  it('forwards at once without a delay', async () => {
    expect(port).toBeGreaterThan(0)
    expect(await rttMs(port)).toBeLessThan(100)
  })

  it('its own delay holds each direction: a 300 ms delay makes a round trip of at least 600 ms', async () => {
    await relay.set({ ms: 300, jitterMs: 0 }, {})
    const rtt = await rttMs(port, 3)
    expect(rtt).toBeGreaterThanOrEqual(600)
    await relay.set(null, {})
    expect(await rttMs(port)).toBeLessThan(100)
  })

  it("the source's delay applies to connections from its address only, and the larger delay wins", async () => {
    // Connections from the test come from 127.0.0.1.
    await relay.set(null, { '10.255.0.9': { ms: 500, jitterMs: 0 } })
    expect(await rttMs(port)).toBeLessThan(100)
    await relay.set(null, { '127.0.0.1': { ms: 250, jitterMs: 0 } })
    expect(await rttMs(port, 3)).toBeGreaterThanOrEqual(500)
    // The max of 150 (own) and 400 (source): 800 per round trip; their sum would be 1100.
    await relay.set({ ms: 150, jitterMs: 0 }, { '127.0.0.1': { ms: 400, jitterMs: 0 } })
    const both = await rttMs(port, 3)
    expect(both).toBeGreaterThanOrEqual(800)
    expect(both).toBeLessThan(1_100)
    await relay.set(null, {})
  })

  it('stops by its pid, and exits by itself when its stdin closes', async () => {
    const echo = await echoServer()
    const other = await RelayProcess.start(1, '127.0.0.1:0', `127.0.0.1:${echo}`)
    closers.push(() => other.stop())
    const pid = other.pid!
    expect(alive(pid)).toBe(true)
    other.closeControl()
    await waitFor('the relay gone after its stdin closed', () => !alive(pid), { timeoutMs: 10_000 })
  })
})

/** A listening socket whose accepted connections are handed to `onSocket`. */
async function server(onSocket: (s: net.Socket) => void): Promise<number> {
  const srv = net.createServer({ allowHalfOpen: true }, onSocket)
  const port = await listen(srv)
  closers.push(() => new Promise((r) => srv.close(r)))
  return port
}

/** client -> [a] pipe [b] -> sink: a DelayedPipe between two real sockets, as the relay makes them. */
async function pipeTo(
  sinkPort: number,
  delay: () => { ms: number; jitterMs: number } | null,
): Promise<{ client: net.Socket; pipe: Promise<DelayedPipe> }> {
  let made!: (p: DelayedPipe) => void
  const pipe = new Promise<DelayedPipe>((r) => {
    made = r
  })
  const port = await server((a) => {
    const b = net.connect({ host: '127.0.0.1', port: sinkPort, allowHalfOpen: true })
    closers.push(() => a.destroy())
    closers.push(() => b.destroy())
    made(new DelayedPipe(a, b, delay))
  })
  return { client: await connect(port), pipe }
}

describe('DelayedPipe: order and backpressure', () => {
  it('a chunk sent after the delay was lowered waits behind the one before it (FIFO)', async () => {
    const got: Array<{ at: number; data: string }> = []
    const sink = await server((s) => {
      closers.push(() => s.destroy())
      s.on('data', (d: Buffer) => got.push({ at: performance.now(), data: d.toString() }))
    })
    let ms = 400
    const { client, pipe } = await pipeTo(sink, () => ({ ms, jitterMs: 0 }))
    const p = await pipe
    const t0 = performance.now()
    client.write('first;')
    await waitFor('the first chunk in the queue', () => p.queuedBytes === 6, { intervalMs: 5 })
    ms = 0
    client.write('second;')
    await waitFor('both chunks at the sink', () => got.map((g) => g.data).join('') === 'first;second;', {
      timeoutMs: 5_000,
      intervalMs: 10,
    })
    // The second chunk, sent with no delay, left no earlier than the first's due time.
    expect(got.at(-1)!.at - t0).toBeGreaterThanOrEqual(399)
  })

  it('a destination that does not read pauses the source; nothing is lost once it reads', async () => {
    let sinkSocket: net.Socket | undefined
    const received: Buffer[] = []
    const sink = await server((s) => {
      closers.push(() => s.destroy())
      sinkSocket = s
      s.pause()
      s.on('data', (d: Buffer) => received.push(d))
    })
    const { client, pipe } = await pipeTo(sink, () => null)
    const p = await pipe
    const chunk = Buffer.alloc(64 * 1024, 7)
    const total = 64 * 1024 * 1024
    let written = 0
    let maxQueued = 0
    const watch = setInterval(() => {
      maxQueued = Math.max(maxQueued, p.queuedBytes)
    }, 5)
    closers.push(() => clearInterval(watch))
    // Write until the client's own buffer backs up: the relay stopped reading from it.
    while (written < total && client.writableLength < 8 * 1024 * 1024) {
      client.write(chunk)
      written += chunk.length
      if (written % (4 * 1024 * 1024) === 0) await new Promise((r) => setImmediate(r))
    }
    await waitFor(
      'the relay queue past its high water mark',
      () => p.queuedBytes > RELAY_HIGH_WATER_BYTES / 2,
      {
        timeoutMs: 10_000,
        intervalMs: 10,
      },
    )
    // The client could not hand over everything: the relay paused it rather than buffering 64 MiB.
    await waitFor('the client stuck with unsent bytes', () => client.writableLength > 0, { timeoutMs: 5_000 })
    expect(written - client.writableLength).toBeLessThan(total)
    expect(maxQueued).toBeLessThanOrEqual(RELAY_HIGH_WATER_BYTES + 2 * chunk.length)
    const sent = written
    sinkSocket!.resume()
    await waitFor('every byte at the sink', () => received.reduce((n, b) => n + b.length, 0) === sent, {
      timeoutMs: 30_000,
    })
    expect(maxQueued).toBeLessThanOrEqual(RELAY_HIGH_WATER_BYTES + 2 * chunk.length)
  }, 60_000)
})
