/**
 * The delay relays of a `--netns` devnet without tc netem (docs/netns.md, "Delay without netem"): one
 * `devnet/delay-relay.ts` process per node namespace, in front of the node's libp2p port, started and
 * stopped by its pid like the nodes, its delays set over its stdin.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { MurmurError } from '../src/errors.ts'
import type { ChunkDelay, RelayDelays } from './delay-relay.ts'
import type { NetnsHost } from './netns.ts'

const RELAY = fileURLToPath(new URL('./delay-relay.ts', import.meta.url))

/**
 * The libp2p port of a node behind a relay: the node listens on 127.0.0.1 of its namespace, the relay
 * on the namespace's address. A fresh namespace has no other listener, so a fixed port cannot collide.
 */
export const RELAYED_P2P_PORT = 4001

export class RelayError extends MurmurError<'RELAY_FAILED'> {}

/** What devnet.json records of a relay (its pid is stopped and checked like the nodes'). */
export interface RelayRecord {
  index: number
  pid: number | null
  /** The address it listens on, ip:port (the node's announced libp2p address). */
  listen: string
}

/** One running relay process. */
export class RelayProcess {
  readonly index: number
  /** Where it listens, ip:port (known once it started). */
  listen = ''
  readonly #child: ChildProcess
  readonly #exited: Promise<void>
  #seq = 0
  #acks = new Map<number, () => void>()

  private constructor(index: number, child: ChildProcess) {
    this.index = index
    this.#child = child
    this.#exited = new Promise((r) => child.once('exit', () => r()))
  }

  get pid(): number | undefined {
    return this.#child.pid
  }

  /**
   * Starts a relay on `listen` (ip:port, port 0: any) forwarding to `to` (ip:port), under `exec` (e.g.
   * `ip netns exec NS`, which execs: the pid is the relay's), and waits for its `listening` line.
   */
  static async start(
    index: number,
    listen: string,
    to: string,
    opts: { exec?: string[]; logFile?: string; timeoutMs?: number } = {},
  ): Promise<RelayProcess> {
    const [cmd, ...pre] = [...(opts.exec ?? []), process.execPath]
    const child = spawn(cmd!, [...pre, RELAY, '--listen', listen, '--to', to], {
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const relay = new RelayProcess(index, child)
    const log = opts.logFile === undefined ? undefined : createWriteStream(opts.logFile, { flags: 'a' })
    let tail = ''
    child.stderr!.on('data', (d: Buffer) => {
      log?.write(d)
      tail = (tail + d.toString()).slice(-2000)
    })
    child.once('exit', () => log?.end())
    // The devnet going away closes the relay's stdin, and the relay exits: a write error is not ours.
    child.stdin!.on('error', () => {})
    const listening = new Promise<void>((resolve, reject) => {
      let buf = ''
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString()
        let i = buf.indexOf('\n')
        while (i >= 0) {
          const line = buf.slice(0, i)
          buf = buf.slice(i + 1)
          i = buf.indexOf('\n')
          let ev: { event?: string; seq?: number; host?: string; port?: number }
          try {
            ev = JSON.parse(line) as typeof ev
          } catch {
            continue
          }
          if (ev.event === 'listening') {
            relay.listen = `${ev.host}:${ev.port}`
            resolve()
          }
          if (ev.event === 'delays') relay.#acks.get(Number(ev.seq))?.()
        }
      })
      child.once('exit', (code, signal) =>
        reject(new RelayError('RELAY_FAILED', `relay ${index} exited (${signal ?? code}): ${tail.trim()}`)),
      )
    })
    const timeoutMs = opts.timeoutMs ?? 15_000
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        listening,
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new RelayError('RELAY_FAILED', `relay ${index} did not listen within ${timeoutMs} ms`)),
            timeoutMs,
          )
        }),
      ])
    } catch (err) {
      await relay.stop()
      throw err
    } finally {
      clearTimeout(timer)
    }
    return relay
  }

  /** Sends the delays in force from now on and waits until the relay applied them. */
  async set(self: ChunkDelay | null, peers: Record<string, ChunkDelay>): Promise<void> {
    const seq = ++this.#seq
    const msg: RelayDelays = { seq, self, peers }
    const acked = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#acks.delete(seq)
        reject(new RelayError('RELAY_FAILED', `relay ${this.index} did not apply delays within 5 s`))
      }, 5_000)
      this.#acks.set(seq, () => {
        clearTimeout(timer)
        this.#acks.delete(seq)
        resolve()
      })
    })
    this.#child.stdin!.write(`${JSON.stringify(msg)}\n`)
    await acked
  }

  /** Closes the relay's stdin, as the devnet's exit does: the relay exits by itself then. */
  closeControl(): void {
    this.#child.stdin!.end()
  }

  /** SIGTERM by its pid, SIGKILL after `graceMs`; resolves once it exited. */
  async stop(graceMs = 5_000): Promise<void> {
    const c = this.#child
    if (c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM')
      const t = setTimeout(() => c.kill('SIGKILL'), graceMs)
      await this.#exited
      clearTimeout(t)
    }
  }
}

/**
 * The relays of every node, and the delays set per node. A node's delay goes to its own relay (as
 * `self`: all its inbound connections) and to every other relay (under its address: the connections
 * it opened to them), so both directions of each of its links are slowed wherever they pass.
 */
export class DelayRelays {
  readonly #hosts: NetnsHost[]
  readonly relays: Array<RelayProcess | undefined> = []
  readonly #delays = new Map<number, ChunkDelay>()
  #stopping = false

  constructor(hosts: NetnsHost[]) {
    this.#hosts = hosts
  }

  /** Starts one relay per node, in its namespace; the ones started are stopped by stop(), also after a failure. */
  async start(exec: (h: NetnsHost) => string[], logFile?: (i: number) => string): Promise<void> {
    // Settled, not all: a failure must not leave the other starts running unseen by stop().
    const started = await Promise.allSettled(
      this.#hosts.map(async (h, i) => {
        const r = await RelayProcess.start(
          i,
          `${h.addr}:${RELAYED_P2P_PORT}`,
          `127.0.0.1:${RELAYED_P2P_PORT}`,
          {
            exec: exec(h),
            ...(logFile === undefined ? {} : { logFile: logFile(i) }),
          },
        )
        this.relays[i] = r
        if (this.#stopping) await r.stop()
      }),
    )
    for (const s of started) if (s.status === 'rejected') throw s.reason
  }

  record(): RelayRecord[] {
    return this.relays.flatMap((r) =>
      r === undefined ? [] : [{ index: r.index, pid: r.pid ?? null, listen: r.listen }],
    )
  }

  /** The delay set on node `i`, if any. */
  delayOf(i: number): ChunkDelay | undefined {
    return this.#delays.get(i)
  }

  /** Sets (a delay) or removes (undefined) the delay of each node in `changes`, then tells every relay. */
  async apply(changes: Map<number, ChunkDelay | undefined>): Promise<void> {
    for (const [i, d] of changes) {
      if (d === undefined || (d.ms === 0 && d.jitterMs === 0)) this.#delays.delete(i)
      else this.#delays.set(i, d)
    }
    await Promise.all(
      this.relays.map((r, i) => {
        if (r === undefined) return undefined
        const peers: Record<string, ChunkDelay> = {}
        for (const [j, d] of this.#delays) if (j !== i) peers[this.#hosts[j]!.addr] = d
        return r.set(this.#delays.get(i) ?? null, peers)
      }),
    )
  }

  /** Stops every relay by its pid. */
  async stop(): Promise<void> {
    this.#stopping = true
    await Promise.allSettled(this.relays.map((r) => r?.stop()))
  }
}
