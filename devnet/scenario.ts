/**
 * `murmur devnet scenario NAME --dir DIR`: plays a timeline of faults (scenario-timelines.ts) against
 * the devnet recorded in DIR through its control server, sends intents meanwhile, samples every node's
 * HTTP API, and judges the invariants (scenario-checks.ts) over what the APIs answered. Nothing here
 * reads a node's memory or data directory: only `devnet.json` (where the APIs are) and HTTP.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { ClientError, MurmurClient } from '../src/client/index.ts'
import { MurmurError } from '../src/errors.ts'
import { DevnetError, type DevnetState, devnetCommand, STATE_FILE } from './devnet.ts'
import { buildReport, type CheckBounds, type Invariant, type ScenarioReport } from './scenario-checks.ts'
import { collectBlocks, lookupIntents, pollFills, sampleRound, signingNodes } from './scenario-http.ts'
import {
  applyStep,
  type ExecutedStep,
  type IntentProgress,
  networkHeight,
  type Observations,
  type SampleRound,
  type SentIntent,
  type Topology,
  WHOLE,
} from './scenario-model.ts'
import {
  IntentWatch,
  judgeLoadSpike,
  SHORT_ESCROW_WAIT_MS,
  type SpikeFigures,
  spikeLine,
} from './scenario-spike.ts'
import { buildTimeline, type FaultStep, type ScenarioName } from './scenario-timelines.ts'
import { erc20Intent } from './settlement.ts'

export type { ScenarioReport } from './scenario-checks.ts'

export type ScenarioErrorCode = 'NOT_READY' | 'BAD_ARGS'
/** A scenario could not run (the devnet never became ready, a bad option). Broken invariants are not errors. */
export class ScenarioError extends MurmurError<ScenarioErrorCode> {}

/** Test hooks that break an invariant on purpose, through the real checker (`MURMUR_SCENARIO_BREAK`). */
export const BREAK_HOOKS = ['lost-intent'] as const
export type BreakHook = (typeof BREAK_HOOKS)[number]

export interface ScenarioOptions {
  name: ScenarioName
  dir: string
  /** Where the JSON report goes; none when absent. */
  report?: string
  seed: number
  short: boolean
  durationMs?: number
  /** Intents per second the scenario sends. */
  rate: number
  /** Sampling period of the nodes' APIs. */
  tickMs: number
  /**
   * Bounds of the invariants; what is absent takes the default, and `fillBoundMs` by default follows
   * the genesis: one assignment timeout (`params.fillTimeoutSec`, after which an intent whose executor
   * is gone moves) plus FILL_MARGIN_MS for the next executor.
   */
  bounds: Partial<CheckBounds>
  /** At most this many heights are compared block by block; longer chains are sampled. */
  maxBlocks: number
  readyTimeoutMs: number
  breakHook?: BreakHook
  out: (line: string) => void
}

export const DEFAULT_SCENARIO_OPTIONS: Omit<ScenarioOptions, 'name' | 'dir'> = {
  seed: 1,
  short: false,
  rate: 2,
  tickMs: 500,
  // A height may wait out one timeoutPropose (3 s) and the next round's, for a dead proposer.
  bounds: {},
  maxBlocks: 300,
  readyTimeoutMs: 60_000,
  out: (l) => process.stdout.write(l + '\n'),
}

/**
 * Default bounds. A height may wait out a dead proposer's timeoutPropose (3 s) and the next round's
 * (3.5 s); a node restarted or healed should be back at the network's height within 10 s.
 */
export const DEFAULT_BOUNDS: Omit<CheckBounds, 'fillBoundMs'> = {
  stallBoundMs: 7_000,
  recoverBoundMs: 10_000,
}
/**
 * Added to the stall bound in a `--netns` devnet. A partition there drops packets: connections die
 * silently, and after the heal a node waits for its next redial, whose backoff grew during the cut (the
 * peer manager's backoff doubles to 30 s, with jitter), or for TCP's own retransmission backoff. One run
 * in four stalled 16 s past a 2|2 heal (docs/netns.md); loopback partitions close connections at once.
 */
export const NETNS_STALL_MARGIN_MS = 15_000
/** Added to the genesis fill timeout for the default fill bound: re-routing and the next fill. */
export const FILL_MARGIN_MS = 15_000
const STATUS_EVERY_MS = 5_000
/** Longest wait, before a fault of a short timeline, for every running validator to sign again. */
const SETTLE_MS = 20_000
/** A scenario's own invariants and figures (load-spike), added to the common ones. */
type Extra = { invariants: Invariant[]; figures: Record<string, unknown> }

