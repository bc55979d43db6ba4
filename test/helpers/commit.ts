/**
 * Last commits for unit tests of the state machine: the precommits of (some of) the validators for the
 * head of a state, signed with the real `signVote`, each with a timestamp and a vote extension made of
 * rollup observations (`encodeObservations`), exactly as the driver collects them. Also the empty first
 * block: nothing is routed at height 1 (no last commit: every rollup is down), so routing tests start
 * from a height-1 state whose next block carries a commit.
 */
import type { Address } from 'viem'
import { type Block, type CommitCertificate, certificateFromVotes } from '../../src/consensus/block.ts'
import { signVote } from '../../src/consensus/votes.ts'
import type { SignedFill } from '../../src/rollups/fill.ts'
import { encodeObservations, type Observation } from '../../src/rollups/observation.ts'
import { apply } from '../../src/state/apply.ts'
import { type PendingIntent, type ProposeOptions, proposeBlock } from '../../src/state/propose.ts'
import type { AppState } from '../../src/state/types.ts'

/** What signs a precommit (a viem account or the node's fastAccount). */
export type CommitSigner = Parameters<typeof signVote>[0]

/** A healthy rollup as a validator sees it: 1/3 of the gas used, 1 gwei base fee, 1 s blocks. */
export function observation(chainId: bigint, over: Partial<Observation> = {}): Observation {
  return {
    chainId,
    status: 0,
    blockNumber: 100n,
    gasUsed: 10_000_000n,
    gasLimit: 30_000_000n,
    baseFeeWei: 1_000_000_000n,
    blockTimeMs: 1000,
    latencyMs: 20,
    ...over,
  }
}

/** What the precommits of a commit say. Validators are named by their index in `signers`. */
export interface CommitSpec {
  /** Each signer's clock: one value for all, or one per signer. Default: parent time + 1000. */
  readonly timestampMs?: number | readonly number[]
  /** (signer index, chain id): that signer observes that chain down. */
  readonly down?: ReadonlyArray<readonly [number, bigint]>
  /** Signer indexes whose precommit is not in the commit. */
  readonly omit?: readonly number[]
  /** Signer indexes whose precommit carries no extension (a node that measures nothing). */
  readonly silent?: readonly number[]
  /** Changes to one signer's observation of one chain (gas figures, base fee, ...). */
  readonly observe?: (index: number, chainId: bigint) => Partial<Observation> | undefined
  /** Default 0. */
  readonly round?: number
}

/** The observations signer `index` reports under `spec`: every rollup of the state. */
export function observationsOf(state: AppState, index: number, spec: CommitSpec = {}): Observation[] {
  if (spec.silent?.includes(index)) return []
  return state.rollups.map((r) => {
    const chainId = BigInt(r.chainId)
    const isDown = spec.down?.some(([i, c]) => i === index && c === chainId) ?? false
    return observation(chainId, { ...(isDown ? { status: 2 } : {}), ...spec.observe?.(index, chainId) })
  })
}

function stampOf(state: AppState, index: number, spec: CommitSpec): number {
  const t = spec.timestampMs
  if (t === undefined) return state.lastBlockTime + 1000
  if (typeof t === 'number') return t
  const v = t[index]
  if (v === undefined) throw new Error(`commit: no timestamp for signer ${index}`)
  return v
}

/**
 * The commit of `state`'s head (height `state.height`, `state.lastBlockHash`) signed by `signers` minus
 * `spec.omit`, as the next block carries it (precommits sorted by validator).
 */
export async function commitFor(
  state: AppState,
  signers: readonly CommitSigner[],
  spec: CommitSpec = {},
): Promise<CommitCertificate> {
  const votes = await Promise.all(
    signers
      .map((account, index) => ({ account, index }))
      .filter(({ index }) => !spec.omit?.includes(index))
      .map(({ account, index }) =>
        signVote(account, state.networkId, {
          kind: 'precommit',
          height: state.height,
          round: spec.round ?? 0,
          blockHash: state.lastBlockHash,
          timestampMs: stampOf(state, index, spec),
          extension: encodeObservations(observationsOf(state, index, spec)),
        }),
      ),
  )
  return certificateFromVotes(votes)
}

/** The address a precommit names (lowercase). */
export const signerAddress = (s: CommitSigner): Address => s.address.toLowerCase() as Address

/** The empty block 1 on a genesis state at `nowMs` (no last commit), and the state after it. */
export function firstBlock(
  genesis: AppState,
  proposer: CommitSigner,
  nowMs: number,
): { block: Block; state: AppState } {
  if (genesis.height !== 0n) throw new Error(`firstBlock on a state at height ${genesis.height}`)
  const block = proposeBlock(genesis, [], null, [], nowMs, { proposer: signerAddress(proposer), round: 0 })
  return { block, state: apply(genesis, block).state }
}

/**
 * The next block on `state` carrying the commit `spec` describes, and the state after it: at height 1,
 * no commit (then `spec` is unused and the block's time is `nowMs`).
 */
export async function nextBlock(
  state: AppState,
  signers: readonly CommitSigner[],
  spec: CommitSpec = {},
  opts: Partial<ProposeOptions> & {
    nowMs?: number
    pending?: readonly PendingIntent[]
    fills?: readonly SignedFill[]
  } = {},
): Promise<{ block: Block; state: AppState; lastCommit: CommitCertificate | null }> {
  const lastCommit = state.height === 0n ? null : await commitFor(state, signers, spec)
  const { nowMs, pending, fills, ...propose } = opts
  const time = nowMs ?? state.lastBlockTime + 1000
  const block = proposeBlock(state, pending ?? [], lastCommit, fills ?? [], time, {
    proposer: signerAddress(signers[0]!),
    round: 0,
    ...propose,
  })
  return { block, state: apply(state, block).state, lastCommit }
}
