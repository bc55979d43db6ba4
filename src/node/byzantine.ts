/**
 * TEST ONLY: a Byzantine validator built from the real node (issue 13, item 4). `--byzantine MODES` (a
 * comma list of {@link BYZANTINE_MODES}) is refused unless the environment also has
 * `MURMUR_TEST_BYZANTINE=1`, so that no operator turns it on by a typo. The misbehaviour lives here and
 * wraps the honest paths at four seams, so the honest code carries no `if (byzantine)`:
 *
 * - the application the consensus driver talks to (`wrapApp`): its `prepareProposal` builds the real block
 *   and tampers with it (bad-assign, bad-fill), its `extendVote` lies about rollups (lie-health);
 * - the consensus broadcast (`wrapBroadcast`): drops its own votes (withhold), or sends with each vote a
 *   second one of the same height, round and kind for another block, and with each proposal a second
 *   proposal of another block (equivocate);
 * - the host the rollups service publishes health reports through (`wrapHealthHost`): invented reports,
 *   re-signed (lie-health);
 * - the path the executor announces its fills by (`wrapFillPublish`, withhold-fills): its own fills are
 *   made on chain and never announced, nor made pending here (what a crash between the fill and its
 *   announcement, or a lost gossip message, leaves); fills of others it relays go out;
 * - the listeners that claim and relay refunds as blocks commit (`fastSettlement`, no-fast-settlement):
 *   dropped, and the claim relayer's start rescan with them, so every escrow is left to the settlement
 *   sweep (what a node whose fast paths all failed leaves; not misbehaviour, a fault);
 * - the WAL before consensus starts (`forgetWal`, fork-after-restart): the node's record of what it signed
 *   is deleted, as if the disk were lost, and once running it signs, for every vote it had recorded, a
 *   vote of the same height, round and kind for another block (the double sign a validator without its
 *   last-signed state commits).
 */
import { rm } from 'node:fs/promises'
import type { Logger } from 'pino'
import { type Address, type Hex, keccak256, type LocalAccount, toHex } from 'viem'
import type { MurmurApplication } from '../app/application.ts'
import type { Application, PreparedProposal, PrepareProposalRequest } from '../consensus/abci.ts'
import {
  type Block,
  blockHashOfBytes,
  type CommitCertificate,
  decodeBlock,
  encodeBlock,
} from '../consensus/block.ts'
import type { ConsensusMessage } from '../consensus/messages.ts'
import { signProposal, signVote, type VoteBody } from '../consensus/votes.ts'
import { ConsensusWal, type WalEntry } from '../consensus/wal.ts'
import { type SignedFill, signFill } from '../rollups/fill.ts'
import { type SignedHealthReport, signHealthReport } from '../rollups/health-report.ts'
import { decodeExtension, encodeExtension } from '../rollups/observation.ts'
import type { BatchOp, Store } from '../state/store.ts'
import type { ByzantineMode } from './byzantine-modes.ts'

export { BYZANTINE_ENV, BYZANTINE_MODES, type ByzantineMode, parseByzantineModes } from './byzantine-modes.ts'

/** The misbehaviours `--byzantine` takes. */
/** The executor bad-assign routes to: no validator has this address. */
export const NO_SUCH_EXECUTOR: Address = '0x00000000000000000000000000000000000b1a5e'
/** The transaction hash of bad-fill's invented fills: no rollup holds it. */
export const INVENTED_FILL_TX: Hex = keccak256(toHex('murmur byzantine: a fill that never happened'))
/** Added to every head a lying health report names: heads no rollup has reached. */
export const INVENTED_HEAD_OFFSET = 1_000_000n
const STATUS_DOWN = 2 as const

export interface ByzantineModules {
  account: Pick<LocalAccount, 'address' | 'signTypedData'>
  networkId: string
  /** The rollup lie-health reports down (a healthy one); the others get invented heads. */
  targetChainId: bigint
  log: Logger
}

/** A block hash no block has: the other side of an equivocation. */
function forkOf(hash: Hex | null, salt: string): Hex {
  return keccak256(toHex(`murmur byzantine fork ${salt} ${hash ?? 'nil'}`))
}