/** Runs one scenario to its end and returns the report (also written to `--report`, summarised on `out`). */
export async function runScenario(options: Partial<ScenarioOptions> & Pick<ScenarioOptions, 'name' | 'dir'>) {
  const o: ScenarioOptions = { ...DEFAULT_SCENARIO_OPTIONS, ...options }
  o.dir = resolve(o.dir)
  return new ScenarioRun(o).run()
}

class ScenarioRun {
  readonly o: ScenarioOptions
  state!: DevnetState
  powers: bigint[] = []
  addresses: string[] = []
  onlineField = false
  startMs = 0
  readonly rounds: SampleRound[] = []
  readonly steps: ExecutedStep[] = []
  readonly intents: SentIntent[] = []
  readonly progress = new Map<string, IntentProgress>()
  readonly timeline: Array<{ atMs: number; event: string }> = []
  topology: Topology = WHOLE
  bounds!: CheckBounds
  #sampling = true
  #sending = true
  readonly #inflight = new Set<Promise<void>>()
  #wallets: PrivateKeyAccount[] = []
  #sent = 0
  /** load-spike: every intent node 0's event stream shows (the spike's come from the devnet's wallets). */
  #watch: IntentWatch | undefined

  constructor(o: ScenarioOptions) {
    this.o = o
  }

  get chainIds(): number[] {
    return this.state.rollups.map((r) => r.chainId)
  }

