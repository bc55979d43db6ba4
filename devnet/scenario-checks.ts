/**
 * The scenario invariants, judged over what the nodes' HTTP APIs answered during a run
 * (scenario-model.ts `Observations`). Pure functions: no I/O, so a test can feed them a made-up run.
 *
 * - same-blocks: every node holds the same block hash at every height it has;
 * - heights-advance: while more than 2/3 of stake is connected, the network height never stalls for
 *   longer than `stallBoundMs`;
 * - no-lost-intents: every intent that got 202 is known on every node at the end;
 * - intents-filled: every accepted intent with a live allowed rollup is filled within `fillBoundMs` of
 *   the moment it could be (quorum connected and an allowed rollup up);
 * - back-at-height: after each fault ends, every node reaches the height the network had then within
 *   `recoverBoundMs`.
 */
import {
  groupOf,
  hasQuorum,
  majorityGroup,
  median,
  networkHeight,
  type Observations,
  quorumConnected,
  type SampleRound,
  topologyAt,
} from './scenario-model.ts'
import type { ScenarioName } from './scenario-timelines.ts'

/** One invariant's verdict, as the report carries it. */
export interface Invariant {
  name: string
  passed: boolean
  detail: string
}

/** The bounds the invariants are judged with. */
export interface CheckBounds {
  stallBoundMs: number
  recoverBoundMs: number
  fillBoundMs: number
}

/** Seconds with one decimal, for details meant for people. */
const sec = (ms: number) => `${(ms / 1000).toFixed(1)} s`
const short = (id: string) => id.slice(0, 10)
/** At most `n` items of a list, then "and K more". */
function few(items: string[], n = 4): string {
  return items.length <= n
    ? items.join('; ')
    : `${items.slice(0, n).join('; ')}; and ${items.length - n} more`
}

export function checkSameBlocks(o: Observations): Invariant {
  const byHeight = new Map<number, Map<string, Set<number>>>()
  const add = (h: number, hash: string, node: number) => {
    const m = byHeight.get(h) ?? new Map<string, Set<number>>()
    byHeight.set(h, m)
    m.set(hash, (m.get(hash) ?? new Set()).add(node))
  }
  const last = o.rounds.at(-1)
  const missing: string[] = []
  let compared = 0
  for (const b of o.blocks) {
    let have = 0
    for (const [node, hash] of b.hashes.entries()) {
      if (hash !== null) {
        add(b.height, hash, node)
        have++
        continue
      }
      // A node that already reported a higher height must hold this block too.
      const own = last?.nodes[node]?.height
      if (own !== undefined && own >= b.height) missing.push(`node ${node} has no block ${b.height}`)
    }
    if (have >= 2) compared++
  }
  for (const r of o.rounds)
    for (const n of r.nodes)
      if (n.up && n.height !== undefined && n.height > 0 && n.blockHash !== undefined)
        add(n.height, n.blockHash, n.node)
  const forks: string[] = []
  for (const [h, hashes] of [...byHeight].sort((a, b) => a[0] - b[0])) {
    if (hashes.size < 2) continue
    const sides = [...hashes].map(([hash, nodes]) => `${short(hash)} on nodes ${[...nodes].join(',')}`)
    forks.push(`height ${h}: ${sides.join(' vs ')}`)
  }
  const range = o.blockRange
  const what =
    `${compared} heights compared on ${o.nodes} nodes by GET /v1/blocks ` +
    `(${range.sampled ? 'sampled from' : 'all of'} ${range.from}..${range.to}) and every status sample`
  if (forks.length > 0) return { name: 'same-blocks', passed: false, detail: `forks: ${few(forks)}` }
  if (missing.length > 0)
    return { name: 'same-blocks', passed: false, detail: `${what}; missing: ${few(missing)}` }
  if (compared === 0)
    return { name: 'same-blocks', passed: false, detail: 'no height could be compared on two nodes' }
  return { name: 'same-blocks', passed: true, detail: `one hash per height: ${what}` }
}

