/**
 * The black-box checks of the crash soak (scripts/soak-crash.ts, issue 13 item 5), over what the nodes'
 * HTTP APIs and the rollups' RPC answered: the blocks every node served (hash per height, the
 * precommits of their certificates, the evidence they carry), the validators' `tombstoned` flag, and
 * the settlers' `OutputFilled` events. Nothing here reads a node's memory or data directory.
 */
import { createPublicClient, type Hex, http, parseEventLogs } from 'viem'
import { murmurSettlerAbi } from '../src/contracts/abi.ts'
import type { Invariant } from './scenario-checks.ts'
import type { EscrowRollup } from './scenario-escrows.ts'

/** The parts of `GET /v1/blocks/:height` the soak judges. */
export interface BlockJson {
  height: string
  hash: string
  evidence: Array<{ validator: string }>
  lastCommit: CertificateJson | null
  certificate?: CertificateJson | null
}

/** A commit certificate as the API shows it: every precommit is for `blockHash` at (`height`, `round`). */
interface CertificateJson {
  height: string
  round: number
  blockHash: string
  precommits: Array<{ validator: string; signature: string }>
}

/** A block hash seen at a height, and which node served it first. */
interface Seen {
  hash: string
  node: number
  atMs: number
}

/**
 * Every block hash and every precommit the soak read, from any node, at any time. A second hash at a
 * height is a changed (or forked) block; a validator's precommits for two hashes at one (height, round)
 * is a double sign.
 */
export class BlockBook {
  readonly #hashes = new Map<number, Seen>()
  readonly conflicts: string[] = []
  /** `validator/height/round` -> block hash -> signatures seen. */
  readonly #votes = new Map<string, Map<string, Set<string>>>()
  /** Precommits of one validator for two hashes at one (height, round): equivocation. */
  readonly doubleSigns: string[] = []
  /**
   * Two signatures of one validator for the same hash at one (height, round): the vote was signed again
   * (say after a restart) instead of being sent again from the WAL.
   */
  readonly resigned: string[] = []
  /** Validators some block carried duplicate-vote evidence against. */
  readonly evidence = new Set<string>()
  blocksRead = 0

  get heights(): number {
    return this.#hashes.size
  }

  /** The highest height recorded. */
  get top(): number {
    let top = 0
    for (const h of this.#hashes.keys()) if (h > top) top = h
    return top
  }

  /** The recorded hash at `height`, if any. */
  hashAt(height: number): string | undefined {
    return this.#hashes.get(height)?.hash
  }

  /** One node's answer for one height (status or block): the first one recorded is the reference. */
  hash(height: number, hash: string, node: number, atMs = Date.now()): void {
    if (height < 1) return
    const prev = this.#hashes.get(height)
    if (prev === undefined) this.#hashes.set(height, { hash, node, atMs })
    else if (prev.hash !== hash && this.conflicts.length < 50)
      this.conflicts.push(
        `height ${height}: node ${prev.node} served ${prev.hash.slice(0, 12)} at ` +
          `${new Date(prev.atMs).toISOString()}, node ${node} ${hash.slice(0, 12)} at ${new Date(atMs).toISOString()}`,
      )
  }

  /** A whole block from one node: its hash, its certificates' precommits, its evidence. */
  block(b: BlockJson, node: number): void {
    this.blocksRead++
    const height = Number(b.height)
    this.hash(height, b.hash, node)
    for (const c of [b.lastCommit, b.certificate ?? null]) if (c !== null) this.#certificate(c, node)
    for (const e of b.evidence) this.evidence.add(e.validator.toLowerCase())
  }

  #certificate(c: CertificateJson, node: number): void {
    for (const p of c.precommits) {
      const key = `${p.validator.toLowerCase()}/${c.height}/${c.round}`
      const byHash = this.#votes.get(key) ?? new Map<string, Set<string>>()
      this.#votes.set(key, byHash)
      const sigs = byHash.get(c.blockHash) ?? new Set<string>()
      byHash.set(c.blockHash, sigs)
      sigs.add(p.signature)
      if (sigs.size === 1 && byHash.size === 2 && this.doubleSigns.length < 50)
        this.doubleSigns.push(
          `${key}: precommits for ${[...byHash.keys()].map((h) => h.slice(0, 12)).join(' and ')} (node ${node})`,
        )
      if (sigs.size === 2 && this.resigned.length < 50)
        this.resigned.push(
          `${key}: two signatures of the precommit for ${c.blockHash.slice(0, 12)} (node ${node})`,
        )
    }
  }