  #at(): string {
    return `+${((Date.now() - this.startMs) / 1000).toFixed(1)}s`
  }

  #event(event: string): void {
    this.timeline.push({ atMs: Date.now() - this.startMs, event })
    this.o.out(`[${this.#at()}] ${event}`)
  }

  async #loadState(): Promise<void> {
    try {
      this.state = JSON.parse(await readFile(join(this.o.dir, STATE_FILE), 'utf8')) as DevnetState
    } catch {
      throw new DevnetError(
        'NO_DEVNET',
        `no running devnet recorded in ${this.o.dir} (start one with: murmur devnet up --dir ${this.o.dir})`,
      )
    }
  }

  async run(): Promise<ScenarioReport> {
    await this.#loadState()
    const tl = buildTimeline(this.o.name, {
      nodes: this.state.nodes.length,
      chainIds: this.chainIds,
      seed: this.o.seed,
      short: this.o.short,
      ...(this.o.durationMs === undefined ? {} : { durationMs: this.o.durationMs }),
    })
    await this.#waitReady()
    const netns = this.state.netns !== undefined && this.state.netns !== null
    this.bounds = {
      ...DEFAULT_BOUNDS,
      ...(netns ? { stallBoundMs: DEFAULT_BOUNDS.stallBoundMs + NETNS_STALL_MARGIN_MS } : {}),
      fillBoundMs: await this.#defaultFillBound(),
      ...this.o.bounds,
    }
    // A devnet with settlement funded its wallets (tokens, allowances): the scenario sends ERC-20 intents
    // from them, since a native input cannot be opened for a user on a settled rollup.
    const funded = this.state.settlement?.wallets ?? []
    this.#wallets =
      funded.length > 0
        ? funded.map((k) => privateKeyToAccount(k))
        : Array.from({ length: 8 }, () => privateKeyToAccount(generatePrivateKey()))
    this.o.out(
      `scenario ${this.o.name}: ${tl.steps.length} faults over ${(tl.endMs / 1000).toFixed(0)} s, ` +
        `seed ${this.o.seed}, ${this.o.rate} intents/s`,
    )
    if (this.o.name === 'load-spike') {
      this.#watch = new IntentWatch()
      await this.#watch.follow(this.state.nodes[0]!.api!)
    }
    this.startMs = Date.now()
    this.#event('start')
    const sampler = this.#sampleLoop()
    const traffic = this.o.rate > 0 ? setInterval(() => this.#send(), 1000 / this.o.rate) : undefined
    const status = setInterval(() => this.#printStatus(), STATUS_EVERY_MS)
    try {
      // The gaps of the plan are kept from the moment the previous command returned: a slow restart
      // on a loaded machine shifts the rest of the timeline instead of eating the next phase.
      let planned = 0
      let done = this.startMs
      for (const step of tl.steps) {
        await this.#until(done + step.atMs - planned)
        if (step.settle === true) await this.#settleSigning()
        await this.#apply(step)
        planned = step.atMs
        done = Date.now()
      }
      await this.#until(done + tl.endMs - planned)
      this.#sending = false
      clearInterval(traffic)
      await Promise.allSettled([...this.#inflight])
      const trafficEndMs = Date.now()
      this.#event('traffic stopped; waiting for fills and recovery')
      if (this.o.breakHook === 'lost-intent') this.#madeUpIntent()
      await this.#settle()
      this.#sampling = false
      await sampler
      clearInterval(status)
      const extra = this.#watch === undefined ? undefined : await this.#loadSpikeExtra(trafficEndMs)
      return await this.#judge(trafficEndMs, extra)
    } finally {
      this.#watch?.stop()
      this.#sending = false
      this.#sampling = false
      clearInterval(traffic)
      clearInterval(status)
      await this.#restore()
    }
  }

  /** Every node answers with a height above 0 and a peer: the devnet is producing blocks. */
  async #waitReady(): Promise<void> {
    const deadline = Date.now() + this.o.readyTimeoutMs
    let said = 0
    for (;;) {
      await this.#loadState()
      const r = await sampleRound(this.state, { rollups: false, validators: false })
      if (r.nodes.every((n) => n.up && (n.height ?? 0) > 0 && (n.peers ?? 0) > 0)) break
      if (Date.now() > deadline)
        throw new ScenarioError(
          'NOT_READY',
          `the devnet in ${this.o.dir} is not producing blocks on every node after ` +
            `${this.o.readyTimeoutMs} ms: ${r.nodes.map((n) => (n.up ? `n${n.node}:h${n.height}` : `n${n.node}:down`)).join(' ')}`,
        )
      if (Date.now() - said > STATUS_EVERY_MS) {
        said = Date.now()
        this.o.out('scenario: waiting for every node to be up and producing blocks...')
      }
      await delay(this.o.tickMs)
    }
    const api = this.state.nodes[0]!.api!
    const rows = (await (await fetch(`${api}/v1/validators`)).json()) as Array<{
      address: string
      peerId: string
      power: string
      online?: boolean
    }>
    this.powers = this.state.nodes.map((n) => BigInt(rows.find((v) => v.peerId === n.peerId)?.power ?? '0'))
    this.addresses = this.state.nodes.map((n) => rows.find((v) => v.peerId === n.peerId)?.address ?? '')
    this.onlineField = rows.some((v) => typeof v.online === 'boolean')
  }

  /** From the network's genesis (public configuration, named in devnet.json). */
  async #defaultFillBound(): Promise<number> {
    const g = JSON.parse(await readFile(this.state.genesis, 'utf8')) as {
      params?: { fillTimeoutSec?: number }
    }
    return (g.params?.fillTimeoutSec ?? 30) * 1000 + FILL_MARGIN_MS
  }

  /** Waits until the wall-clock time `atMs`: the timeline's clock, not a synchronisation. */
  async #until(atMs: number): Promise<void> {
    const wait = atMs - Date.now()
    if (wait > 0) await delay(wait)
  }

  async #apply(step: FaultStep): Promise<void> {
    const label = `${step.cmd}${step.args.length > 0 ? ` ${step.args.join(' ')}` : ''}`
    const startMs = Date.now()
    this.#event(label)
    const done: ExecutedStep = { ...step, startMs, doneMs: startMs }
    try {
      await devnetCommand(this.o.dir, step.cmd, step.args)
      done.doneMs = Date.now()
      this.topology = applyStep(this.topology, step, this.chainIds)
      await this.#loadState()
      this.#event(`${label} done in ${done.doneMs - startMs} ms`)
    } catch (err) {
      done.doneMs = Date.now()
      done.error = (err as Error).message
      this.#event(`${label} FAILED: ${done.error}`)
    }
    this.steps.push(done)
  }

  /** Waits (at most SETTLE_MS) until every running validator signs its own latest commit again. */
  async #settleSigning(): Promise<void> {
    const from = Date.now()
    let said = from
    let waiting: number[] = []
    while (Date.now() - from < SETTLE_MS) {
      if (Date.now() - said >= STATUS_EVERY_MS) {
        said = Date.now()
        this.o.out(
          `[${this.#at()}] waiting for nodes ${waiting.join(',')} to sign again before the next fault`,
        )
      }
      const signing = await signingNodes(this.state, this.addresses)
      waiting = this.state.nodes.filter((n) => n.api !== null && !signing.has(n.index)).map((n) => n.index)
      if (waiting.length === 0) {
        if (Date.now() - from > this.o.tickMs)
          this.#event(`every validator signing again after ${Date.now() - from} ms`)
        return
      }
      await delay(this.o.tickMs)
    }
    this.#event(`nodes ${waiting.join(',')} still not signing after ${SETTLE_MS} ms; going on`)
  }

  async #sampleLoop(): Promise<void> {
    const rollups = this.o.name === 'rollup-outage'
    while (this.#sampling) {
      const next = Date.now() + this.o.tickMs
      this.rounds.push(await sampleRound(this.state, { rollups, validators: this.onlineField }))
      const wait = next - Date.now()
      if (wait > 0) await delay(wait)
    }
  }

  /** One wallet hands one intent to one running node (round robin), as the devnet's traffic does. */
  #send(): void {
    if (!this.#sending) return
    const live = this.state.nodes.filter((n) => n.api !== null && !this.topology.down.has(n.index))
    if (live.length === 0) return
    const n = this.#sent++
    const node = live[n % live.length]!
    const w = this.#wallets[n % this.#wallets.length]!
    const choices = [[], ...this.chainIds.map((c) => [c])]
    const chains = choices[n % choices.length]!
    const sentAtMs = Date.now()
    const s = this.state.settlement ?? null
    const p = new MurmurClient(node.api!, { timeoutMs: 5_000 })
      .send(
        w,
        s === null
          ? {
              to: w.address,
              amount: 1_000_000_000_000n + BigInt(n),
              chains: chains.map(BigInt),
              fillInSec: 120,
            }
          : erc20Intent(s, w.address, chains.map(BigInt), n),
      )
      .then(
        ({ id, known }) => {
          this.intents.push({ id, node: node.index, sentAtMs, chains, status: known ? 200 : 202 })
        },
        (err: unknown) => {
          const code = err instanceof ClientError ? err.code : 'ERROR'
          this.intents.push({ id: '0x', node: node.index, sentAtMs, chains, status: 'refused', code })
        },
      )
      .finally(() => this.#inflight.delete(p))
    this.#inflight.add(p)
  }

  /** The `lost-intent` hook: an id no node ever saw, recorded as if a node had answered 202. */
  #madeUpIntent(): void {
    const id = `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')}` as const
    this.intents.push({ id, node: 0, sentAtMs: Date.now(), chains: [], status: 202, madeUp: true })
    this.#event(`MURMUR_SCENARIO_BREAK=lost-intent: counting made-up intent ${id.slice(0, 10)} as accepted`)
  }

  /**
   * Waits (with a deadline) until every accepted intent is filled and every node is back at the height
   * the network had when the last fault ended, polling the APIs. The made-up intent of the break hook
   * is polled like the others but not waited for.
   */
  async #settle(): Promise<void> {
    const lastEnd = [...this.steps].reverse().find((s) => s.error === undefined)?.doneMs ?? this.startMs
    // The height the network had when the last fault ended: every node must get there.
    const target = () => {
      const first = this.rounds.find((r) => r.atMs >= lastEnd)
      return first === undefined ? Number.POSITIVE_INFINITY : (networkHeight(first) ?? 0)
    }
    const deadline = Date.now() + Math.max(this.bounds.fillBoundMs, this.bounds.recoverBoundMs)
    let said = Date.now()
    for (;;) {
      const open = this.intents.filter(
        (i) => i.status === 202 && this.progress.get(i.id)?.filledAtMs === undefined,
      )
      await pollFills(this.state, open, this.progress)
      const waiting = open.filter((i) => !i.madeUp && this.progress.get(i.id)?.filledAtMs === undefined)
      const last = this.rounds.at(-1)
      const behind = (last?.nodes ?? []).filter((n) => !n.up || (n.height ?? -1) < target())
      if (waiting.length === 0 && behind.length === 0) break
      if (Date.now() > deadline) {
        this.#event(`gave up waiting: ${waiting.length} intents unfilled, ${behind.length} nodes behind`)
        break
      }
      if (Date.now() - said >= STATUS_EVERY_MS) {
        said = Date.now()
        this.o.out(
          `[${this.#at()}] waiting: ${waiting.length} intents to fill, ${behind.length} nodes below ` +
            `height ${target()} (up to ${((deadline - Date.now()) / 1000).toFixed(0)} s more)`,
        )
      }
      await delay(this.o.tickMs)
    }
  }

  async #loadSpikeExtra(trafficEndMs: number): Promise<Extra> {
    return judgeLoadSpike({
      state: this.state,
      watch: this.#watch!,
      steps: this.steps,
      startMs: this.startMs,
      trafficEndMs,
      fillBoundMs: this.bounds.fillBoundMs,
      ...(this.o.short ? { maxWaitMs: SHORT_ESCROW_WAIT_MS } : {}),
      pollMs: this.o.tickMs * 2,
      out: (line) => this.o.out(`[${this.#at()}] ${line}`),
      event: (e) => this.#event(e),
    })
  }

  async #judge(trafficEndMs: number, extra?: Extra): Promise<ScenarioReport> {
    const accepted = this.intents.filter((i) => i.status === 202)
    this.o.out(`[${this.#at()}] checking ${accepted.length} accepted intents on every node...`)
    const lookups = await lookupIntents(this.state, accepted)
    const last = this.rounds.at(-1)
    const top = Math.max(0, ...(last?.nodes ?? []).map((n) => n.height ?? 0))
    this.o.out(`[${this.#at()}] comparing blocks 1..${top} on every node...`)
    const marks = this.steps.flatMap((s) => {
      const r = this.rounds.find((x) => x.atMs >= s.doneMs)
      return r === undefined ? [] : [networkHeight(r) ?? 0]
    })
    const { blocks, range } = await collectBlocks(this.state, top, this.o.maxBlocks, marks)
    const obs: Observations = {
      nodes: this.state.nodes.length,
      powers: this.powers,
      validatorAddresses: this.addresses,
      peerIds: this.state.nodes.map((n) => n.peerId),
      chainIds: this.chainIds,
      startMs: this.startMs,
      trafficEndMs,
      endMs: Date.now(),
      steps: this.steps,
      rounds: this.rounds,
      intents: this.intents,
      progress: this.progress,
      lookups,
      blocks,
      blockRange: range,
    }
    return this.#report(obs, extra)
  }

  async #report(obs: Observations, extra?: Extra): Promise<ScenarioReport> {
    const report = buildReport(
      obs,
      {
        scenario: this.o.name,
        seed: this.o.seed,
        short: this.o.short,
        bounds: this.bounds,
        timeline: this.timeline,
      },
      extra,
    )
    const { invariants, passed } = report
    if (this.o.report !== undefined) await writeFile(this.o.report, JSON.stringify(report, null, 2) + '\n')
    for (const i of invariants) this.o.out(`${i.passed ? 'PASS' : 'FAIL'} ${i.name}: ${i.detail}`)
    const f = report.figures
    this.o.out(
      `scenario ${this.o.name}: ${passed ? 'passed' : 'FAILED'}; detectMs ${f['detectMs']}, recoverMs ` +
        `${f['recoverMs']}, intentsDelayed ${f['intentsDelayed']}` +
        (f['spike'] === undefined ? '' : `; spike ${spikeLine(f['spike'] as SpikeFigures)}`) +
        (this.o.report === undefined ? '' : `; report ${this.o.report}`),
    )
    return report
  }

  #printStatus(): void {
    const last = this.rounds.at(-1)
    if (last === undefined) return
    const nodes = last.nodes.map((n) => (n.up ? `n${n.node}:h${n.height}/p${n.peers}` : `n${n.node}:down`))
    const accepted = this.intents.filter((i) => i.status === 202).length
    this.o.out(
      `[${this.#at()}] ${nodes.join(' ')}  intents sent ${this.intents.length} (accepted ${accepted})`,
    )
  }

  /** Leaves the devnet whole whatever happened: restart down nodes, heal, bring rollups up. */
  async #restore(): Promise<void> {
    const t = this.topology
    const fixes: FaultStep[] = [
      ...(t.groups === null ? [] : [{ atMs: 0, cmd: 'heal' as const, args: [] }]),
      ...[...t.down].map((n) => ({ atMs: 0, cmd: 'restart' as const, args: [String(n)] })),
      ...[...t.rollupsDown].map((c) => ({ atMs: 0, cmd: 'rollup-up' as const, args: [String(c)] })),
    ]
    for (const f of fixes) {
      try {
        await devnetCommand(this.o.dir, f.cmd, f.args)
        this.topology = applyStep(this.topology, f, this.chainIds)
      } catch (err) {
        this.o.out(`scenario: could not ${f.cmd} ${f.args.join(' ')}: ${(err as Error).message}`)
      }
    }
  }
}