/** Runs of consecutive rounds in which more than 2/3 of stake was connected. */
function quorumRuns(o: Observations): SampleRound[][] {
  const runs: SampleRound[][] = []
  let cur: SampleRound[] = []
  for (const r of o.rounds) {
    if (r.atMs <= o.trafficEndMs && quorumConnected(o, r)) {
      cur.push(r)
      continue
    }
    if (cur.length > 0) runs.push(cur)
    cur = []
  }
  if (cur.length > 0) runs.push(cur)
  return runs
}

export function checkHeightsAdvance(
  o: Observations,
  b: CheckBounds,
): { invariant: Invariant; longestStallMs: number; quorumMs: number } {
  const runs = quorumRuns(o)
  let longest = 0
  let quorumMs = 0
  const stalls: string[] = []
  for (const run of runs) {
    const first = run[0]!
    let lastRise = first.atMs
    let prev = networkHeight(first) ?? 0
    const gaps: Array<[number, number, number]> = []
    for (const r of run.slice(1)) {
      const h = networkHeight(r) ?? prev
      if (h > prev) {
        gaps.push([lastRise, r.atMs, prev])
        lastRise = r.atMs
        prev = h
      }
    }
    gaps.push([lastRise, run.at(-1)!.atMs, prev])
    quorumMs += run.at(-1)!.atMs - first.atMs
    for (const [from, to, h] of gaps) {
      longest = Math.max(longest, to - from)
      if (to - from > b.stallBoundMs)
        stalls.push(`stuck at height ${h} for ${sec(to - from)} from +${sec(from - o.startMs)}`)
    }
  }
  const name = 'heights-advance'
  if (runs.length === 0)
    return {
      invariant: { name, passed: false, detail: 'never saw more than 2/3 of stake connected' },
      longestStallMs: 0,
      quorumMs,
    }
  const detail =
    stalls.length > 0
      ? `with more than 2/3 of stake connected: ${few(stalls)} (bound ${sec(b.stallBoundMs)})`
      : `over ${sec(quorumMs)} with more than 2/3 of stake connected, the longest stall was ` +
        `${sec(longest)} (bound ${sec(b.stallBoundMs)})`
  return { invariant: { name, passed: stalls.length === 0, detail }, longestStallMs: longest, quorumMs }
}

export function checkNoLostIntents(o: Observations): Invariant {
  const accepted = o.intents.filter((i) => i.status === 202)
  const lost: string[] = []
  for (const i of accepted) {
    const l = o.lookups.get(i.id) ?? []
    const bad = l.filter((x) => x.result !== 'known')
    if (bad.length === 0 && l.length === o.nodes) continue
    const where = bad.map((x) => `node ${x.node} ${x.result}`).join(', ') || 'not looked up'
    lost.push(`${short(i.id)} (202 from node ${i.node} at +${sec(i.sentAtMs - o.startMs)}): ${where}`)
  }
  return {
    name: 'no-lost-intents',
    passed: lost.length === 0,
    detail:
      lost.length === 0
        ? `all ${accepted.length} accepted intents are known on all ${o.nodes} nodes`
        : `${lost.length} of ${accepted.length} accepted intents not known everywhere: ${few(lost)}`,
  }
}

