/**
 * A seeded, deterministic simulated network for the consensus core (src/consensus/core.ts).
 *
 * N validators run in one process, each a core driven by a tiny driver on a virtual clock (a priority
 * queue of events ordered by virtual time, then insertion). One seeded PRNG decides everything random:
 * message delays, drops and partitions before GST, crashes (with WAL replay on restart), unequal stakes
 * and which validators are Byzantine (less than 1/3 of the power). Nothing reads the real clock, so a
 * seed always replays the same run.
 *
 * The network models the paper's gossip layer: an honest node relays every message of its height (and
 * votes of the previous one, for evidence) the first time it sees it (gossipsub). Nodes reach each other
 * only through messages on the simulated links (same delays, drops and partitions as gossip), never by
 * reading another node's state: every `gossipIntervalMs` an honest node announces its committed height
 * (`status`) and, while undecided, asks its peers for the messages of its height it lacks (naming those
 * it has, as CometBFT's HasVote does; production's `consensus-messages`). A node behind fetches decided
 * blocks with their certificates by range (`blocksRequest`/`blocksResponse`), scheduled by the very
 * SyncScheduler the driver uses (src/consensus/sync.ts), verifies each certificate and applies them in
 * height order. An `invalid` Byzantine node lies in its status and answers block requests with forged
 * certificates; a certificate counts only precommits their signers really sent (the signature oracle).
 * Before GST links drop, delay (precommits possibly more than the rest) and partition; after GST every
 * message arrives within `postGstMaxDelayMs` and all nodes are up. Drivers buffer messages of future
 * heights and replay them after `startHeight`, as the production driver must.
 *
 * `runSimulation` checks: agreement, validity (decided values were proposed and are in the valid set),
 * termination by `gstMs + terminationBoundMs`, certificates (> 2/3 power of distinct precommits for the
 * decided value), no honest validator ever signs two values for one height/round/step (also across
 * restarts), persist-before-broadcast, and no evidence against an honest validator.
 */
import { type ConsensusState, initialState, restoreFromWal, step } from '../../src/consensus/core.ts'
import { SyncScheduler } from '../../src/consensus/sync.ts'
import type {
  ConsensusInput,
  ConsensusOutput,
  ConsensusParams,
  Decision,
  DuplicateVoteEvidence,
  Proposal,
  Validator,
  ValueId,
  Vote,
  WalRecord,
} from '../../src/consensus/types.ts'

// --- PRNG -------------------------------------------------------------------------------------------

/** mulberry32: a small, fast 32-bit PRNG; good enough to drive a simulation, never for keys. */
export class Rng {
  #state: number
  constructor(seed: number) {
    this.#state = seed >>> 0
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0
    let t = this.#state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }
  shuffle<T>(items: readonly T[]): T[] {
    const a = [...items]
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1)
      ;[a[i], a[j]] = [a[j]!, a[i]!]
    }
    return a
  }
}

// --- Event queue ------------------------------------------------------------------------------------

interface Scheduled<E> {
  readonly time: number
  readonly seq: number
  readonly event: E
}

/** Binary min-heap by (time, seq): equal times pop in insertion order. */
class EventQueue<E> {
  readonly #heap: Scheduled<E>[] = []
  #seq = 0
  get size(): number {
    return this.#heap.length
  }
  push(time: number, event: E): void {
    const h = this.#heap
    h.push({ time, seq: this.#seq++, event })
    let i = h.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(h[i]!, h[parent]!)) break
      ;[h[i], h[parent]] = [h[parent]!, h[i]!]
      i = parent
    }
  }
  pop(): Scheduled<E> | undefined {
    const h = this.#heap
    const top = h[0]
    const last = h.pop()
    if (top === undefined || last === undefined || h.length === 0) return top
    h[0] = last
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < h.length && before(h[l]!, h[m]!)) m = l
      if (r < h.length && before(h[r]!, h[m]!)) m = r
      if (m === i) break
      ;[h[i], h[m]] = [h[m]!, h[i]!]
      i = m
    }
    return top
  }
}

function before<E>(a: Scheduled<E>, b: Scheduled<E>): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq)
}

// --- Configuration ----------------------------------------------------------------------------------

/**
 * honest: follows the protocol; silent: never sends anything; equivocate: sends different proposals
 * and votes to different peers; invalid: proposes values outside the valid set; mirror: proposes
 * different valid values to each half of the peers and votes for every value it sees an honest
 * validator vote for (its power then counts towards every competing quorum).
 */
export type Behaviour = 'honest' | 'silent' | 'equivocate' | 'invalid' | 'mirror'

export interface SimValidator {
  readonly id: string
  readonly power: bigint
  readonly behaviour: Behaviour
}

/** Before `endMs`, nodes in different groups cannot reach each other (indices into `validators`). */
export interface PartitionConfig {
  readonly startMs: number
  readonly endMs: number
  readonly groups: readonly (readonly number[])[]
}

