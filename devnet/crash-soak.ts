/**
 * The crash durability soak (issue 13, item 5): a devnet (devnet.ts: 4 node processes, 3 anvil rollups
 * with the settlement contracts) under intent load, one node killed with SIGKILL every `killEverySec`
 * and restarted, and every node armed with the crash points of src/node/crash-hook.ts (it kills itself
 * inside a block commit, after a WAL write, between an executor's durable record and its transaction).
 * A node that killed itself is restarted too. Then, black-box over the nodes' HTTP APIs and the
 * rollups' RPC: every intent answered 202 is known on every node, no block recorded during the run was
 * lost or changed, no validator signed twice, no order was filled twice, no escrow is left open.
 *
 * `npm run soak:crash -- --minutes 30 --kill-every 20` (scripts/soak-crash.ts); the CI slice is
 * test/e2e/crash-soak.test.ts.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { ClientError, MurmurClient } from '../src/client/index.ts'
import { CRASH_ENV, parseCrashSpec } from '../src/state/crash-hook.ts'
import {
  BlockBook,
  type BlockJson,
  checkBlocksKept,
  checkIntentsEverywhere,
  checkNoDoubleFill,
  checkNoDoubleSign,
  readFills,
} from './crash-soak-checks.ts'
import { Devnet, type DevnetState } from './devnet.ts'
import type { Invariant } from './scenario-checks.ts'
import {
  checkEscrowsClosed,
  type EscrowRollup,
  escrowCounts,
  escrowWaitDeadline,
  readEscrows,
} from './scenario-escrows.ts'
import { lookupIntents } from './scenario-http.ts'
import type { SentIntent } from './scenario-model.ts'
import { seededRandom } from './scenario-timelines.ts'
import { DEVNET_REFUND_GRACE_SEC, erc20Intent } from './settlement.ts'

/** Crash points of the 30-minute soak: tens of self-kills over 4 nodes at 2 intents/s, beside the kills. */
export const SOAK_CRASH_AT =
  'wal:0.0002,commit:0.0005,committed:0.0005,fill:0.001,open:0.001,claim:0.001,refund:0.001'

export interface CrashSoakOptions {
  dir: string
  durationMs: number
  killEveryMs: number
  /** `MURMUR_TEST_CRASH_AT` of every node ('' for none). */
  crashAt: string
  /** Intents per second, round robin over the running nodes. */
  rate: number
  seed: number
  /** A killed node stays down between these many ms before its restart. */
  downMs: [number, number]
  /** Longest wait after the traffic for fills, claims and refunds (the escrows' own deadline may be shorter). */
  drainMaxMs: number
  progressEveryMs: number
  out: (line: string) => void
  /** Aborting ends the run early (the devnet is stopped, the promise rejects). */
  signal?: AbortSignal
}

export const DEFAULT_CRASH_SOAK: Omit<CrashSoakOptions, 'dir'> = {
  durationMs: 30 * 60_000,
  killEveryMs: 20_000,
  crashAt: SOAK_CRASH_AT,
  rate: 2,
  seed: 1,
  downMs: [1_000, 5_000],
  drainMaxMs: 6 * 60_000,
  progressEveryMs: 5_000,
  out: (l) => process.stdout.write(`${l}\n`),
}

/** The final report (`passed` false when any invariant broke). */
export interface CrashSoakReport {
  passed: boolean
  durationMs: number
  killEveryMs: number
  crashAt: string
  kills: number
  /** Nodes that killed themselves at a crash point (their exit seen by the devnet). */
  selfKills: number
  restarts: number
  restartFailures: string[]
  intents: { sent: number; accepted: number; known: number; refused: number; lost: number }
  heights: number
  escrows: { opened: number; open: number; settled: number; refunded: number }
  invariants: Invariant[]
}

const PROBE_MS = 2_000
/** Blocks fetched per recording tick (the rest on the next ticks). */
const BLOCKS_PER_TICK = 16

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(PROBE_MS) })
    return res.status === 200 ? ((await res.json()) as T) : undefined
  } catch {
    return undefined
  }
}

/** Runs the soak to its end and returns the report; the devnet is stopped in any case. */
export async function runCrashSoak(options: Partial<CrashSoakOptions> & Pick<CrashSoakOptions, 'dir'>) {
  const o: CrashSoakOptions = { ...DEFAULT_CRASH_SOAK, ...options }
  parseCrashSpec(o.crashAt) // a typo fails here, not as a soak without faults
  return new CrashSoak(o).run()
}

class CrashSoak {
  readonly o: CrashSoakOptions
  readonly rand: () => number
  net!: Devnet
  state!: DevnetState
  wallets: PrivateKeyAccount[] = []
  readonly book = new BlockBook()
  readonly intents: SentIntent[] = []
  readonly #inflight = new Set<Promise<void>>()
  kills = 0
  selfKills = 0
  restarts = 0
  readonly restartFailures: string[] = []
  /** Nodes down on purpose, and when they come back. */
  readonly #downUntil = new Map<number, number>()
  #startMs = 0
  #sent = 0
  #readNext = 1
  #stopped = false