export function checkIntentsFilled(
  o: Observations,
  b: CheckBounds,
): {
  invariant: Invariant
  intentsDelayed: number
  baselineFillMs: number | null
  delayThresholdMs: number | null
  slowestFillMs: number | null
  excluded: number
} {
  const accepted = o.intents.filter((i) => i.status === 202)
  const endTopology = topologyAt(o, o.endMs)
  const firstFault = o.steps[0]?.startMs ?? Number.POSITIVE_INFINITY
  const bad: string[] = []
  const latencies: Array<{ sentAtMs: number; ms: number }> = []
  let excluded = 0
  let slowest: number | null = null
  for (const i of accepted) {
    const allowed = i.chains.length > 0 ? i.chains : o.chainIds
    if (allowed.every((c) => endTopology.rollupsDown.has(c))) {
      excluded++
      continue
    }
    // From when the network could have filled it: quorum connected and an allowed rollup running.
    const ready = o.rounds.find(
      (r) =>
        r.atMs >= i.sentAtMs &&
        quorumConnected(o, r) &&
        allowed.some((c) => !topologyAt(o, r.atMs).rollupsDown.has(c)),
    )
    const p = o.progress.get(i.id)
    if (p?.filledAtMs === undefined) {
      bad.push(`${short(i.id)} ${p?.state ?? 'unknown'} (chains ${allowed.join(',')})`)
      continue
    }
    latencies.push({ sentAtMs: i.sentAtMs, ms: p.filledAtMs - i.sentAtMs })
    const waited = p.filledAtMs - (ready?.atMs ?? i.sentAtMs)
    slowest = Math.max(slowest ?? 0, waited)
    if (waited > b.fillBoundMs) bad.push(`${short(i.id)} filled ${sec(waited)} after it could be`)
  }
  const baseline = median(latencies.filter((l) => l.sentAtMs < firstFault).map((l) => l.ms))
  const threshold = baseline === undefined ? undefined : Math.max(2 * baseline, baseline + 2_000)
  const delayed = threshold === undefined ? 0 : latencies.filter((l) => l.ms > threshold).length
  const counted = accepted.length - excluded
  const detail =
    bad.length > 0
      ? `${bad.length} of ${counted} accepted intents not filled within ${sec(b.fillBoundMs)}: ${few(bad)}`
      : `all ${counted} accepted intents filled, the slowest ${sec(slowest ?? 0)} after the network ` +
        `could fill it (bound ${sec(b.fillBoundMs)})` +
        (excluded > 0 ? `; ${excluded} left out (every allowed rollup down at the end)` : '')
  return {
    // Nothing accepted out of something sent is a failure (every send refused), not a pass.
    invariant: {
      name: 'intents-filled',
      passed: bad.length === 0 && (counted > 0 || o.intents.length === 0),
      detail: o.intents.length === 0 ? 'no intents sent (--rate 0)' : detail,
    },
    intentsDelayed: delayed,
    baselineFillMs: baseline ?? null,
    delayThresholdMs: threshold ?? null,
    slowestFillMs: slowest,
    excluded,
  }
}