/** An honest node goes down at `atMs` (or at its first WAL write after it, if `afterPersist`: the
 * record is durable but not sent) and restarts from its WAL and block store at `restartMs`. */
export interface CrashConfig {
  readonly node: number
  readonly atMs: number
  readonly restartMs: number
  readonly afterPersist: boolean
}

export interface SimConfig {
  readonly seed: number
  readonly validators: readonly SimValidator[]
  readonly heights: number
  readonly gstMs: number
  readonly preGstMaxDelayMs: number
  readonly preGstDropRate: number
  /**
   * Before GST precommits take up to this much longer than other messages: rounds time out while
   * a decision is under way, so validators end up locked in different rounds (what locks are for).
   */
  readonly preGstPrecommitExtraDelayMs: number
  readonly postGstMaxDelayMs: number
  readonly partitions: readonly PartitionConfig[]
  readonly crashes: readonly CrashConfig[]
  readonly params: ConsensusParams
  readonly gossipIntervalMs: number
  readonly valueDelayMaxMs: number
  /** Every honest validator must have decided all heights by gstMs + terminationBoundMs. */
  readonly terminationBoundMs: number
  /** Test-only sabotage: a restarted node loses its WAL (amnesia). The checks must then catch it. */
  readonly loseWalOnCrash?: boolean
}

export const SIM_PARAMS: ConsensusParams = {
  timeoutProposeMs: 400,
  timeoutProposeDeltaMs: 100,
  timeoutPrevoteMs: 200,
  timeoutPrevoteDeltaMs: 100,
  timeoutPrecommitMs: 200,
  timeoutPrecommitDeltaMs: 100,
}

/** Bound on the virtual time from GST to the last decision, for `heights` heights. */
export function defaultTerminationBoundMs(heights: number): number {
  return 4_000 + heights * 3_000
}

export interface RandomConfigOptions {
  /** Heights every honest validator must decide (default 3). */
  readonly heights?: number
  /** GST is drawn from [0, maxGstMs] (default 6000): a longer bad period means more rounds and faults. */
  readonly maxGstMs?: number
}

/**
 * A random scenario: 4-10 validators with random stakes (a quarter of the runs equal), a Byzantine set
 * below 1/3 of the power, and before GST: delays, drops, partitions and crash/restarts. One run in five
 * is a lock attack instead: as many `mirror` validators as the bound allows, slow precommits, no other
 * fault — the schedule under which validators lock in different rounds and a broken lock shows.
 */
export function randomConfig(seed: number, options: RandomConfigOptions = {}): SimConfig {
  const rng = new Rng(seed ^ 0x5eed5eed)
  const lockAttack = rng.chance(0.2)
  const n = 4 + rng.int(7)
  const equalStakes = rng.chance(0.25)
  const powers = Array.from({ length: n }, () => (equalStakes ? 1n : BigInt(1 + rng.int(10))))
  const total = powers.reduce((a, b) => a + b, 0n)
  const behaviours: Behaviour[] = powers.map(() => 'honest')
  let byzantinePower = 0n
  for (const i of rng.shuffle(powers.map((_, i) => i))) {
    const p = powers[i]!
    if ((lockAttack || rng.chance(0.5)) && (byzantinePower + p) * 3n < total) {
      behaviours[i] = lockAttack ? 'mirror' : rng.pick(['silent', 'equivocate', 'invalid', 'mirror'] as const)
      byzantinePower += p
    }
  }
  const validators = powers.map((power, i) => ({ id: `v${i}`, power, behaviour: behaviours[i]! }))
  const gstMs = rng.int((options.maxGstMs ?? 6000) + 1)
  const partitions: PartitionConfig[] = []
  const partitionCount = gstMs >= 500 && !lockAttack ? rng.int(3) : 0
  for (let k = 0; k < partitionCount; k++) {
    const startMs = rng.int(gstMs)
    const endMs = startMs + 1 + rng.int(gstMs - startMs)
    const groupCount = 2 + rng.int(2)
    const side = validators.map(() => rng.int(groupCount))
    const groups = Array.from({ length: groupCount }, (_, g) => side.flatMap((s, i) => (s === g ? [i] : [])))
    if (groups.filter((g) => g.length > 0).length > 1) partitions.push({ startMs, endMs, groups })
  }
  const crashes: CrashConfig[] = []
  if (gstMs >= 500 && !lockAttack) {
    const honest = rng.shuffle(validators.flatMap((v, i) => (v.behaviour === 'honest' ? [i] : [])))
    const count = rng.int(3)
    for (const node of honest.slice(0, count)) {
      const atMs = rng.int(gstMs)
      crashes.push({ node, atMs, restartMs: atMs + 1 + rng.int(gstMs - atMs), afterPersist: rng.chance(0.5) })
    }
  }
  const heights = options.heights ?? 3
  const preGstMaxDelayMs = 20 + rng.int(rng.chance(0.2) ? 3000 : 800)
  const preGstDropRate = rng.chance(0.3) ? 0 : rng.next() * 0.6
  const preGstPrecommitExtraDelayMs = rng.chance(0.5) ? 0 : rng.int(3000)
  return {
    seed,
    validators,
    heights,
    gstMs: lockAttack ? Math.max(gstMs, 5000) : gstMs,
    preGstMaxDelayMs: lockAttack ? 20 + rng.int(300) : preGstMaxDelayMs,
    preGstDropRate: lockAttack ? 0 : preGstDropRate,
    preGstPrecommitExtraDelayMs: lockAttack ? 3000 : preGstPrecommitExtraDelayMs,
    postGstMaxDelayMs: 5 + rng.int(96),
    partitions,
    crashes,
    params: SIM_PARAMS,
    gossipIntervalMs: 250,
    valueDelayMaxMs: 30,
    terminationBoundMs: defaultTerminationBoundMs(heights),
  }
}

