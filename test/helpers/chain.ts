/**
 * A chain of blocks built with the pure state functions, as consensus would: each block is proposed by
 * `proposeBlock` over the last commit, checked by `validateBlock`, applied by `apply`, and committed by
 * precommits that chosen validators really sign (their timestamps set the next block's BFT time). No
 * engine, no timers: who signs what, and when, is the test's choice.
 */
import type { Address, Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import {
  type Block,
  blockHash,
  type CommitCertificate,
  type SignedUnjail,
  type VoteEvidence,
} from '../../src/consensus/block.ts'
import { signVote } from '../../src/consensus/votes.ts'
import { apply } from '../../src/state/apply.ts'
import { proposeBlock } from '../../src/state/propose.ts'
import type { AppState } from '../../src/state/types.ts'
import { type BlockVerdict, validateBlock } from '../../src/state/validate.ts'

/** What a step of the chain carries and who commits it. */
export interface StepOptions {
  /** Validators whose precommits commit the block (the next block's last commit). */
  readonly signers: readonly PrivateKeyAccount[]
  readonly proposer: PrivateKeyAccount
  readonly evidence?: readonly VoteEvidence[]
  readonly unjails?: readonly SignedUnjail[]
  /** Milliseconds between the block's time and its precommits' timestamps (default 10 s). */
  readonly stepMs?: number
  /** Replaces fields of the proposed block before it is validated (to build invalid blocks). */
  readonly tamper?: (b: Block) => Block
}

export interface ChainStep {
  readonly block: Block
  readonly verdict: BlockVerdict
  readonly state: AppState
}

const addr = (a: PrivateKeyAccount) => a.address.toLowerCase() as Address

/** A chain from `genesis` (state at height 0) for `network`, the first block at `startMs`. */
export class TestChain {
  state: AppState
  lastCommit: CommitCertificate | null = null
  readonly #network: string
  #nowMs: number

  constructor(genesis: AppState, network: string, startMs: number) {
    this.state = genesis
    this.#network = network
    this.#nowMs = startMs
  }

  /** The block `proposeBlock` would build now, tampered, with its verdict; nothing is applied. */
  async propose(o: StepOptions): Promise<{ block: Block; verdict: BlockVerdict }> {
    const proposed = proposeBlock(this.state, [], this.lastCommit, [], this.#nowMs, {
      proposer: addr(o.proposer),
      round: 0,
      evidence: o.evidence ?? [],
      unjails: o.unjails ?? [],
    })
    const block = o.tamper?.(proposed) ?? proposed
    const verdict = await validateBlock(this.state, block, {
      nowMs: this.#nowMs,
      verifyFill: async () => 'valid',
    })
    return { block, verdict }
  }

  /** Proposes, validates and (when valid) applies and commits one block. */
  async step(o: StepOptions): Promise<ChainStep> {
    const { block, verdict } = await this.propose(o)
    if (!verdict.ok) return { block, verdict, state: this.state }
    const hash = blockHash(block)
    this.state = apply(this.state, block, hash).state
    const stamp = block.time + (o.stepMs ?? 10_000)
    const precommits = await Promise.all(
      [...o.signers]
        .sort((a, b) => (addr(a) < addr(b) ? -1 : 1))
        .map(async (v) => {
          const s = await signVote(v, this.#network, {
            kind: 'precommit',
            height: block.height,
            round: 0,
            blockHash: hash,
            timestampMs: stamp,
            extension: new Uint8Array(0),
          })
          return {
            validator: s.validator,
            signature: s.signature,
            timestampMs: stamp,
            extension: s.extension,
          }
        }),
    )
    this.lastCommit = { height: block.height, round: 0, blockHash: hash, precommits }
    this.#nowMs = stamp
    return { block, verdict, state: this.state }
  }

  /** `n` valid blocks; throws on the first one that is not. */
  async steps(n: number, o: StepOptions): Promise<AppState> {
    for (let i = 0; i < n; i++) {
      const r = await this.step(o)
      if (!r.verdict.ok) throw new Error(`block ${r.block.height}: ${r.verdict.code}: ${r.verdict.message}`)
    }
    return this.state
  }
}

/** Two precommits of `v` for different blocks at (`height`, `round`): double signing. */
export async function equivocation(
  v: PrivateKeyAccount,
  network: string,
  height: bigint,
  round = 0,
): Promise<VoteEvidence> {
  const body = { kind: 'precommit' as const, height, round }
  return {
    first: await signVote(v, network, { ...body, blockHash: `0x${'01'.repeat(32)}` as Hex }),
    second: await signVote(v, network, { ...body, blockHash: `0x${'02'.repeat(32)}` as Hex }),
  }
}