/** Time from each fault's end to every node being back at the height the network had then. */
export function checkBackAtHeight(
  o: Observations,
  b: CheckBounds,
): { invariant: Invariant; recoverMs: number | null; each: Array<{ event: string; ms: number | null }> } {
  const each: Array<{ event: string; ms: number | null }> = []
  const bad: string[] = []
  const ends = o.steps.filter(
    (s) => s.error === undefined && ['restart', 'heal', 'rollup-up'].includes(s.cmd),
  )
  for (const s of ends) {
    const event = `${s.cmd}${s.args.length > 0 ? ` ${s.args.join(' ')}` : ''}`
    const T = s.doneMs
    const first = o.rounds.find((r) => r.atMs >= T)
    const target = first === undefined ? undefined : networkHeight(first)
    if (target === undefined) {
      each.push({ event, ms: null })
      continue
    }
    const who = s.cmd === 'restart' ? [Number(s.args[0])] : Array.from({ length: o.nodes }, (_, i) => i)
    let worst = 0
    for (const n of who) {
      const back = o.rounds.find((r) => r.atMs >= T && (r.nodes[n]?.height ?? -1) >= target)
      // Killed again before it got back (churn): nothing to measure for this fault.
      const again = o.steps.find(
        (k) => k.startMs > T && ['kill', 'restart'].includes(k.cmd) && Number(k.args[0]) === n,
      )
      if (again !== undefined && (back === undefined || back.atMs > again.startMs)) continue
      if (back !== undefined && back.atMs - T <= b.recoverBoundMs) {
        worst = Math.max(worst, back.atMs - T)
        continue
      }
      const lastSeen = [...o.rounds].reverse().find((r) => r.nodes[n]?.height !== undefined)
      const now = lastSeen?.nodes[n]?.height
      const net = lastSeen === undefined ? undefined : networkHeight(lastSeen)
      bad.push(
        back !== undefined
          ? `after ${event}: node ${n} took ${sec(back.atMs - T)} to reach height ${target}`
          : `after ${event}: node ${n} never reached height ${target} (last seen at ${now ?? '?'} ` +
              `while the network was at ${net ?? '?'}, ${sec((lastSeen?.atMs ?? T) - T)} later)`,
      )
      worst = Number.NaN
    }
    each.push({ event, ms: Number.isNaN(worst) ? null : worst })
  }
  const measured = each.filter((e) => e.ms !== null).map((e) => e.ms!)
  const recoverMs = measured.length === 0 ? null : Math.max(...measured)
  const detail =
    bad.length > 0
      ? `${few(bad)} (bound ${sec(b.recoverBoundMs)})`
      : ends.length === 0
        ? 'no fault ended'
        : `after each of ${ends.length} fault ends every node was back at the network's height within ` +
          `${sec(recoverMs ?? 0)} (bound ${sec(b.recoverBoundMs)})`
  return { invariant: { name: 'back-at-height', passed: bad.length === 0, detail }, recoverMs, each }
}

/** Time from each fault's start until every running node shows it over its API. */
export function detectFigures(o: Observations): {
  detectMs: number | null
  each: Array<{ event: string; ms: number | null; by: string }>
} {
  const each: Array<{ event: string; ms: number | null; by: string }> = []
  for (const s of o.steps) {
    if (s.error !== undefined || !['kill', 'partition', 'rollup-down'].includes(s.cmd)) continue
    const event = `${s.cmd} ${s.args.join(' ')}`
    const t = topologyAt(o, s.doneMs)
    const next = o.steps.find((x) => x.startMs > s.startMs)?.startMs ?? o.endMs
    let by = s.cmd === 'rollup-down' ? 'rollup status down' : 'connections closed'
    const seen = o.rounds.find((r) => {
      if (r.atMs < s.startMs || r.atMs > next) return false
      const live = r.nodes.filter((n) => n.up && !t.down.has(n.node))
      if (live.length === 0) return false
      if (s.cmd === 'rollup-down') {
        const chain = o.chainIds.find((c) => String(c) === s.args[0]) ?? o.chainIds[Number(s.args[0])]
        return live.every((n) => n.rollups?.[String(chain)] === 'down')
      }
      if (s.cmd === 'kill' && live.every((n) => n.offline !== undefined)) {
        by = 'validator offline'
        const addr = o.validatorAddresses[Number(s.args[0])]!
        return live.every((n) => n.offline!.includes(addr))
      }
      // Connections closed: no running node still lists a peer it must not reach.
      return live.every((n) => {
        const reachable = new Set(groupOf(t, n.node, o.nodes).filter((m) => !t.down.has(m)))
        return (n.peerIds ?? []).every((p) => {
          const m = o.peerIds.indexOf(p)
          return m < 0 || reachable.has(m)
        })
      })
    })
    each.push({ event, ms: seen === undefined ? null : seen.atMs - s.startMs, by })
  }
  const ms = each.filter((e) => e.ms !== null).map((e) => e.ms!)
  return { detectMs: ms.length === 0 ? null : Math.max(...ms), each }
}

