/**
 * What a scenario observed, and the fault model it is judged against.
 *
 * The runner records only what the nodes' HTTP APIs answered (status, rollups, validators, intents,
 * blocks) and when it ran each fault command. The topology model (who is down, who can reach whom,
 * which rollups are stopped) follows from the commands alone, never from a node's memory.
 */
import type { FaultStep } from './scenario-timelines.ts'

/** One node's answers in one sampling round; `up` false when it did not answer `GET /v1/status`. */
export interface NodeSample {
  node: number
  up: boolean
  height?: number
  blockHash?: string
  peers?: number
  /** `GET /v1/peers`: the peer ids this node is connected to. */
  peerIds?: string[]
  /** `GET /v1/rollups`: chain id -> status, when the scenario watches rollups. */
  rollups?: Record<string, string>
  /** Validator addresses this node's `GET /v1/validators` shows `online: false` (when it has the field). */
  offline?: string[]
}

/** All nodes sampled at (about) the same time. */
export interface SampleRound {
  atMs: number
  nodes: NodeSample[]
}

/** A fault command as the runner ran it: issued at `startMs`, returned at `doneMs`. */
export interface ExecutedStep extends FaultStep {
  startMs: number
  doneMs: number
  error?: string
}

/** An intent the scenario handed to a node. Only `status: 202` counts as accepted. */
export interface SentIntent {
  id: `0x${string}`
  node: number
  sentAtMs: number
  /** Allowed destination chain ids; empty = any rollup. */
  chains: number[]
  status: 202 | 200 | 'refused'
  code?: string
  /** Added by the MURMUR_SCENARIO_BREAK=lost-intent hook: no node ever saw it. */
  madeUp?: true
}

/** What the runner learnt about an accepted intent while waiting for fills. */
export interface IntentProgress {
  state?: string
  /** `atMs` of the `filled` entry of the intent's history, as the answering node recorded it. */
  filledAtMs?: number
}

/** `GET /v1/intents/:id` on one node at the end of the run. */
export interface IntentLookup {
  node: number
  result: 'known' | 'missing' | 'unreachable'
  state?: string
}

/** `GET /v1/blocks/:height` on every node, for one height. */
export interface BlockLookup {
  height: number
  /** Node index -> block hash, or null when the node has no block there (404) or did not answer. */
  hashes: Array<string | null>
}

/** Everything one run observed; the checker turns it into invariants and figures. */
export interface Observations {
  nodes: number
  /** Voting power of each node's validator (`GET /v1/validators`), by node index. */
  powers: bigint[]
  validatorAddresses: string[]
  /** libp2p peer id of each node, by index (from `devnet.json`). */
  peerIds: string[]
  chainIds: number[]
  startMs: number
  trafficEndMs: number
  endMs: number
  steps: ExecutedStep[]
  rounds: SampleRound[]
  intents: SentIntent[]
  progress: Map<string, IntentProgress>
  lookups: Map<string, IntentLookup[]>
  blocks: BlockLookup[]
  /** Heights the block check covered: `[from, to]`, and whether it was sampled. */
  blockRange: { from: number; to: number; sampled: boolean }
}

/** Who is down, who can reach whom, which rollups are stopped. */
export interface Topology {
  down: ReadonlySet<number>
  /** Partition groups (node indexes); null when healed. */
  groups: readonly (readonly number[])[] | null
  rollupsDown: ReadonlySet<number>
}

export const WHOLE: Topology = { down: new Set(), groups: null, rollupsDown: new Set() }

/** The topology after `step` (a `restart` brings the node up, whatever it was before). */
export function applyStep(t: Topology, step: FaultStep, chainIds: readonly number[]): Topology {
  const chainOf = (arg: string) => {
    const byId = chainIds.find((c) => String(c) === arg)
    return byId ?? chainIds[Number(arg)]!
  }
  switch (step.cmd) {
    case 'kill':
      return { ...t, down: new Set([...t.down, Number(step.args[0])]) }
    case 'restart':
      return { ...t, down: new Set([...t.down].filter((n) => n !== Number(step.args[0]))) }
    case 'partition':
      return { ...t, groups: step.args.map((g) => g.split(',').map(Number)) }
    case 'heal':
      return { ...t, groups: null }
    case 'rollup-down':
      return { ...t, rollupsDown: new Set([...t.rollupsDown, chainOf(step.args[0]!)]) }
    case 'rollup-up':
      return { ...t, rollupsDown: new Set([...t.rollupsDown].filter((c) => c !== chainOf(step.args[0]!))) }
    case 'spike':
      // Load, not a fault of the topology.
      return t
  }
}