  constructor(o: CrashSoakOptions) {
    this.o = o
    this.rand = seededRandom(o.seed)
  }

  #at(): string {
    return `+${((Date.now() - this.#startMs) / 1000).toFixed(0)}s`
  }

  async run(): Promise<CrashSoakReport> {
    const saved = process.env[CRASH_ENV]
    // The node processes inherit the environment: every start and restart is armed.
    if (this.o.crashAt === '') delete process.env[CRASH_ENV]
    else process.env[CRASH_ENV] = this.o.crashAt
    this.net = new Devnet({
      dir: this.o.dir,
      rate: 0,
      statusEveryMs: 0,
      out: (line) => {
        // `devnet: node 2 exited (SIGKILL)`: a node that died on its own (the soak's kills are not reported).
        if (/^devnet: node \d+ exited/.test(line)) this.selfKills++
        if (!this.#stopped) this.o.out(line)
      },
    })
    try {
      this.state = await this.net.up()
      this.wallets = (this.state.settlement?.wallets ?? []).map((k) => privateKeyToAccount(k))
      if (this.wallets.length === 0) throw new Error('the devnet has no funded wallets')
      await this.#waitAllAt(1, 120_000)
      return await this.#soak()
    } finally {
      this.#stopped = true
      await this.net.stop()
      if (saved === undefined) delete process.env[CRASH_ENV]
      else process.env[CRASH_ENV] = saved
    }
  }

  async #soak(): Promise<CrashSoakReport> {
    const o = this.o
    this.#startMs = Date.now()
    o.out(
      `soak: ${(o.durationMs / 60_000).toFixed(1)} min, a kill every ${o.killEveryMs / 1000} s, ` +
        `${o.rate} intents/s, ${CRASH_ENV}=${o.crashAt || '(none)'}`,
    )
    const end = this.#startMs + o.durationMs
    const traffic = setInterval(() => this.#send(), 1000 / o.rate)
    const progress = setInterval(() => this.#progress(), o.progressEveryMs)
    const recorder = this.#recordLoop()
    try {
      let nextKill = this.#startMs + o.killEveryMs
      while (Date.now() < end) {
        o.signal?.throwIfAborted()
        await this.#reviveDown()
        if (Date.now() >= nextKill) {
          nextKill += o.killEveryMs
          await this.#killOne()
        }
        await delay(250)
      }
      clearInterval(traffic)
      await Promise.allSettled([...this.#inflight])
      o.out(`[${this.#at()}] traffic stopped; restarting every node unarmed and waiting for the drain`)
      // The drain measures whether the network finishes its work, not more crashes: nodes started from
      // now on carry no crash points (one still armed may die once more, and comes back unarmed).
      delete process.env[CRASH_ENV]
      for (const i of this.#downUntil.keys()) this.#downUntil.set(i, 0)
      await this.#reviveDown()
      // The ones still running were started armed: restarted (gracefully) so none dies during the checks
      // (in the first 30-minute run one did, and its lookups counted as unreachable).
      for (const [i, p] of this.net.procs.entries())
        if (p !== undefined && this.o.crashAt !== '') {
          await this.net.control('restart', [String(i)]).catch(() => undefined)
          this.restarts++
        }
      await this.#reviveDown()
      let draining = true
      const reviver = (async () => {
        while (draining && !this.#stopped) {
          await this.#reviveDown()
          await delay(500)
        }
      })()
      let escrow: Invariant
      try {
        escrow = await this.#drain()
      } finally {
        draining = false
        await reviver
      }
      const top = await this.#waitAllAt(this.book.top, 120_000)
      return await this.#judge(top, escrow)
    } finally {
      clearInterval(traffic)
      clearInterval(progress)
      this.#stopped = true
      await recorder
    }
  }

  /** Restarts every node that is down and due: killed by the soak, or dead at a crash point. */
  async #reviveDown(): Promise<void> {
    for (const [i, p] of this.net.procs.entries()) {
      if (p !== undefined) continue
      if ((this.#downUntil.get(i) ?? 0) > Date.now()) continue
      try {
        await this.net.control('restart', [String(i)])
        this.restarts++
        this.#downUntil.delete(i)
      } catch (err) {
        const msg = (err as Error).message
        // Killed at a crash point while starting (a fill resumed, a WAL record re-sent): a crash, not a
        // failure to start.
        if (/exited \(SIGKILL\) before start/.test(msg)) {
          this.selfKills++
          continue
        }
        this.restartFailures.push(`node ${i} at ${this.#at()}: ${(err as Error).message.slice(0, 300)}`)
        this.o.out(`[${this.#at()}] restart of node ${i} FAILED: ${(err as Error).message.slice(0, 300)}`)
        this.#downUntil.set(i, Date.now() + 2_000)
      }
    }
  }

  /** SIGKILL one running node at random, when every node runs (so at most one is down by the soak's hand). */
  async #killOne(): Promise<void> {
    const live = this.net.procs.flatMap((p, i) => (p === undefined ? [] : [i]))
    if (live.length < this.net.procs.length) {
      this.o.out(`[${this.#at()}] kill skipped: a node is still down`)
      return
    }
    const victim = live[Math.floor(this.rand() * live.length)]!
    const [lo, hi] = this.o.downMs
    this.#downUntil.set(victim, Date.now() + lo + Math.floor(this.rand() * (hi - lo)))
    await this.net.control('kill', [String(victim)])
    this.kills++
  }

  /** One wallet hands one intent to one running node (round robin). */
  #send(): void {
    const live = this.net.procs.flatMap((p, i) => (p === undefined ? [] : [{ i, api: p.api }]))
    const s = this.state.settlement
    if (live.length === 0 || s === null) return
    const n = this.#sent++
    const node = live[n % live.length]!
    const w = this.wallets[n % this.wallets.length]!
    const chainIds = this.state.rollups.map((r) => r.chainId)
    const choices = [[], ...chainIds.map((c) => [c])]
    const chains = choices[n % choices.length]!
    const sentAtMs = Date.now()
    const p = new MurmurClient(node.api, { timeoutMs: 5_000 })
      .send(w, erc20Intent(s, w.address, chains.map(BigInt), n))
      .then(
        ({ id, known }) => {
          this.intents.push({ id, node: node.i, sentAtMs, chains, status: known ? 200 : 202 })
        },
        (err: unknown) => {
          const code = err instanceof ClientError ? err.code : 'ERROR'
          this.intents.push({ id: '0x', node: node.i, sentAtMs, chains, status: 'refused', code })
        },
      )
      .finally(() => this.#inflight.delete(p))
    this.#inflight.add(p)
  }

  /**
   * Every PROBE_MS: every running node's head (height and hash), and the next blocks (hash, certificate
   * precommits, evidence) from one running node in turn, so every height is recorded during the run.
   */
  async #recordLoop(): Promise<void> {
    let turn = 0
    while (!this.#stopped) {
      const next = Date.now() + PROBE_MS
      const apis = this.#apis()
      const heads = await Promise.all(
        apis.map(async ({ i, api }) => ({
          i,
          api,
          s: await getJson<{ height: number; blockHash: string }>(`${api}/v1/status`),
        })),
      )
      for (const h of heads) if (h.s !== undefined) this.book.hash(Number(h.s.height), h.s.blockHash, h.i)
      const up = heads.filter((h) => h.s !== undefined)
      if (up.length > 0) {
        const src = up[turn++ % up.length]!
        const to = Math.min(Number(src.s!.height), this.#readNext + BLOCKS_PER_TICK - 1)
        for (let h = this.#readNext; h <= to; h++) {
          const b = await getJson<BlockJson>(`${src.api}/v1/blocks/${h}`)
          if (b === undefined) break
          this.book.block(b, src.i)
          this.#readNext = h + 1
        }
      }
      const wait = next - Date.now()
      if (wait > 0) await delay(wait)
    }
  }

  #apis(): Array<{ i: number; api: string }> {
    return this.net.procs.flatMap((p, i) => (p === undefined ? [] : [{ i, api: p.api }]))
  }

  /** Waits (bounded) until every node runs and is at `height` or above; returns the lowest height. */
  async #waitAllAt(height: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const hs = await Promise.all(
        this.net.procs.map(async (p) =>
          p === undefined ? -1 : ((await getJson<{ height: number }>(`${p.api}/v1/status`))?.height ?? -1),
        ),
      )
      const low = Math.min(...hs.map(Number))
      if (low >= height) return low
      if (Date.now() > deadline) {
        this.o.out(`[${this.#at()}] nodes not all at height ${height} after ${timeoutMs} ms: ${hs.join(' ')}`)
        return Math.max(0, low)
      }
      await this.#reviveDown()
      await delay(500)
    }
  }

  #escrowRollups(): EscrowRollup[] {
    const s = this.state.settlement!
    return this.state.rollups.map((r) => ({
      chainId: r.chainId,
      rpcUrl: r.rpcUrl,
      settler: s.contracts[String(r.chainId)]!.settler,
    }))
  }

  /** Waits until every escrow of this run's accepted intents is settled or refunded (bounded). */
  async #drain(): Promise<Invariant> {
    const ids = new Set(this.#accepted().map((i) => i.id.toLowerCase()))
    const ours = async () =>
      (await readEscrows(this.#escrowRollups())).filter((e) => ids.has(e.id.toLowerCase()))
    const from = Date.now()
    let said = from
    let orders = await ours()
    for (;;) {
      this.o.signal?.throwIfAborted()
      const deadline = Math.min(
        from + this.o.drainMaxMs,
        // From the drain's start: a deadline from now would move with every poll once the refund times passed.
        escrowWaitDeadline(orders, DEVNET_REFUND_GRACE_SEC, from, 30_000, 20_000),
      )
      if (escrowCounts(orders).open === 0 || Date.now() > deadline) break
      if (Date.now() - said >= this.o.progressEveryMs) {
        said = Date.now()
        const c = escrowCounts(orders)
        this.o.out(
          `[${this.#at()}] drain: ${c.open} of ${c.opened} escrows open (up to ${((deadline - Date.now()) / 1000).toFixed(0)} s more)`,
        )
      }
      await delay(2_000)
      orders = await ours()
    }
    return checkEscrowsClosed(orders, Date.now() - from)
  }

  #accepted(): SentIntent[] {
    return this.intents.filter((i) => i.status === 202)
  }

  async #judge(top: number, escrows: Invariant): Promise<CrashSoakReport> {
    const o = this.o
    const accepted = this.#accepted()
    o.out(`[${this.#at()}] checking ${accepted.length} accepted intents on every node...`)
    const lookups = await lookupIntents(this.net.state(), accepted)
    const lost = checkIntentsEverywhere(
      accepted.map((i) => i.id),
      lookups,
      this.net.procs.length,
    )
    // Every recorded height up to where every node is, on every node.
    const heights = this.book.recordedHeights().filter((h) => h <= top)
    o.out(`[${this.#at()}] comparing ${heights.length} recorded blocks on every node...`)
    const finalHashes: Array<{ node: number; height: number; hash: string | null }> = []
    for (const { i, api } of this.#apis())
      for (let k = 0; k < heights.length; k += 8) {
        const got = await Promise.all(
          heights.slice(k, k + 8).map(async (h) => {
            const b = await getJson<BlockJson>(`${api}/v1/blocks/${h}`)
            if (b !== undefined) this.book.block(b, i)
            return { node: i, height: h, hash: b?.hash ?? null }
          }),
        )
        finalHashes.push(...got)
      }
    const validators = await Promise.all(
      this.#apis().map(async ({ i, api }) => ({
        node: i,
        rows:
          (await getJson<Array<{ address: string; tombstoned?: boolean }>>(`${api}/v1/validators`)) ?? null,
      })),
    )
    const fills = await readFills(this.#escrowRollups())
    const invariants = [
      lost,
      checkBlocksKept(this.book, finalHashes),
      checkNoDoubleSign(this.book, validators),
      checkNoDoubleFill(fills),
      escrows,
      {
        name: 'restarts-ok',
        passed: this.restartFailures.length === 0,
        detail:
          this.restartFailures.length === 0
            ? `${this.restarts} restarts, every one came up`
            : `${this.restartFailures.length} restarts failed: ${this.restartFailures.slice(0, 3).join('; ')}`,
      },
    ]
    const c = escrowCounts(await readEscrows(this.#escrowRollups()))
    const lostCount = accepted.filter(
      (i) => (lookups.get(i.id) ?? []).filter((l) => l.result === 'known').length < this.net.procs.length,
    ).length
    const report: CrashSoakReport = {
      passed: invariants.every((i) => i.passed),
      durationMs: o.durationMs,
      killEveryMs: o.killEveryMs,
      crashAt: o.crashAt,
      kills: this.kills,
      selfKills: this.selfKills,
      restarts: this.restarts,
      restartFailures: this.restartFailures,
      intents: {
        sent: this.intents.length,
        accepted: accepted.length,
        known: this.intents.filter((i) => i.status === 200).length,
        refused: this.intents.filter((i) => i.status === 'refused').length,
        lost: lostCount,
      },
      heights: this.book.heights,
      escrows: c,
      invariants,
    }
    for (const i of invariants) o.out(`${i.passed ? 'PASS' : 'FAIL'} ${i.name}: ${i.detail}`)
    return report
  }

  #progress(): void {
    const heads = this.net.procs.map((p, i) => (p === undefined ? `n${i}:down` : `n${i}:up`))
    const accepted = this.#accepted().length
    const bad = this.book.conflicts.length + this.book.doubleSigns.length + this.book.resigned.length
    this.o.out(
      `[${this.#at()}] ${heads.join(' ')} top ${this.book.top}  kills ${this.kills} self-kills ${this.selfKills} ` +
        `restarts ${this.restarts}  intents sent ${this.intents.length} accepted ${accepted}  ` +
        `blocks read ${this.book.blocksRead}${bad > 0 ? `  VIOLATIONS ${bad}` : ''}`,
    )
  }
}