/** Heights per second between consecutive fault commands, with whether a quorum was up. */
export function paceFigures(
  o: Observations,
): Array<{ after: string; heightsPerSec: number; quorum: boolean }> {
  const marks = [
    { at: o.startMs, label: 'start' },
    ...o.steps.map((s) => ({ at: s.doneMs, label: `${s.cmd} ${s.args.join(' ')}`.trim() })),
  ]
  const out: Array<{ after: string; heightsPerSec: number; quorum: boolean }> = []
  for (const [i, m] of marks.entries()) {
    const until = o.steps[i]?.startMs ?? o.trafficEndMs
    const inside = o.rounds.filter((r) => r.atMs >= m.at && r.atMs <= until)
    if (inside.length < 2) continue
    const h0 = networkHeight(inside[0]!) ?? 0
    const h1 = networkHeight(inside.at(-1)!) ?? h0
    const dt = inside.at(-1)!.atMs - inside[0]!.atMs
    const g = majorityGroup(topologyAt(o, m.at), o.powers)
    out.push({
      after: m.label,
      heightsPerSec: dt > 0 ? Math.round(((h1 - h0) * 10_000) / dt) / 10 : 0,
      quorum: hasQuorum(g.stake, o.powers),
    })
  }
  return out
}

/** The `--report` JSON (INTERFACES.md "Command line"). */
export interface ScenarioReport {
  scenario: ScenarioName
  passed: boolean
  seed: number
  short: boolean
  invariants: Invariant[]
  timeline: Array<{ atMs: number; event: string }>
  figures: Record<string, unknown>
}

/** Judges a run: every invariant, and the figures (detectMs, recoverMs, intentsDelayed, ...). */
export function buildReport(
  obs: Observations,
  meta: Pick<ScenarioReport, 'scenario' | 'seed' | 'short' | 'timeline'> & { bounds: CheckBounds },
  /** A scenario's own invariants (load-spike: escrows-closed) and figures, after the common ones. */
  extra: { invariants: Invariant[]; figures: Record<string, unknown> } = { invariants: [], figures: {} },
): ScenarioReport {
  const b = meta.bounds
  const failedSteps = obs.steps.filter((s) => s.error !== undefined)
  const ran: Invariant = {
    name: 'timeline-ran',
    passed: failedSteps.length === 0,
    detail:
      failedSteps.length === 0
        ? `all ${obs.steps.length} fault commands ran`
        : `failed: ${failedSteps.map((s) => `${s.cmd} ${s.args.join(' ')}: ${s.error}`).join('; ')}`,
  }
  const heights = checkHeightsAdvance(obs, b)
  const filled = checkIntentsFilled(obs, b)
  const back = checkBackAtHeight(obs, b)
  const detect = detectFigures(obs)
  const invariants = [
    checkSameBlocks(obs),
    heights.invariant,
    checkNoLostIntents(obs),
    filled.invariant,
    back.invariant,
    ran,
    ...extra.invariants,
  ]
  const passed = invariants.every((i) => i.passed)
  return {
    scenario: meta.scenario,
    passed,
    seed: meta.seed,
    short: meta.short,
    invariants,
    timeline: meta.timeline,
    figures: {
      detectMs: detect.detectMs,
      recoverMs: back.recoverMs,
      intentsDelayed: filled.intentsDelayed,
      intentsSent: obs.intents.length,
      intentsAccepted: obs.intents.filter((i) => i.status === 202 && !i.madeUp).length,
      intentsRefused: obs.intents.filter((i) => i.status === 'refused').length,
      baselineFillMs: filled.baselineFillMs,
      delayThresholdMs: filled.delayThresholdMs,
      slowestFillMs: filled.slowestFillMs,
      longestStallMs: heights.longestStallMs,
      quorumConnectedMs: heights.quorumMs,
      detectBy: detect.each.map((e) => e.by),
      detectEach: detect.each,
      recoverEach: back.each,
      pace: paceFigures(obs),
      blocksCompared: obs.blocks.length,
      samples: obs.rounds.length,
      durationMs: obs.endMs - obs.startMs,
      bounds: b,
      ...extra.figures,
    },
  }
}
