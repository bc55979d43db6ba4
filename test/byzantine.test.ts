/**
 * A Byzantine proposer among real drivers cannot commit what honest validators would not (issue 9).
 *
 * Four real ConsensusDrivers with the real MurmurApplication over the byte-carrying bus
 * (test/sim/driver-bus.ts). Validator B holds 130 of 430 power (30 %, below 1/3); its driver talks to a
 * proxy over its real application whose `prepareProposal` builds the real block and tampers with it: a
 * block time from B's own clock (20 s ahead), a fill B invented for its own assignment, a last commit
 * stripped below 2/3 or with another signer's vote extension rewritten, a last commit left out or taken
 * from another block. B joins once the three honest validators have committed height 2: block 1 has no
 * last commit, so its time is its proposer's clock within maxClockSkewSec (docs/decisions.md, BFT time),
 * and a clock 20 s ahead would legitimately set it. After a fixed number of
 * heights every block the honest nodes committed is read back from their block stores and checked
 * against what a validator accepts, the honest nodes agree on every hash, and their
 * `murmur_consensus_invalid_proposals_total` counts B's refused proposals by code.
 */
import type { Address, Hex } from 'viem'
import { keccak256, toHex } from 'viem'
import { afterEach, describe, expect, it } from 'vitest'
import type { MurmurApplication } from '../src/app/application.ts'
import type {
  AppInfo,
  Application,
  ExtendVoteRequest,
  FinalizeBlockRequest,
  FinalizedBlock,
  PreparedProposal,
  PrepareProposalRequest,
  ProcessProposalRequest,
  VerifyVoteExtensionRequest,
} from '../src/consensus/abci.ts'
import {
  type Block,
  type CommitCertificate,
  decodeBlock,
  encodeBlock,
  verifyCertificate,
} from '../src/consensus/block.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { type FillVerdict, signFill } from '../src/rollups/fill.ts'
import { decodeObservations, encodeObservations } from '../src/rollups/observation.ts'
import { genesisState } from '../src/state/genesis.ts'
import { commitTime, votingPowers } from '../src/state/plan.ts'
import type { BatchOp } from '../src/state/store.ts'
import { addressOf, TEST_TIMEOUTS, type TestNetwork, testNetwork } from './helpers/consensus-net.ts'
import { makeIntent, wallet } from './helpers/intents.ts'
import { waitFor } from './helpers/wait.ts'
import { type BusNode, DriverBus } from './sim/driver-bus.ts'

/** Index of the Byzantine validator; the others are honest. */
const B = 3
const HONEST = [0, 1, 2] as const
const STAKES = [100n, 100n, 100n, 130n]
/** Heights the network commits after B joins, at least. */
const HEIGHTS = 12n
const SKEW_MS = 20_000
/** The rollup an honest validator sees down in the forged-extension scenario, and who sees it so. */
const WATCHED_CHAIN = 902n
const DOWN_OBSERVER = 2
const STATUS_DOWN = 2
/** The transaction hash of B's invented fills: no rollup holds it. */
const INVENTED_TX = keccak256(toHex('a fill that never happened'))
const DRIVER = { timeouts: TEST_TIMEOUTS, minBlockIntervalMs: 100 }

type Variant =
  | 'future-time'
  | 'subset-time'
  | 'invented-fill'
  | 'stripped-commit'
  | 'forged-extension'
  | 'no-commit'
  | 'other-commit'

/** What B's proxy does for each variant: a prepared proposal, or undefined when it does not apply here. */
type Tamper = (req: PrepareProposalRequest) => Promise<PreparedProposal | undefined>

/**
 * B's application as its driver sees it: every call goes to the real application except
 * `prepareProposal`, which tries the variants in turn (round robin over those that apply) and falls back
 * to the real block when none does. `made` counts the tampered blocks handed to the driver.
 */
class ByzantineApp implements Application {
  readonly made = new Map<Variant, number>()
  readonly #inner: MurmurApplication
  readonly #variants: readonly Variant[]
  readonly #tampers: Record<Variant, Tamper>
  /** Certificates of the blocks B committed, by height (the last few). */
  readonly #certs = new Map<bigint, CommitCertificate>()
  #turn = 0

