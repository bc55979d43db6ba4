/**
 * The one boundary between the consensus engine and the application, shaped like CometBFT's ABCI++
 * (PrepareProposal, ProcessProposal, ExtendVote, VerifyVoteExtension, FinalizeBlock, Commit).
 *
 * The driver knows blocks as bytes with a hash, validators as addresses with power, and the signed votes
 * it collects; the application knows what is inside a block (intents, fills, stake moves, health,
 * evidence) and owns its state and storage. Adding a kind of item to blocks touches the application,
 * never the engine. Everything a commit writes, the driver's own records included (the block store, the
 * pruned WAL), lands in one batch through `commit`.
 */
import type { Hex } from 'viem'
import type { BatchOp } from '../state/store.ts'
import type { CommitCertificate, VoteEvidence } from './block.ts'
import type { Validator, ValidatorId } from './types.ts'

/** The committed head the application holds (ABCI Info). */
export interface AppInfo {
  /** Last committed height (0 before the first block). */
  readonly height: bigint
  /** Hash of the last committed block (the genesis hash at height 0). */
  readonly lastBlockHash: Hex
  /** Time of the last committed block, unix milliseconds. */
  readonly lastBlockTime: number
  /** The validator set that decides `height + 1`, ordered by address. */
  readonly validators: readonly Validator[]
  /** Validators of that set skipped as proposers of `height + 1` (offline: missing from the last commits). */
  readonly offline: readonly ValidatorId[]
}

/** PrepareProposal: build the block this validator proposes at (`height`, `round`). */
export interface PrepareProposalRequest {
  readonly height: bigint
  readonly round: number
  /** Lowercase address of this validator. */
  readonly proposer: Hex
  /** This node's clock, unix milliseconds. */
  readonly nowMs: number
  /** Equivocations the engine saw (ABCI's misbehavior); the application decides which still apply. */
  readonly misbehavior: readonly VoteEvidence[]
  /**
   * The commit of `height - 1` as this node collected it: every precommit it holds for the decided block
   * (undefined at height 1). The block carries it (CometBFT's LastCommit).
   */
  readonly lastCommit?: CommitCertificate | undefined
  /**
   * The last commit as it stands once late precommits had their chance: resolves when the precommit of
   * every online validator is in or the engine's wait (`lastCommitWaitMs`) is over. An application that
   * does I/O first calls it after its I/O, so that the wait overlaps the I/O instead of adding to it.
   * Absent: use `lastCommit`.
   */
  readonly awaitLastCommit?: () => Promise<CommitCertificate | undefined>
}

export interface PreparedProposal {
  /** The encoded block. */
  readonly bytes: Uint8Array
  /**
   * True when the block changes more than the height (intents, fills, re-routings, evidence, stake
   * moves): the engine proposes such a block at once and waits for work before an empty one.
   */
  readonly hasWork: boolean
  /** The block's time, unix ms (this node's precommit for it is stamped later). */
  readonly time: number
}

/** ProcessProposal: is the proposed block valid(v)? */
export interface ProcessProposalRequest {
  readonly height: bigint
  readonly round: number
  readonly bytes: Uint8Array
  readonly hash: Hex
  /** The validator whose signed proposal carried it. */
  readonly proposer: Hex
  /** This node's clock, unix milliseconds. */
  readonly nowMs: number
}

export type ProcessProposalResponse =
  | { readonly accept: true; readonly time: number }
  | { readonly accept: false; readonly code: string; readonly message: string }

/** ExtendVote: what this validator attaches to its precommit for `hash` (empty: nothing). */
export interface ExtendVoteRequest {
  readonly height: bigint
  readonly round: number
  readonly hash: Hex
}

/** VerifyVoteExtension: is another validator's extension acceptable? */
export interface VerifyVoteExtensionRequest {
  readonly height: bigint
  readonly round: number
  readonly hash: Hex
  readonly validator: Hex
  readonly extension: Uint8Array
}

/** FinalizeBlock: a block that has a commit certificate (decided here, or fetched with its certificate). */
export interface FinalizeBlockRequest {
  readonly height: bigint
  readonly bytes: Uint8Array
  readonly hash: Hex
  readonly certificate: CommitCertificate
  /** 'consensus' when this node decided it; 'sync' when it came from a peer (header checks apply). */
  readonly source: 'consensus' | 'sync'
}

/**
 * The result of FinalizeBlock, held until `commit` writes it. `app` is the application's own
 * continuation (its next state and writes); the engine only reads the head and the next validator set.
 */
export interface FinalizedBlock {
  readonly height: bigint
  readonly hash: Hex
  /** Block time, unix milliseconds. */
  readonly time: number
  /** The validator set that decides `height + 1`. */
  readonly validators: readonly Validator[]
  /** Validators skipped as proposers of `height + 1`. */
  readonly offline: readonly ValidatorId[]
  readonly source: 'consensus' | 'sync'
  readonly app: unknown
}

export type FinalizeBlockResponse =
  | ({ readonly ok: true } & FinalizedBlock)
  | { readonly ok: false; readonly code: string; readonly message: string }

/** The application, as the consensus engine sees it. */
export interface Application {
  /** Loads the committed state (on start). */
  info(): Promise<AppInfo>
  prepareProposal(req: PrepareProposalRequest): Promise<PreparedProposal>
  processProposal(req: ProcessProposalRequest): Promise<ProcessProposalResponse>
  extendVote(req: ExtendVoteRequest): Promise<Uint8Array>
  verifyVoteExtension(req: VerifyVoteExtensionRequest): Promise<boolean>
  /** Executes the block over the committed state without writing anything. */
  finalizeBlock(req: FinalizeBlockRequest): Promise<FinalizeBlockResponse>
  /**
   * Writes the finalized block's changes and `engineOps` (block store, WAL pruning) in one batch, then
   * makes the new state current. A failed write rejects: the engine stops the node.
   */
  commit(block: FinalizedBlock, engineOps: readonly BatchOp[]): Promise<void>
  /**
   * The engine's head moved to the committed block (CometBFT publishes its commit events at this point):
   * listeners that read the engine's height see the new one.
   */
  afterCommit?(block: FinalizedBlock): void
}