/** The topology in force at time `atMs`: steps count from the moment their command returned. */
export function topologyAt(o: Pick<Observations, 'steps' | 'chainIds'>, atMs: number): Topology {
  let t = WHOLE
  for (const s of o.steps) if (s.doneMs <= atMs && s.error === undefined) t = applyStep(t, s, o.chainIds)
  return t
}

/** The group of node `n` (all nodes when healed). */
export function groupOf(t: Topology, n: number, nodes: number): readonly number[] {
  return t.groups?.find((g) => g.includes(n)) ?? Array.from({ length: nodes }, (_, i) => i)
}

/** The running nodes of the group holding the most stake, and that stake. */
export function majorityGroup(t: Topology, powers: readonly bigint[]): { members: number[]; stake: bigint } {
  const groups = t.groups ?? [powers.map((_, i) => i)]
  let best = { members: [] as number[], stake: -1n }
  for (const g of groups) {
    const members = g.filter((n) => !t.down.has(n))
    const stake = members.reduce((s, n) => s + (powers[n] ?? 0n), 0n)
    if (stake > best.stake) best = { members, stake }
  }
  return best
}

/** Tendermint's quorum: more than 2/3 of the total power. */
export function hasQuorum(stake: bigint, powers: readonly bigint[]): boolean {
  const total = powers.reduce((s, p) => s + p, 0n)
  return stake * 3n > total * 2n
}

/** The network's height in a round: the highest any node answered (a minority cannot get ahead). */
export function networkHeight(r: SampleRound): number | undefined {
  let h: number | undefined
  for (const n of r.nodes)
    if (n.up && n.height !== undefined && (h === undefined || n.height > h)) h = n.height
  return h
}

/** True when node `a` or node `b` reports a connection to the other. */
function linked(r: SampleRound, peerIds: readonly string[], a: number, b: number): boolean {
  return (
    r.nodes[a]?.peerIds?.includes(peerIds[b]!) === true || r.nodes[b]?.peerIds?.includes(peerIds[a]!) === true
  )
}

/**
 * The answering nodes split into groups that reach each other over the connections they report
 * (`GET /v1/peers`): gossip relays, so a path is enough, a full mesh is not needed.
 */
export function components(r: SampleRound, peerIds: readonly string[]): number[][] {
  const up = r.nodes.filter((n) => n.up).map((n) => n.node)
  const seen = new Set<number>()
  const out: number[][] = []
  for (const start of up) {
    if (seen.has(start)) continue
    const group = [start]
    seen.add(start)
    for (let k = 0; k < group.length; k++)
      for (const m of up)
        if (!seen.has(m) && linked(r, peerIds, group[k]!, m)) {
          seen.add(m)
          group.push(m)
        }
    out.push(group.sort((a, b) => a - b))
  }
  return out
}

/**
 * True when, in this round, more than 2/3 of stake is connected as observed: one group of nodes that
 * answered and reach each other holds a quorum. Observed, not modelled: a node restarting or a
 * partition being installed counts as what the nodes report. A validator that an answering node reports
 * offline (`online: false` in `GET /v1/validators`: missing from the last commits, or jailed, which
 * leaves it out of the voting set at the next epoch) does not count towards the group's stake.
 */
export function quorumConnected(
  o: Pick<Observations, 'peerIds' | 'powers'> & Partial<Pick<Observations, 'validatorAddresses'>>,
  r: SampleRound,
): boolean {
  const offline = new Set(r.nodes.flatMap((s) => s.offline ?? []).map((a) => a.toLowerCase()))
  const counts = (n: number) => !offline.has((o.validatorAddresses?.[n] ?? '').toLowerCase())
  return components(r, o.peerIds).some((g) =>
    hasQuorum(
      g.reduce((s, n) => s + (counts(n) ? (o.powers[n] ?? 0n) : 0n), 0n),
      o.powers,
    ),
  )
}

/** Median of a list of numbers (undefined when empty). */
export function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : Math.round((s[m - 1]! + s[m]!) / 2)
}