  constructor(inner: MurmurApplication, variants: readonly Variant[], net: TestNetwork) {
    this.#inner = inner
    this.#variants = variants
    const account = net.validators[B]!
    const self = addressOf(account)
    inner.onCommit((e) => {
      this.#certs.set(e.height, e.certificate)
      this.#certs.delete(e.height - 4n)
    })
    const real = async (req: PrepareProposalRequest) => decodeBlock((await inner.prepareProposal(req)).bytes)
    const prepared = (b: Block): PreparedProposal => ({ bytes: encodeBlock(b), hasWork: true, time: b.time })
    /** The real application's block over a commit B chose: consistent with it in everything else. */
    const over = async (req: PrepareProposalRequest, lc: CommitCertificate) =>
      prepared(await real({ ...req, lastCommit: lc, awaitLastCommit: undefined }))
    this.#tampers = {
      'future-time': async (req) => {
        const b = await real(req)
        return b.lastCommit === null ? undefined : prepared({ ...b, time: req.nowMs })
      },
      'subset-time': async (req) => {
        const lc = req.lastCommit
        return lc === undefined ? undefined : over(req, latestQuorumSubset(inner, lc))
      },
      'invented-fill': async (req) => {
        const b = await real(req)
        // Only into a block that routes nothing: a fill changes the executors' outstanding work, so the
        // router's output over it would differ (ROUTE_MISMATCH) and the fill would not be what is refused.
        if (b.assignments.length > 0 || b.reassignments.length > 0) return undefined
        const busy = new Set(b.fills.map((x) => x.intentId))
        const a = [...inner.state.assignments.values()].find(
          (x) => x.executor === self && !busy.has(x.intentId),
        )
        if (a === undefined) return undefined
        const { fill, signature } = await signFill(account, net.network, {
          intentId: a.intentId,
          chainId: a.chainId,
          txHash: INVENTED_TX,
          blockNumber: 7n,
          blockHash: keccak256(toHex('a rollup block that never held it')),
          executor: self,
        })
        const fills = [...b.fills, { ...fill, signature }].sort((x, y) => (x.intentId < y.intentId ? -1 : 1))
        return prepared({ ...b, fills })
      },
      'stripped-commit': async (req) => {
        const lc = req.lastCommit
        if (lc === undefined) return undefined
        const powers = inner.state.commitPowers
        const total = sum([...powers.values()])
        const kept = [...lc.precommits]
        while (kept.length > 0 && 3n * sum(kept.map((p) => powers.get(p.validator) ?? 0n)) > 2n * total)
          kept.pop()
        return over(req, { ...lc, precommits: kept })
      },
      'forged-extension': async (req) => {
        const lc = req.lastCommit
        const victim = addressOf(net.validators[DOWN_OBSERVER]!)
        if (lc === undefined || !lc.precommits.some((p) => p.validator === victim)) return undefined
        const precommits = lc.precommits.map((p) => {
          if (p.validator !== victim) return p
          const up = decodeObservations(p.extension).map((o) =>
            o.chainId === WATCHED_CHAIN ? { ...o, status: 0 as const } : o,
          )
          return { ...p, extension: encodeObservations(up) } // the signature stays the signer's
        })
        return over(req, { ...lc, precommits })
      },
      'no-commit': async (req) => {
        const b = await real(req)
        return b.lastCommit === null ? undefined : prepared({ ...b, lastCommit: null })
      },
      'other-commit': async (req) => {
        const older = this.#certs.get(req.height - 2n)
        if (older === undefined) return undefined
        return prepared({ ...(await real(req)), lastCommit: older })
      },
    }
  }

  async prepareProposal(req: PrepareProposalRequest): Promise<PreparedProposal> {
    for (let i = 0; i < this.#variants.length; i++) {
      const k = (this.#turn + i) % this.#variants.length
      const variant = this.#variants[k]!
      const out = await this.#tampers[variant](req)
      if (out === undefined) continue
      this.#turn = k + 1
      this.made.set(variant, (this.made.get(variant) ?? 0) + 1)
      return out
    }
    return this.#inner.prepareProposal(req)
  }

  info(): Promise<AppInfo> {
    return this.#inner.info()
  }
  processProposal(req: ProcessProposalRequest) {
    return this.#inner.processProposal(req)
  }
  extendVote(req: ExtendVoteRequest): Promise<Uint8Array> {
    return this.#inner.extendVote(req)
  }
  verifyVoteExtension(req: VerifyVoteExtensionRequest): Promise<boolean> {
    return this.#inner.verifyVoteExtension(req)
  }
  finalizeBlock(req: FinalizeBlockRequest) {
    return this.#inner.finalizeBlock(req)
  }
  commit(block: FinalizedBlock, engineOps: readonly BatchOp[]): Promise<void> {
    return this.#inner.commit(block, engineOps)
  }
  afterCommit(block: FinalizedBlock): void {
    this.#inner.afterCommit(block)
  }
}