  /** Every recorded height, in order. */
  recordedHeights(): number[] {
    return [...this.#hashes.keys()].sort((a, b) => a - b)
  }
}

/** `no-block-changed`: every node serves, at every recorded height, the hash first recorded there. */
export function checkBlocksKept(
  book: BlockBook,
  finalHashes: ReadonlyArray<{ node: number; height: number; hash: string | null }>,
): Invariant {
  const name = 'no-block-changed'
  const missing = finalHashes.filter((f) => f.hash === null)
  const changed = finalHashes.filter((f) => f.hash !== null && f.hash !== book.hashAt(f.height))
  const problems = [
    ...book.conflicts,
    ...changed
      .slice(0, 10)
      .map((f) => `node ${f.node} height ${f.height}: ${f.hash} not ${book.hashAt(f.height)}`),
    ...missing.slice(0, 10).map((f) => `node ${f.node} has no block at ${f.height}`),
  ]
  if (book.heights === 0) return { name, passed: false, detail: 'no block was recorded' }
  if (problems.length > 0)
    return {
      name,
      passed: false,
      detail: `${book.conflicts.length} conflicts during the run, ${changed.length} changed and ${missing.length} missing at the end: ${problems.slice(0, 6).join('; ')}`,
    }
  const nodes = new Set(finalHashes.map((f) => f.node)).size
  return {
    name,
    passed: true,
    detail: `${book.heights} heights recorded during the run (1..${book.top}), all served unchanged by all ${nodes} nodes at the end`,
  }
}

/** `no-double-sign`: no two precommits of one validator at one (height, round), no evidence, no tombstone. */
export function checkNoDoubleSign(
  book: BlockBook,
  validators: ReadonlyArray<{ node: number; rows: Array<{ address: string; tombstoned?: boolean }> | null }>,
): Invariant {
  const name = 'no-double-sign'
  const tombstoned = new Set<string>()
  for (const v of validators)
    for (const r of v.rows ?? []) if (r.tombstoned === true) tombstoned.add(r.address.toLowerCase())
  const problems = [
    ...book.doubleSigns,
    ...book.resigned,
    ...[...book.evidence].map((v) => `a block carries duplicate-vote evidence against ${v}`),
    ...[...tombstoned].map((v) => `${v} is tombstoned (slashed for double signing)`),
  ]
  const answered = validators.filter((v) => v.rows !== null).length
  if (answered === 0) return { name, passed: false, detail: 'no node answered GET /v1/validators' }
  if (problems.length > 0) return { name, passed: false, detail: problems.slice(0, 6).join('; ') }
  return {
    name,
    passed: true,
    detail: `${book.blocksRead} blocks read: no validator precommitted two hashes at one height and round, no evidence in any block, none tombstoned (${answered} nodes asked)`,
  }
}

/** Every `OutputFilled` of each rollup's settler, by order id. */
export async function readFills(
  rollups: readonly EscrowRollup[],
): Promise<Map<string, Array<{ chainId: number; tx: Hex }>>> {
  const out = new Map<string, Array<{ chainId: number; tx: Hex }>>()
  for (const r of rollups) {
    const client = createPublicClient({ transport: http(r.rpcUrl, { timeout: 10_000 }) })
    const logs = await client.getLogs({ address: r.settler, fromBlock: 0n, toBlock: 'latest' })
    for (const e of parseEventLogs({ abi: murmurSettlerAbi, logs, eventName: 'OutputFilled' })) {
      const id = e.args.orderId.toLowerCase()
      out.set(id, [...(out.get(id) ?? []), { chainId: r.chainId, tx: e.transactionHash }])
    }
  }
  return out
}

/** `no-double-fill`: no order filled more than once, on one rollup or across rollups. */
export function checkNoDoubleFill(
  fills: ReadonlyMap<string, Array<{ chainId: number; tx: Hex }>>,
): Invariant {
  const name = 'no-double-fill'
  const twice = [...fills].filter(([, f]) => f.length > 1)
  if (fills.size === 0) return { name, passed: false, detail: 'no OutputFilled event on any settler' }
  if (twice.length > 0)
    return {
      name,
      passed: false,
      detail: `${twice.length} orders filled more than once: ${twice
        .slice(0, 4)
        .map(([id, f]) => `${id.slice(0, 10)} on ${f.map((x) => x.chainId).join(',')}`)
        .join('; ')}`,
    }
  return { name, passed: true, detail: `${fills.size} orders filled, each exactly once` }
}

/** `no-lost-intents`: every intent answered 202 is known (`GET /v1/intents/:id` 200) on every node. */
export function checkIntentsEverywhere(
  accepted: readonly string[],
  lookups: ReadonlyMap<string, ReadonlyArray<{ node: number; result: string }>>,
  nodes: number,
): Invariant {
  const name = 'no-lost-intents'
  const lost = accepted.filter(
    (id) => (lookups.get(id) ?? []).filter((l) => l.result === 'known').length < nodes,
  )
  if (accepted.length === 0) return { name, passed: false, detail: 'no intent was accepted' }
  if (lost.length > 0) {
    const where = lost
      .slice(0, 4)
      .map(
        (id) =>
          `${id.slice(0, 10)} (${(lookups.get(id) ?? []).map((l) => `n${l.node}:${l.result}`).join(' ')})`,
      )
    return {
      name,
      passed: false,
      detail: `${lost.length} of ${accepted.length} accepted intents not known on every node: ${where.join('; ')}`,
    }
  }
  return { name, passed: true, detail: `all ${accepted.length} accepted intents known on all ${nodes} nodes` }
}