/** The misbehaviour of one node; see the module comment. */
export class Byzantine {
  readonly modes: ReadonlySet<ByzantineMode>
  readonly #m: ByzantineModules
  readonly #log: Logger
  readonly #self: Address
  /** Counts of what was done, by kind (logged, for the test's diagnosis). */
  readonly done = new Map<string, number>()
  /** The votes fork-after-restart found in the WAL it deleted. */
  #forgotten: WalEntry[] = []
  #turn = 0

  constructor(modes: ReadonlySet<ByzantineMode>, modules: ByzantineModules) {
    this.modes = modes
    this.#m = modules
    this.#log = modules.log.child({ module: 'byzantine' })
    this.#self = modules.account.address.toLowerCase() as Address
    this.#log.warn({ modes: [...modes] }, 'TEST ONLY: this node misbehaves on purpose (--byzantine)')
  }

  #count(what: string, extra: Record<string, unknown> = {}): void {
    const n = (this.done.get(what) ?? 0) + 1
    this.done.set(what, n)
    this.#log.info({ what, n, ...extra }, 'byzantine act')
  }

  /** The application as the driver sees it: tampered blocks, lying vote extensions. */
  wrapApp(inner: MurmurApplication): Application {
    if (!this.modes.has('bad-assign') && !this.modes.has('bad-fill') && !this.modes.has('lie-health'))
      return inner
    const lie = this.modes.has('lie-health')
    return overriding<Application>(inner, {
      prepareProposal: (req) => this.tamper(inner, req),
      extendVote: async (req) => {
        const real = await inner.extendVote(req)
        return lie ? this.lieInExtension(real) : real
      },
    })
  }

  /** The consensus broadcast: withheld votes, equivocations. */
  wrapBroadcast(send: (msg: ConsensusMessage) => Promise<void>): (msg: ConsensusMessage) => Promise<void> {
    const withhold = this.modes.has('withhold')
    const equivocate = this.modes.has('equivocate')
    if (!withhold && !equivocate) return send
    return async (msg) => {
      const own = (msg.type === 'vote' ? msg.vote.validator : msg.proposal.validator) === this.#self
      if (!own) return send(msg)
      if (msg.type === 'vote' && withhold) {
        this.#count('withheld vote', { height: msg.vote.height, kind: msg.vote.kind })
        return
      }
      await send(msg)
      if (!equivocate) return
      const twin = await this.#twin(msg)
      if (twin === undefined) return
      await send(twin)
      this.#count(`equivocated ${msg.type === 'vote' ? msg.vote.kind : 'proposal'}`, {
        height: msg.type === 'vote' ? msg.vote.height : msg.proposal.height,
      })
    }
  }

  /** A message conflicting with `msg`: same height, round (and kind), another block. */
  async #twin(msg: ConsensusMessage): Promise<ConsensusMessage | undefined> {
    const { account, networkId } = this.#m
    if (msg.type === 'vote') {
      const v = msg.vote
      // A precommit for a block carries its extension; the twin keeps it (honest nodes check only its
      // form). A nil precommit has none to keep: its twin is not sent, its prevote's twin suffices.
      if (v.kind === 'precommit' && v.blockHash === null) return undefined
      const vote = await signVote(account, networkId, { ...v, blockHash: forkOf(v.blockHash, 'vote') })
      return { type: 'vote', vote }
    }
    // Another block of the same height: the real one with its time moved by a millisecond.
    const block = decodeBlock(msg.block)
    const bytes = encodeBlock({ ...block, time: block.time + 1 })
    const p = msg.proposal
    const proposal = await signProposal(account, networkId, {
      height: p.height,
      round: p.round,
      validRound: p.validRound,
      blockHash: blockHashOfBytes(bytes),
    })
    return { type: 'proposal', proposal, block: bytes }
  }

  /** withhold-fills: the executor's own fills are dropped instead of announced (see the module comment). */
  wrapFillPublish(
    publish: (fill: SignedFill) => Promise<void>,
  ): ((fill: SignedFill) => Promise<void>) | undefined {
    if (!this.modes.has('withhold-fills')) return undefined
    return async (fill) => {
      if (fill.fill.executor !== this.#self) return publish(fill)
      this.#count('withheld fill', { intentId: fill.fill.intentId, txHash: fill.fill.txHash })
    }
  }

  /** Whether this node claims and relays refunds as blocks commit (false with no-fast-settlement). */
  get fastSettlement(): boolean {
    return !this.modes.has('no-fast-settlement')
  }

  /** The host the rollups service publishes through: health reports are invented and re-signed. */
  wrapHealthHost<H extends object>(host: H): H {
    if (!this.modes.has('lie-health')) return host
    const inner = host as unknown as { publish(topic: string, payload: unknown): Promise<number> }
    const send = (topic: string, payload: unknown) => inner.publish.call(host, topic, payload)
    const publish = async (topic: string, payload: unknown): Promise<number> => {
      if (topic !== 'health') return send(topic, payload)
      const r = (payload as SignedHealthReport).report
      const report =
        r.chainId === this.#m.targetChainId
          ? { ...r, status: STATUS_DOWN }
          : { ...r, blockNumber: r.blockNumber + INVENTED_HEAD_OFFSET }
      const signed = await signHealthReport(this.#m.account, this.#m.networkId, report)
      this.#count('lying health report', { chainId: String(r.chainId) })
      return send(topic, signed)
    }
    return overriding(host, { publish } as unknown as Partial<H>)
  }

  /**
   * fork-after-restart, before consensus starts: deletes the node's WAL and its journal (what it signed,
   * as if the disk were lost) and keeps its votes for {@link signForks}.
   */
  async forgetWal(store: Store, journal?: string): Promise<void> {
    if (!this.modes.has('fork-after-restart')) return
    if (journal !== undefined) {
      // Opening the WAL with its journal writes back what only the journal held (a kill before LevelDB's
      // write), so the rows below are all it signed.
      const opened = new ConsensusWal(store, { journal })
      await opened.open()
      await opened.close()
    }
    const rows = await store.range<Uint8Array>('wal', { gte: '', lt: '\uffff', limit: 100_000 })
    const heights = new Set(rows.map(([k]) => BigInt(`0x${k.slice(0, 16)}`)))
    const wal = new ConsensusWal(store)
    for (const h of heights) this.#forgotten.push(...(await wal.load(h)))
    const ops: BatchOp[] = rows.map(([key]) => ({ type: 'del', sublevel: 'wal', key }))
    await store.batch(ops, { sync: true })
    // The journal holds copies of the latest entries: it goes too, or it would bring them back.
    if (journal !== undefined) await rm(journal, { force: true })
    this.#log.warn(
      { entries: rows.length, votes: this.#forgotten.filter((e) => e.record.type === 'vote').length },
      'deleted the consensus WAL (fork-after-restart)',
    )
  }

  /**
   * fork-after-restart, once running: votes for blocks that do not exist at the (height, round, kind) of
   * every vote the deleted WAL held, or, when it held none (the node had committed the height it last
   * voted on), of its precommit in the certificate of its head block `head`. They are sent `times` times,
   * `everyMs` apart, each time for another block: the peers see two signatures of the node for different
   * blocks at a height it had signed, which is what a validator that lost its last-signed state does.
   * Resolves when done or `stopped()` says so.
   */
  async signForks(
    send: (msg: ConsensusMessage) => Promise<void>,
    head: CommitCertificate | undefined,
    opts: { times: number; everyMs: number; stopped: () => boolean },
  ): Promise<void> {
    const signed: VoteBody[] = this.#forgotten.flatMap((e) =>
      e.record.type === 'vote'
        ? [
            {
              kind: e.record.vote.kind,
              height: BigInt(e.record.vote.height),
              round: e.record.vote.round,
              blockHash: e.record.vote.value as Hex | null,
              extension: e.extension ?? new Uint8Array(0),
            },
          ]
        : [],
    )
    const own = head?.precommits.find((p) => p.validator === this.#self)
    if (signed.length === 0 && head !== undefined && own !== undefined)
      signed.push({
        kind: 'precommit',
        height: head.height,
        round: head.round,
        blockHash: head.blockHash,
        extension: own.extension,
      })
    this.#log.warn(
      { votes: signed.length },
      'signing forks of what this validator signed before (fork-after-restart)',
    )
    for (let i = 0; i < opts.times && signed.length > 0 && !opts.stopped(); i++) {
      for (const v of signed) {
        // A precommit for a block carries an extension: the one it signed before.
        if (v.kind === 'precommit' && (v.extension?.length ?? 0) === 0) continue
        const vote = await signVote(this.#m.account, this.#m.networkId, {
          ...v,
          blockHash: forkOf(v.blockHash, `restart ${i}`),
          timestampMs: Date.now(),
          extension: v.kind === 'precommit' ? v.extension! : new Uint8Array(0),
        })
        await send({ type: 'vote', vote })
        this.#count('forked vote after restart', { height: v.height, round: v.round, kind: v.kind })
      }
      await new Promise<void>((r) => setTimeout(r, opts.everyMs).unref())
    }
  }

  /** bad-assign / bad-fill: the real block, tampered where the modes and the block allow it. */
  async tamper(inner: MurmurApplication, req: PrepareProposalRequest): Promise<PreparedProposal> {
    const real = await inner.prepareProposal(req)
    const b = decodeBlock(real.bytes)
    const tampers: Array<() => Promise<Block | undefined>> = []
    if (this.modes.has('bad-assign')) tampers.push(async () => this.#badAssign(b))
    if (this.modes.has('bad-fill')) tampers.push(() => this.#badFill(inner, b))
    for (let i = 0; i < tampers.length; i++) {
      const k = (this.#turn + i) % tampers.length
      const out = await tampers[k]!()
      if (out === undefined) continue
      this.#turn = k + 1
      return { bytes: encodeBlock(out), hasWork: true, time: out.time }
    }
    return real
  }

  /** Every new assignment of the block to an executor that does not exist. */
  #badAssign(b: Block): Block | undefined {
    if (b.assignments.length === 0) return undefined
    this.#count('bad assignment', { height: b.height, n: b.assignments.length })
    return { ...b, assignments: b.assignments.map((a) => ({ ...a, executor: NO_SUCH_EXECUTOR })) }
  }

  /**
   * A fill that did not happen: for an open assignment (its own first), signed by itself, naming a
   * transaction no rollup holds; or its own real fill in the block re-signed with a wrong block hash.
   */
  async #badFill(inner: MurmurApplication, b: Block): Promise<Block | undefined> {
    const { account, networkId } = this.#m
    const own = b.fills.findIndex((f) => f.executor === this.#self)
    if (own >= 0 && this.#turn % 2 === 0) {
      const f = b.fills[own]!
      const wrong = { ...f, blockHash: forkOf(f.blockHash, 'rollup block') }
      const { fill, signature } = await signFill(account, networkId, {
        intentId: wrong.intentId,
        chainId: wrong.chainId,
        txHash: wrong.txHash,
        blockNumber: wrong.blockNumber,
        blockHash: wrong.blockHash,
        executor: wrong.executor,
      })
      this.#count('fill with a wrong block hash', { height: b.height, intentId: f.intentId })
      return { ...b, fills: b.fills.map((x, i) => (i === own ? { ...fill, signature } : x)) }
    }
    // Its own open assignment if it has one, else anyone's (it signs as the executor all the same).
    const busy = new Set(b.fills.map((x) => x.intentId))
    const open = [...inner.state.assignments.values()].filter((x) => !busy.has(x.intentId))
    const a = open.find((x) => x.executor === this.#self) ?? open[0]
    if (a === undefined) return undefined
    const { fill, signature } = await signFill(account, networkId, {
      intentId: a.intentId,
      chainId: a.chainId,
      txHash: INVENTED_FILL_TX,
      blockNumber: 7n,
      blockHash: forkOf(null, 'a rollup block that never held it'),
      executor: this.#self,
    })
    this.#count('invented fill', { height: b.height, intentId: a.intentId })
    const fills = [...b.fills, { ...fill, signature }].sort((x, y) => (x.intentId < y.intentId ? -1 : 1))
    return { ...b, fills }
  }

  /** lie-health in a vote extension: the target rollup down, invented heads for the others. */
  lieInExtension(extension: Uint8Array): Uint8Array {
    if (extension.length === 0) return extension
    const e = decodeExtension(extension)
    const observations = e.observations.map((o) =>
      o.chainId === this.#m.targetChainId
        ? { ...o, status: STATUS_DOWN }
        : { ...o, blockNumber: o.blockNumber + INVENTED_HEAD_OFFSET },
    )
    return encodeExtension({ ...e, observations })
  }
}

/**
 * `inner` with the methods of `over` in place of its own; every other call goes to `inner` itself (its
 * methods use private fields, so they are called on it, not on the proxy).
 */
function overriding<T extends object>(inner: T, over: Partial<T>): T {
  return new Proxy(inner, {
    get: (target, key) => {
      if (Object.hasOwn(over, key)) return over[key as keyof T]
      const value = Reflect.get(target, key, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}