const sum = (xs: readonly bigint[]) => xs.reduce((a, b) => a + b, 0n)

/** Of the subsets of `lc` above 2/3 of the power, the one whose BFT time is the latest. */
function latestQuorumSubset(app: MurmurApplication, lc: CommitCertificate): CommitCertificate {
  const powers = app.state.commitPowers
  const total = sum([...powers.values()])
  let best = lc
  let bestTime = commitTime(app.state, lc) ?? 0
  const n = lc.precommits.length
  for (let mask = 1; mask < 1 << n; mask++) {
    const precommits = lc.precommits.filter((_, i) => (mask >> i) & 1)
    if (3n * sum(precommits.map((p) => powers.get(p.validator) ?? 0n)) <= 2n * total) continue
    const sub = { ...lc, precommits }
    const t = commitTime(app.state, sub) ?? 0
    if (t > bestTime) {
      best = sub
      bestTime = t
    }
  }
  return best
}

/** The four-validator network with B's stake, one long epoch and, optionally, a rollup seen down by one. */
function network(name: string, keyFactor: bigint, downObserver?: number): TestNetwork {
  const base = testNetwork(name, keyFactor, 2)
  const genesis = parseGenesis({
    ...base.genesis,
    validators: base.genesis.validators.map((v, i) => ({ ...v, stake: STAKES[i]!.toString() })),
    params: { ...base.genesis.params, epochBlocks: 100_000 },
  })
  const seenDown = downObserver === undefined ? undefined : addressOf(base.validators[downObserver]!)
  const healthReports = async () =>
    (await base.healthReports()).map((s) =>
      s.report.validator === seenDown && s.report.chainId === WATCHED_CHAIN
        ? { ...s, report: { ...s.report, status: STATUS_DOWN as 2 } }
        : s,
    )
  return { ...base, genesis, healthReports }
}

/** Each honest node's own fill check: B's fill is made up, so its rollup says no (or cannot be asked). */
const HONEST_VERDICT: Record<number, FillVerdict> = { 0: 'invalid', 1: 'invalid', 2: 'unknown' }

interface Run {
  bus: DriverBus
  honest: BusNode[]
  byz: ByzantineApp
  /** Honest height when B joined. */
  joinedAt: bigint
}

let current: DriverBus | undefined
afterEach(async () => {
  await current?.close()
  current = undefined
})

/** Starts the honest three, lets them commit height 2, then B behind its proxy (with its own clock). */
async function startRun(net: TestNetwork, variants: readonly Variant[], clockSkewMs = 0): Promise<Run> {
  const bus = new DriverBus(net)
  current = bus
  const honest: BusNode[] = []
  for (const i of HONEST) {
    honest.push(await bus.start(i, { driver: DRIVER, verifyFill: async () => HONEST_VERDICT[i]! }))
  }
  await waitFor('the honest three at height 2', () => honest.every((n) => n.driver.height >= 2n))
  let byz: ByzantineApp | undefined
  await bus.start(B, {
    driver: DRIVER,
    verifyFill: async () => 'valid',
    wrapApp: (app) => {
      byz = new ByzantineApp(app, variants, net)
      return byz
    },
    clock: { now: () => Date.now() + clockSkewMs },
  })
  return { bus, honest, byz: byz!, joinedAt: minHeight(honest) }
}

function minHeight(nodes: readonly BusNode[]): bigint {
  let min = nodes[0]!.driver.height
  for (const n of nodes) if (n.driver.height < min) min = n.driver.height
  return min
}

/** Waits until the honest nodes passed HEIGHTS more heights and B made every variant `times` times. */
async function runHeights(run: Run, variants: readonly Variant[], times = 1, more?: () => Promise<boolean>) {
  await waitFor(
    `${HEIGHTS} heights with every tampering tried ${times}x`,
    async () =>
      minHeight(run.honest) >= run.joinedAt + HEIGHTS &&
      variants.every((v) => (run.byz.made.get(v) ?? 0) >= times) &&
      (more === undefined || (await more())),
    { timeoutMs: 40_000, intervalMs: 200 },
  )
}