/** A readable one-line summary of a scenario, for failure messages. */
export function describeConfig(c: SimConfig): string {
  const vals = c.validators.map(
    (v) => `${v.id}:${v.power}${v.behaviour === 'honest' ? '' : `:${v.behaviour}`}`,
  )
  return (
    `seed=${c.seed} validators=[${vals.join(' ')}] heights=${c.heights} gst=${c.gstMs}ms ` +
    `preDelay<=${c.preGstMaxDelayMs}ms(+${c.preGstPrecommitExtraDelayMs}ms precommits) ` +
    `drop=${c.preGstDropRate.toFixed(2)} postDelay<=${c.postGstMaxDelayMs}ms ` +
    `partitions=${JSON.stringify(c.partitions)} crashes=${JSON.stringify(c.crashes)}`
  )
}

// --- Simulation -------------------------------------------------------------------------------------

type NetMsg =
  | { readonly type: 'proposal'; readonly proposal: Proposal }
  | { readonly type: 'vote'; readonly vote: Vote }

/** A decided block as block sync carries it: the proposal and the commit certificate. */
interface SyncedSimBlock {
  readonly proposal: Proposal
  readonly decision: Decision
}

/** Request/response traffic on the same links as gossip (see the module comment). */
type ProtocolMsg =
  | { readonly type: 'status'; readonly height: number }
  | { readonly type: 'messagesRequest'; readonly height: number; readonly have: ReadonlySet<string> }
  | { readonly type: 'blocksRequest'; readonly id: number; readonly from: number; readonly count: number }
  | { readonly type: 'blocksResponse'; readonly id: number; readonly blocks: readonly SyncedSimBlock[] }

type WireMsg = NetMsg | ProtocolMsg

/** Block sync of the simulation: SIM_PARAMS-scale timings, small batches (few heights per run). */
const SIM_SYNC = {
  batchBlocks: 4,
  maxInflight: 4,
  maxInflightPerPeer: 2,
  maxReadyBlocks: 64,
  requestTimeoutMs: 1_000,
  banMs: 5_000,
  restMs: 300,
  syncDelayMs: 500,
}

interface LoggedMsg {
  readonly key: string
  readonly msg: NetMsg
}

interface Block {
  readonly decision: Decision
  readonly proposal: Proposal
  readonly atMs: number
}

type SimEvent =
  | { readonly kind: 'deliver'; readonly to: number; readonly via: number; readonly msg: WireMsg }
  | {
      readonly kind: 'input'
      readonly node: number
      readonly incarnation: number
      readonly input: ConsensusInput
    }
  | { readonly kind: 'crash'; readonly node: number; readonly afterPersist: boolean }
  | { readonly kind: 'restart'; readonly node: number }
  | { readonly kind: 'gossip' }

interface SimNode {
  readonly index: number
  readonly id: string
  readonly behaviour: Behaviour
  state: ConsensusState
  up: boolean
  incarnation: number
  /** Durable: survives crashes. */
  wal: WalRecord[]
  walKeys: Set<string>
  blocks: Map<number, Block>
  /** Volatile. */
  seen: Set<string>
  log: LoggedMsg[]
  future: LoggedMsg[]
  inbox: ConsensusInput[]
  pumping: boolean
  crashAtNextPersist: boolean
  evidence: DuplicateVoteEvidence[]
  /** Volatile: block sync's view of the peers (heights, requests, blocks received). */
  sync: SyncScheduler<SyncedSimBlock>
}

export interface SimStats {
  events: number
  deliveries: number
  steps: number
  restarts: number
  /** Crashes that hit right after a WAL write, before the record was sent. */
  crashesAfterPersist: number
  maxRound: number
  invalidProposals: number
  equivocations: number
  /** Blocks applied through block sync, and synced blocks refused (forged certificates). */
  synced: number
  syncRejected: number
}

export interface SimResult {
  readonly config: SimConfig
  /** Decisions of the honest validators, by id then height. */
  readonly decisions: ReadonlyMap<string, ReadonlyMap<number, Decision>>
  /** Virtual time of each honest decision, by id then height. */
  readonly decidedAtMs: ReadonlyMap<string, ReadonlyMap<number, number>>
  /** Evidence each honest validator's core reported. */
  readonly evidence: ReadonlyMap<string, readonly DuplicateVoteEvidence[]>
  /** Virtual time of the last honest decision, or null if some honest validator did not finish. */
  readonly finishedAtMs: number | null
  readonly violations: readonly string[]
  readonly stats: SimStats
}

function newSync(): SyncScheduler<SyncedSimBlock> {
  return new SyncScheduler<SyncedSimBlock>(SIM_SYNC, (b) => BigInt(b.decision.height))
}

function msgKey(m: NetMsg): string {
  if (m.type === 'proposal') {
    const p = m.proposal
    return `P|${p.height}|${p.round}|${p.from}|${p.validRound}|${p.value}`
  }
  const v = m.vote
  return `V|${v.kind}|${v.height}|${v.round}|${v.from}|${v.value === null ? '<nil>' : `=${v.value}`}`
}

function walKey(r: WalRecord): string {
  return msgKey(
    r.type === 'proposal' ? { type: 'proposal', proposal: r.proposal } : { type: 'vote', vote: r.vote },
  )
}

function msgHeight(m: NetMsg): number {
  return m.type === 'proposal' ? m.proposal.height : m.vote.height
}