/** Invalid proposals each honest node counted, by code. */
async function refusals(node: BusNode): Promise<Record<string, number>> {
  const metric = node.registry.getSingleMetric('murmur_consensus_invalid_proposals_total')
  const out: Record<string, number> = {}
  for (const v of (await metric!.get()).values) out[String(v.labels['code'])] = v.value
  return out
}

/** Stake-weighted lower median of the commit's timestamps (ties by address), at least parent + 1 ms. */
function bftTime(lc: CommitCertificate, powers: ReadonlyMap<Address, bigint>, parentTime: number): number {
  const xs = lc.precommits
    .map((p) => ({ t: p.timestampMs, v: p.validator, w: powers.get(p.validator) ?? 0n }))
    .sort((a, b) => a.t - b.t || (a.v < b.v ? -1 : 1))
  const total = sum(xs.map((x) => x.w))
  let cum = 0n
  for (const x of xs) {
    cum += x.w
    if (2n * cum >= total) return Math.max(x.t, parentTime + 1)
  }
  throw new Error('empty commit')
}

interface Committed {
  readonly block: Block
  readonly hash: Hex
}

/**
 * Every block 1..(lowest honest height) from the honest nodes' block stores: the same hash on each, and
 * each one what an honest validator accepts: from height 2 a last commit of the parent with more than 2/3
 * of the power, every precommit signed as carried (timestamp and extension), the block time its BFT time
 * and never past an honest signer's clock nor the reading time; no fill (no honest executor filled).
 */
async function checkChain(run: Run, net: TestNetwork): Promise<Committed[]> {
  const readAt = Date.now()
  const upTo = minHeight(run.honest)
  const powers = votingPowers(genesisState(net.genesis))
  const byzAddr = addressOf(net.validators[B]!)
  const chain: Committed[] = []
  for (let h = 1n; h <= upTo; h++) {
    const got = await Promise.all(run.honest.map((n) => n.driver.getBlock(h)))
    expect(new Set(got.map((g) => g?.hash)).size, `one hash at height ${h}`).toBe(1)
    const { bytes, hash } = got[0]!
    const block = decodeBlock(bytes)
    const parent = chain.at(-1)
    expect(block.fills, `fills at height ${h}`).toEqual([])
    expect(block.time, `time at height ${h} is not in the future`).toBeLessThanOrEqual(readAt)
    if (parent !== undefined) {
      const lc = block.lastCommit
      expect(lc, `last commit at height ${h}`).not.toBeNull()
      expect([lc!.height, lc!.blockHash]).toEqual([h - 1n, parent.hash])
      const v = await verifyCertificate(lc!, powers, h - 1n, lc!.round, parent.hash, net.network)
      expect(v, `last commit at height ${h}`).toMatchObject({ ok: true })
      expect(block.time, `BFT time at height ${h}`).toBe(bftTime(lc!, powers, parent.block.time))
      const honestStamps = lc!.precommits.filter((p) => p.validator !== byzAddr).map((p) => p.timestampMs)
      expect(block.time).toBeLessThanOrEqual(Math.max(...honestStamps))
    }
    chain.push({ block, hash })
  }
  expect(upTo).toBeGreaterThanOrEqual(run.joinedAt + HEIGHTS)
  return chain
}

/**
 * Each honest node refused B's proposals under its expected code, and under no other (an honest proposal
 * is never refused).
 */
async function expectRefused(run: Run, codes: Record<number, string>): Promise<void> {
  for (const [i, n] of run.honest.entries()) {
    const r = await refusals(n)
    expect(Object.keys(r), `node ${i} refusals ${JSON.stringify(r)}`).toEqual([codes[i]!])
    expect(r[codes[i]!]).toBeGreaterThan(0)
  }
}

const proposedBy = (chain: readonly Committed[], who: Address) =>
  chain.filter((c) => c.block.proposer === who)