/** Runs one scenario to completion (or to its time bound) and checks the properties. */
export function runSimulation(config: SimConfig): SimResult {
  const rng = new Rng(config.seed)
  const queue = new EventQueue<SimEvent>()
  const violations: string[] = []
  const stats: SimStats = {
    events: 0,
    deliveries: 0,
    steps: 0,
    restarts: 0,
    crashesAfterPersist: 0,
    maxRound: 0,
    invalidProposals: 0,
    equivocations: 0,
    synced: 0,
    syncRejected: 0,
  }
  const validators: Validator[] = config.validators.map((v) => ({ id: v.id, power: v.power }))
  const totalPower = validators.reduce((a, v) => a + v.power, 0n)
  const powerOf = new Map(validators.map((v) => [v.id, v.power]))
  const indexOf = new Map(config.validators.map((v, i) => [v.id, i]))
  /** Values an honest driver accepts as valid(v). */
  const validValues = new Set<ValueId>()
  /** Every value some validator put in a proposal. */
  const proposedValues = new Set<ValueId>()
  /** `${from}|${kind}|${h}|${r}` -> value, for everything an honest validator signed and sent. */
  const honestSigned = new Map<string, string>()
  let valueCounter = 0
  let now = 0
  let finished = false
  const stopAt = config.gstMs + config.terminationBoundMs

  const nodes: SimNode[] = config.validators.map((v, index) => ({
    index,
    id: v.id,
    behaviour: v.behaviour,
    state: initialState(config.params, v.id),
    up: v.behaviour !== 'silent',
    incarnation: 0,
    wal: [],
    walKeys: new Set(),
    blocks: new Map(),
    seen: new Set(),
    log: [],
    future: [],
    inbox: [],
    pumping: false,
    crashAtNextPersist: false,
    evidence: [],
    sync: newSync(),
  }))
  const honest = nodes.filter((n) => n.behaviour === 'honest')

  const partitioned = (a: number, b: number): boolean =>
    config.partitions.some(
      (p) =>
        p.startMs <= now &&
        now < p.endMs &&
        p.groups.findIndex((g) => g.includes(a)) !== p.groups.findIndex((g) => g.includes(b)),
    )

  function send(from: SimNode, to: number, msg: WireMsg): void {
    let delay: number
    if (now < config.gstMs) {
      if (partitioned(from.index, to) || rng.chance(config.preGstDropRate)) return
      delay = rng.int(config.preGstMaxDelayMs + 1)
      if (msg.type === 'vote' && msg.vote.kind === 'precommit')
        delay += rng.int(config.preGstPrecommitExtraDelayMs + 1)
    } else {
      delay = 1 + rng.int(config.postGstMaxDelayMs)
    }
    queue.push(now + delay, { kind: 'deliver', to, via: from.index, msg })
  }

  function sendToAll(from: SimNode, msg: WireMsg, except = -1): void {
    for (const n of nodes) if (n.index !== from.index && n.index !== except) send(from, n.index, msg)
  }

  function toInput(msg: NetMsg): ConsensusInput {
    return msg.type === 'proposal'
      ? { type: 'proposal', proposal: msg.proposal, valid: validValues.has(msg.proposal.value) }
      : { type: 'vote', vote: msg.vote }
  }

  function schedule(node: SimNode, delayMs: number, input: ConsensusInput): void {
    queue.push(now + delayMs, { kind: 'input', node: node.index, incarnation: node.incarnation, input })
  }

  function crash(node: SimNode): void {
    node.up = false
    node.incarnation++
    node.inbox = []
    node.crashAtNextPersist = false
  }

  function restart(node: SimNode): void {
    stats.restarts++
    node.up = true
    node.seen = new Set()
    node.log = []
    node.future = []
    node.sync = newSync()
    if (config.loseWalOnCrash) {
      node.wal = []
      node.walKeys = new Set()
    }
    const next = node.blocks.size + 1
    if (next > config.heights) return // finished before the crash; serves its blocks only
    const restored = restoreFromWal(config.params, node.id, next, validators, node.wal)
    node.state = restored.state
    pump(node, restored.outputs)
  }

  /** Feeds inputs to a node's core one at a time and performs the outputs, in order. */
  function feed(node: SimNode, input: ConsensusInput): void {
    node.inbox.push(input)
    if (!node.pumping) pump(node, [])
  }

  function pump(node: SimNode, initial: readonly ConsensusOutput[]): void {
    node.pumping = true
    let outputs = initial
    for (;;) {
      for (const o of outputs) {
        if (!node.up) break
        perform(node, o)
      }
      const input = node.up ? node.inbox.shift() : undefined
      if (input === undefined) break
      const result = step(node.state, input)
      stats.steps++
      node.state = result.state
      if (node.state.round > stats.maxRound) stats.maxRound = node.state.round
      outputs = result.outputs
      if (input.type === 'startHeight') {
        node.log = []
        const height = node.state.height
        const ready = node.future.filter((m) => msgHeight(m.msg) === height)
        node.future = node.future.filter((m) => msgHeight(m.msg) > height)
        for (const m of ready) {
          node.log.push(m)
          node.inbox.push(toInput(m.msg))
        }
      }
    }
    node.pumping = false
  }

  function perform(node: SimNode, o: ConsensusOutput): void {
    if (node.behaviour !== 'honest') {
      performByzantine(node, o)
      return
    }
    switch (o.type) {
      case 'persist':
        node.wal.push(o.record)
        node.walKeys.add(walKey(o.record))
        if (node.crashAtNextPersist) {
          stats.crashesAfterPersist++
          crash(node) // durable, never sent
        }
        return
      case 'broadcastProposal':
        publish(node, { type: 'proposal', proposal: o.proposal })
        return
      case 'broadcastVote':
        publish(node, { type: 'vote', vote: o.vote })
        return
      case 'scheduleTimeout':
        schedule(node, o.durationMs, { type: 'timeout', kind: o.kind, height: o.height, round: o.round })
        return
      case 'requestValue': {
        const value = `${node.id}/h${o.height}/r${o.round}/${valueCounter++}`
        validValues.add(value)
        schedule(node, rng.int(config.valueDelayMaxMs + 1), {
          type: 'valueReady',
          height: o.height,
          round: o.round,
          value,
        })
        return
      }
      case 'decide': {
        const proposal = node.state.rounds.get(o.round)?.proposals.get(o.value)?.proposal
        if (proposal === undefined) {
          violations.push(`${node.id} decided ${o.value} at ${o.height} without holding its proposal`)
          return
        }
        const { type: _type, ...decision } = o
        if (node.blocks.has(o.height)) violations.push(`${node.id} decided height ${o.height} twice`)
        node.blocks.set(o.height, { decision, proposal, atMs: now })
        if (o.height < config.heights) {
          node.inbox.push({ type: 'startHeight', height: o.height + 1, validators })
        } else if (honest.every((n) => n.blocks.size >= config.heights)) {
          finished = true
        }
        return
      }
      case 'evidence':
        node.evidence.push(o.evidence)
        return
      default: {
        const unknown: never = o
        throw new Error(`unknown output ${JSON.stringify(unknown)}`)
      }
    }
  }

  /** Sends a message an honest node signed: checks persist-before-broadcast and no equivocation. */
  function publish(node: SimNode, msg: NetMsg): void {
    const key = msgKey(msg)
    if (!node.walKeys.has(key)) violations.push(`${node.id} broadcast ${key} before persisting it`)
    const signed = msg.type === 'proposal' ? msg.proposal : msg.vote
    const slot = `${signed.from}|${msg.type === 'proposal' ? 'proposal' : msg.vote.kind}|${signed.height}|${signed.round}`
    const value =
      msg.type === 'proposal' ? `${msg.proposal.value}@${msg.proposal.validRound}` : String(msg.vote.value)
    const before = honestSigned.get(slot)
    if (before === undefined) honestSigned.set(slot, value)
    else if (before !== value)
      violations.push(`honest ${node.id} signed ${slot} twice: ${before} and ${value}`)
    if (msg.type === 'proposal') proposedValues.add(msg.proposal.value)
    if (!node.seen.has(key)) {
      node.seen.add(key)
      node.log.push({ key, msg })
    }
    sendToAll(node, msg)
  }

  function performByzantine(node: SimNode, o: ConsensusOutput): void {
    switch (o.type) {
      case 'persist':
      case 'evidence':
        return
      case 'scheduleTimeout':
        schedule(node, o.durationMs, { type: 'timeout', kind: o.kind, height: o.height, round: o.round })
        return
      case 'requestValue': {
        const value = `${node.id}/h${o.height}/r${o.round}/${valueCounter++}`
        validValues.add(value)
        schedule(node, 0, { type: 'valueReady', height: o.height, round: o.round, value })
        return
      }
      case 'decide':
        if (o.height < config.heights)
          node.inbox.push({ type: 'startHeight', height: o.height + 1, validators })
        return
      case 'broadcastProposal': {
        const p = o.proposal
        if (node.behaviour === 'invalid') {
          const bad = { ...p, value: `bad/${node.id}/h${p.height}/r${p.round}` }
          proposedValues.add(bad.value)
          stats.invalidProposals++
          sendToAll(node, { type: 'proposal', proposal: bad })
          return
        }
        // Equivocate: a second proposal, valid or not, to a random half of the peers.
        // mirror: the second one is fresh (validRound -1), to tempt locked validators into a new value.
        const alt = {
          ...p,
          value: `alt/${node.id}/h${p.height}/r${p.round}`,
          validRound: node.behaviour === 'mirror' ? -1 : p.validRound,
        }
        if (node.behaviour === 'mirror' || rng.chance(0.5)) validValues.add(alt.value)
        else stats.invalidProposals++
        proposedValues.add(p.value)
        proposedValues.add(alt.value)
        stats.equivocations++
        if (node.behaviour === 'mirror' && rng.chance(0.5)) {
          sendToAll(node, { type: 'proposal', proposal: alt }) // only the fresh value
          return
        }
        splitSend(node, { type: 'proposal', proposal: p }, { type: 'proposal', proposal: alt })
        return
      }
      case 'broadcastVote': {
        const v = o.vote
        if (node.behaviour === 'invalid' || node.behaviour === 'mirror') {
          sendToAll(node, { type: 'vote', vote: v })
          return
        }
        const other = node.state.rounds.get(v.round)?.proposals.keys().next().value
        const altValue = v.value === null ? (other ?? `alt/${node.id}/h${v.height}/r${v.round}`) : null
        const alt = { ...v, value: altValue }
        stats.equivocations++
        splitSend(node, { type: 'vote', vote: v }, { type: 'vote', vote: alt })
        return
      }
      default: {
        const unknown: never = o
        throw new Error(`unknown output ${JSON.stringify(unknown)}`)
      }
    }
  }

  /** Equivocation: `a` to a random half of the peers, `b` to the other half. */
  function splitSend(node: SimNode, a: NetMsg, b: NetMsg): void {
    const peers = rng.shuffle(nodes.filter((n) => n !== node))
    const half = Math.ceil(peers.length / 2)
    for (const [i, peer] of peers.entries()) send(node, peer.index, i < half ? a : b)
  }

  function deliver(node: SimNode, via: number, wire: WireMsg): void {
    if (!node.up) return
    if (wire.type !== 'proposal' && wire.type !== 'vote') {
      onProtocol(node, via, wire)
      return
    }
    const msg: NetMsg = wire
    const key = msgKey(msg)
    if (node.seen.has(key)) return
    node.seen.add(key)
    stats.deliveries++
    const h = msgHeight(msg)
    // Stale (the sender is helped by block sync), except votes of the previous height: evidence.
    const lateVote = msg.type === 'vote' && h === node.state.height - 1
    if (h < node.state.height && !lateVote) return
    if (node.behaviour === 'honest') sendToAll(node, msg, via) // gossipsub relays what it accepts
    if (node.behaviour === 'mirror' && msg.type === 'vote' && msg.vote.from !== node.id) {
      const own: NetMsg = { type: 'vote', vote: { ...msg.vote, from: node.id } }
      if (!node.seen.has(msgKey(own))) {
        node.seen.add(msgKey(own))
        stats.equivocations++
        sendToAll(node, own)
      }
    }
    const entry = { key, msg }
    if (lateVote) {
      feed(node, toInput(msg))
      return
    }
    if (h > node.state.height) {
      node.future.push(entry)
      // Its signer committed h - 1: block sync may ask it (the driver's notePeerHeight on gossip).
      const signer = msg.type === 'proposal' ? msg.proposal.from : msg.vote.from
      if (signer !== node.id) node.sync.notePeerHeight(signer, BigInt(h - 1))
      return
    }
    node.log.push(entry)
    feed(node, toInput(msg))
  }

  /**
   * Every gossipIntervalMs, by messages only: an honest node announces its committed height, asks for the
   * messages of its undecided height it lacks, and sends the block requests its sync wants. An `invalid`
   * node announces a height far ahead (a liar block sync must survive).
   */
  function gossip(): void {
    for (const a of nodes) {
      if (!a.up) continue
      if (a.behaviour === 'invalid') {
        sendToAll(a, { type: 'status', height: committed(a) + 50 })
        continue
      }
      if (a.behaviour !== 'honest') continue
      sendToAll(a, { type: 'status', height: committed(a) })
      if (a.state.decision === null && a.state.height > committed(a)) {
        const have = new Set(a.log.map((m) => m.key))
        sendToAll(a, { type: 'messagesRequest', height: a.state.height, have })
      }
      pollSync(a)
    }
  }

  /** Heights decided or synced, contiguous from 1. */
  function committed(node: SimNode): number {
    return node.blocks.size
  }

  function pollSync(node: SimNode): void {
    for (const r of node.sync.poll(BigInt(committed(node)), now)) {
      const to = indexOf.get(r.peer)
      if (to === undefined) continue
      send(node, to, { type: 'blocksRequest', id: r.id, from: Number(r.from), count: r.count })
    }
  }

  function onProtocol(node: SimNode, via: number, msg: ProtocolMsg): void {
    const peer = nodes[via]!
    switch (msg.type) {
      case 'status':
        if (node.behaviour === 'honest') node.sync.notePeerHeight(peer.id, BigInt(msg.height))
        return
      case 'messagesRequest':
        // Only an honest node deciding that height holds its messages (a node past it serves blocks).
        if (node.behaviour !== 'honest' || node.state.height !== msg.height) return
        for (const m of node.log) if (!msg.have.has(m.key)) send(node, via, m.msg)
        return
      case 'blocksRequest': {
        if (node.behaviour === 'invalid') {
          send(node, via, { type: 'blocksResponse', id: msg.id, blocks: forgedBlocks(node, msg) })
          return
        }
        if (node.behaviour !== 'honest') return
        const blocks: SyncedSimBlock[] = []
        for (let h = msg.from; h < msg.from + msg.count; h++) {
          const b = node.blocks.get(h)
          if (b === undefined) break
          blocks.push({ proposal: b.proposal, decision: b.decision })
        }
        send(node, via, { type: 'blocksResponse', id: msg.id, blocks })
        return
      }
      case 'blocksResponse':
        if (node.behaviour !== 'honest') return
        node.sync.received(msg.id, msg.blocks, now)
        applySynced(node)
        pollSync(node)
        return
      default: {
        const unknown: never = msg
        throw new Error(`unknown protocol message ${JSON.stringify(unknown)}`)
      }
    }
  }

  /** What a lying node answers: blocks of its own value with precommits made up for everyone. */
  function forgedBlocks(node: SimNode, req: { from: number; count: number }): SyncedSimBlock[] {
    const out: SyncedSimBlock[] = []
    for (let height = req.from; height < req.from + req.count; height++) {
      const value = `forged/${node.id}/h${height}`
      proposedValues.add(value)
      const certificate = validators.map(
        (v): Vote => ({ kind: 'precommit', height, round: 0, value, from: v.id }),
      )
      out.push({
        proposal: { height, round: 0, value, validRound: -1, from: node.id },
        decision: { height, round: 0, value, certificate },
      })
    }
    return out
  }

  /**
   * A synced block counts when its certificate has > 2/3 of the power in precommits for its value that
   * their signers really sent (an honest validator's only if it signed exactly that: the stand-in for
   * signature checks), and its proposal is for that value.
   */
  function verifySynced(b: SyncedSimBlock, height: number): boolean {
    const d = b.decision
    if (d.height !== height || b.proposal.height !== height || b.proposal.value !== d.value) return false
    if (checkCertificate('sync', d, powerOf, totalPower).length > 0) return false
    return d.certificate.every((v) => {
      const signer = config.validators[indexOf.get(v.from) ?? -1]
      if (signer === undefined) return false
      if (signer.behaviour !== 'honest') return true
      return honestSigned.get(`${v.from}|precommit|${v.height}|${v.round}`) === String(v.value)
    })
  }

  /** Applies the ready synced blocks in height order, then moves the core to the next height. */
  function applySynced(node: SimNode): void {
    for (;;) {
      const local = committed(node)
      const r = node.sync.next(BigInt(local))
      if (r === undefined) return
      const height = local + 1
      node.sync.done()
      if (!verifySynced(r.block, height)) {
        stats.syncRejected++
        node.sync.ban(r.peer, now)
        continue
      }
      stats.synced++
      node.blocks.set(height, { decision: r.block.decision, proposal: r.block.proposal, atMs: now })
      if (height < config.heights) {
        feed(node, { type: 'startHeight', height: height + 1, validators })
      } else if (honest.every((n) => n.blocks.size >= config.heights)) {
        finished = true
      }
    }
  }

  // Scenario.
  for (const c of config.crashes) {
    queue.push(c.atMs, { kind: 'crash', node: c.node, afterPersist: c.afterPersist })
    queue.push(c.restartMs, { kind: 'restart', node: c.node })
  }
  queue.push(0, { kind: 'gossip' })
  for (const node of nodes) {
    if (node.behaviour !== 'silent') feed(node, { type: 'startHeight', height: 1, validators })
  }

  while (!finished) {
    const next = queue.pop()
    if (next === undefined || next.time > stopAt) break
    now = next.time
    stats.events++
    const e = next.event
    switch (e.kind) {
      case 'deliver':
        deliver(nodes[e.to]!, e.via, e.msg)
        break
      case 'input': {
        const node = nodes[e.node]!
        if (node.up && node.incarnation === e.incarnation) feed(node, e.input)
        break
      }
      case 'crash': {
        const node = nodes[e.node]!
        if (!node.up) break
        if (e.afterPersist) node.crashAtNextPersist = true
        else crash(node)
        break
      }
      case 'restart': {
        const node = nodes[e.node]!
        if (node.up) crash(node) // an afterPersist crash that has not happened yet happens now
        restart(node)
        break
      }
      case 'gossip':
        gossip()
        queue.push(now + config.gossipIntervalMs, { kind: 'gossip' })
        break
      default: {
        const unknown: never = e
        throw new Error(`unknown event ${JSON.stringify(unknown)}`)
      }
    }
  }

  // Checks.
  let finishedAtMs: number | null = 0
  for (const node of honest) {
    for (let h = 1; h <= config.heights; h++) {
      const block = node.blocks.get(h)
      if (block === undefined) {
        violations.push(
          `termination: ${node.id} has not decided height ${h} by ${stopAt}ms ` +
            `(at height ${node.state.height} round ${node.state.round} step ${node.state.step})`,
        )
        finishedAtMs = null
        break
      }
      if (finishedAtMs !== null && block.atMs > finishedAtMs) finishedAtMs = block.atMs
    }
  }
  for (let h = 1; h <= config.heights; h++) {
    const values = new Set<ValueId>()
    for (const node of honest) {
      const block = node.blocks.get(h)
      if (block === undefined) continue
      values.add(block.decision.value)
      const d = block.decision
      if (!validValues.has(d.value) || !proposedValues.has(d.value)) {
        violations.push(`validity: ${node.id} decided ${d.value} at height ${h}, not a valid proposed value`)
      }
      violations.push(...checkCertificate(node.id, d, powerOf, totalPower))
    }
    if (values.size > 1) violations.push(`agreement: height ${h} decided ${[...values].join(' and ')}`)
  }
  for (const node of honest) {
    for (const ev of node.evidence) {
      const culprit = config.validators[indexOf.get(ev.validator) ?? -1]
      if (culprit === undefined || culprit.behaviour === 'honest') {
        violations.push(`${node.id} holds evidence against honest ${ev.validator}: ${JSON.stringify(ev)}`)
      }
      const { first: a, second: b } = ev
      if (
        a.from !== ev.validator ||
        b.from !== ev.validator ||
        a.kind !== b.kind ||
        a.height !== b.height ||
        a.round !== b.round ||
        a.value === b.value
      ) {
        violations.push(`${node.id} holds malformed evidence ${JSON.stringify(ev)}`)
      }
    }
  }

  return {
    config,
    decisions: new Map(
      honest.map((n) => [n.id, new Map([...n.blocks].map(([h, b]) => [h, b.decision] as const))] as const),
    ),
    decidedAtMs: new Map(
      honest.map((n) => [n.id, new Map([...n.blocks].map(([h, b]) => [h, b.atMs] as const))] as const),
    ),
    evidence: new Map(honest.map((n) => [n.id, n.evidence] as const)),
    finishedAtMs,
    violations,
    stats,
  }
}

function checkCertificate(
  holder: string,
  d: Decision,
  powerOf: ReadonlyMap<string, bigint>,
  total: bigint,
): string[] {
  const problems: string[] = []
  const signers = new Set<string>()
  let power = 0n
  for (const v of d.certificate) {
    if (v.kind !== 'precommit' || v.height !== d.height || v.round !== d.round || v.value !== d.value) {
      problems.push(`certificate of ${holder} at ${d.height} holds a foreign vote ${JSON.stringify(v)}`)
    }
    if (signers.has(v.from)) problems.push(`certificate of ${holder} at ${d.height} counts ${v.from} twice`)
    signers.add(v.from)
    power += powerOf.get(v.from) ?? 0n
  }
  if (!(power * 3n > total * 2n)) {
    problems.push(`certificate of ${holder} at ${d.height} has ${power} of ${total} power`)
  }
  return problems
}