describe('a Byzantine proposer (30 % of the power) among three honest real drivers', () => {
  it('sets its own clock: its future block times are refused (BAD_TIME); a quorum subset it picks stays between honest clocks', async () => {
    const net = network('byz-clock', 7727n)
    const variants: Variant[] = ['future-time', 'subset-time']
    const run = await startRun(net, variants, SKEW_MS)
    const byzAddr = addressOf(net.validators[B]!)
    // B's subset blocks are valid: wait for one of them to be committed too.
    await runHeights(run, variants, 2, () => committedBy(run.honest[0]!, byzAddr, run.joinedAt))
    const chain = await checkChain(run, net)
    expect(proposedBy(chain, byzAddr).length).toBeGreaterThan(0)
    await expectRefused(run, { 0: 'BAD_TIME', 1: 'BAD_TIME', 2: 'BAD_TIME' })
  })

  it('invents a fill of its own assignment: refused (FILL_INVALID, FILL_UNVERIFIED), never committed', async () => {
    const net = network('byz-fill', 7741n)
    const variants: Variant[] = ['invented-fill']
    const run = await startRun(net, variants)
    const byzAddr = addressOf(net.validators[B]!)
    // A validator that joins is offline (no new work) until a block's last commit carries its precommit.
    await waitFor('a committed last commit signed by B', () => carriesPrecommitOf(run.honest[0]!, byzAddr))
    // Intents reach every pool (as gossip would carry them); the router gives B its share.
    const user = wallet()
    for (let k = 0; k < 8; k++) {
      const { id, order, intent } = await makeIntent(user, { destinationChainIds: [901n, 902n] })
      for (const n of run.bus.running()) await n.pool.add({ id, order, signature: intent.signature })
    }
    await runHeights(run, variants, 2)
    const chain = await checkChain(run, net)
    const assignedToB = chain.flatMap((c) => c.block.assignments).filter((a) => a.executor === byzAddr)
    expect(assignedToB.length).toBeGreaterThan(0)
    await expectRefused(run, { 0: 'FILL_INVALID', 1: 'FILL_INVALID', 2: 'FILL_UNVERIFIED' })
  })

  it('strips its last commit below 2/3 or rewrites a signer’s vote extension: refused (BAD_LAST_COMMIT)', async () => {
    const net = network('byz-commit', 7757n, DOWN_OBSERVER)
    const variants: Variant[] = ['stripped-commit', 'forged-extension']
    const run = await startRun(net, variants)
    await runHeights(run, variants, 2)
    const chain = await checkChain(run, net)
    // What the down observer signed is what every block carries for it: the rollup down.
    const observer = addressOf(net.validators[DOWN_OBSERVER]!)
    for (const { block } of chain) {
      for (const p of block.lastCommit?.precommits ?? []) {
        if (p.validator !== observer) continue
        const o = decodeObservations(p.extension).find((x) => x.chainId === WATCHED_CHAIN)
        expect(o?.status, `observation of ${observer} at height ${block.height}`).toBe(STATUS_DOWN)
      }
    }
    await expectRefused(run, { 0: 'BAD_LAST_COMMIT', 1: 'BAD_LAST_COMMIT', 2: 'BAD_LAST_COMMIT' })
  })

  it('omits its last commit or carries the commit of another block: refused (BAD_LAST_COMMIT)', async () => {
    const net = network('byz-nocommit', 7789n)
    const variants: Variant[] = ['no-commit', 'other-commit']
    const run = await startRun(net, variants)
    await runHeights(run, variants, 2)
    await checkChain(run, net)
    await expectRefused(run, { 0: 'BAD_LAST_COMMIT', 1: 'BAD_LAST_COMMIT', 2: 'BAD_LAST_COMMIT' })
  })
})

/** True once a block after `from` proposed by `who` is committed on `node`. */
async function committedBy(node: BusNode, who: Address, from: bigint): Promise<boolean> {
  for (let h = from + 1n; h <= node.driver.height; h++) {
    const b = await node.driver.getBlock(h)
    if (b !== undefined && decodeBlock(b.bytes).proposer === who) return true
  }
  return false
}

/** True when the head block on `node` carries a precommit of `who` in its last commit. */
async function carriesPrecommitOf(node: BusNode, who: Address): Promise<boolean> {
  const head = await node.driver.getBlock(node.driver.height)
  return (
    head !== undefined &&
    (decodeBlock(head.bytes).lastCommit?.precommits ?? []).some((p) => p.validator === who)
  )
}
