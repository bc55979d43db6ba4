/**
 * Blocks with account messages, stake moves and evidence for tests of the stake book through consensus:
 * each block is proposed by `proposeBlock` over a last commit that the validators who decided the head
 * really sign (their timestamps are the block's BFT time, one second after the parent), checked by
 * `validateBlock`, and applied by `apply` only when valid. Who proposes and signs follows the state: the
 * members of `commitPowers` whose keys the test holds sign, the first member of `consensusSet` that is not
 * jailed (any, when all are) proposes, so validators created by a CreateValidator take part once the set has them.
 */
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Address, Hex } from 'viem'
import type { Block, SignedStakeMove, VoteEvidence } from '../../src/consensus/block.ts'
import { parseGenesis } from '../../src/node/genesis.ts'
import type { AccountMessage } from '../../src/staking/validators.ts'
import { apply } from '../../src/state/apply.ts'
import { proposeBlock } from '../../src/state/propose.ts'
import type { AppGenesis, AppState } from '../../src/state/types.ts'
import { type BlockVerdict, validateBlock } from '../../src/state/validate.ts'
import { type CommitSigner, commitFor } from './commit.ts'

/** A deterministic secp256k1 private key for test account `i` (i >= 1). */
export const testKey = (i: number): Hex => `0x${(BigInt(i) * 7919n + 13n).toString(16).padStart(64, '0')}`

/** What a stake test genesis names; addresses and amounts as the genesis file spells them. */
export interface StakeGenesisSpec {
  readonly networkId: string
  /** The test's clock, unix milliseconds: the genesis is 100 s older. */
  readonly nowMs: number
  /** The genesis validators, each with 100 of stake. */
  readonly validators: readonly { readonly address: string }[]
  /** Their peer ids, in order. */
  readonly peerIds: readonly string[]
  /** Their pools, in order (default 901 and 902 for each). */
  readonly pools?: readonly (readonly number[])[]
  readonly delegations?: readonly { delegator: string; validator: string; amount: string; chainId: number }[]
  readonly accounts: readonly { address: string; balance: string }[]
  /** Staking and epoch parameters over the base ones (500 ms blocks, 30 s clock skew and fill timeout). */
  readonly params: Record<string, unknown>
}

/** A parsed genesis with three rollups (901 optimistic, 902 and 903 zk) and `spec`'s stake. */
export function stakeTestGenesis(spec: StakeGenesisSpec): AppGenesis {
  return parseGenesis({
    networkId: spec.networkId,
    genesisTime: spec.nowMs / 1000 - 100,
    validators: spec.validators.map((v, i) => ({
      address: v.address,
      peerId: spec.peerIds[i]!,
      stake: '100',
      pools: spec.pools?.[i] ?? [901, 902],
    })),
    delegations: spec.delegations ?? [],
    accounts: spec.accounts,
    rollups: [
      { chainId: 901, name: 'alpha', type: 'optimistic', securityBps: 8000 },
      { chainId: 902, name: 'beta', type: 'zk', securityBps: 9500 },
      { chainId: 903, name: 'gamma', type: 'zk', securityBps: 9500 },
    ],
    params: {
      maxClockSkewSec: 30,
      blockIntervalMs: 500,
      healthFreshnessMs: 5000,
      fillTimeoutSec: 30,
      ...spec.params,
    },
  })
}

/** The libp2p peer id (string form) of the Ed25519 key whose 32-byte seed is filled with `seed`. */
export async function ed25519PeerId(seed: number): Promise<string> {
  const key = await generateKeyPairFromSeed('Ed25519', new Uint8Array(32).fill(seed))
  return peerIdFromPrivateKey(key).toString()
}

/** What one block carries besides its commit. */
export interface StakeStepOptions {
  /** Pending account messages offered to the proposer (it keeps those valid in block order). */
  readonly accountMessages?: readonly AccountMessage[]
  /** Pending stake moves offered to the proposer. */
  readonly stakeMoves?: readonly SignedStakeMove[]
  readonly evidence?: readonly VoteEvidence[]
  /** Changes the proposed block before it is validated (to build blocks no honest proposer makes). */
  readonly tamper?: (b: Block) => Block
}

export interface StakeStep {
  /** What `proposeBlock` built. */
  readonly proposed: Block
  /** What was validated (the proposed block, tampered). */
  readonly block: Block
  readonly verdict: BlockVerdict
  /** The state after the block when it is valid, else the state it was built on. */
  readonly state: AppState
}

/** The next block on `state`, proposed, validated and (when valid) applied. `keys` by lowercase address. */
export async function stakeStep(
  state: AppState,
  keys: ReadonlyMap<Address, CommitSigner>,
  o: StakeStepOptions = {},
): Promise<StakeStep> {
  const time = state.lastBlockTime + 1000
  const signers = [...state.commitPowers.keys()]
    .sort()
    .map((a) => keys.get(a))
    .filter((k): k is CommitSigner => k !== undefined)
  const lastCommit = state.height === 0n ? null : await commitFor(state, signers, { timestampMs: time })
  const jailed = new Set(state.validators.filter((v) => v.jailed).map((v) => v.address))
  // Jailed members are skipped as proposers, unless every member is (then no one is: consensus/proposer.ts).
  const members = [...state.consensusSet.keys()].sort().filter((a) => keys.has(a))
  const proposer = members.find((a) => !jailed.has(a)) ?? members[0]
  if (proposer === undefined) throw new Error('stakeStep: no key of a member of the set')
  const proposed = proposeBlock(state, [], lastCommit, [], time, {
    proposer,
    round: 0,
    accountMessages: o.accountMessages ?? [],
    stakeMoves: o.stakeMoves ?? [],
    evidence: o.evidence ?? [],
  })
  const block = o.tamper?.(proposed) ?? proposed
  const verdict = await validateBlock(state, block, { nowMs: time, verifyFill: async () => 'valid' })
  return { proposed, block, verdict, state: verdict.ok ? apply(state, block).state : state }
}

/** {@link stakeStep}, throwing when the block is not valid; the state after it. */
export async function stakeBlock(
  state: AppState,
  keys: ReadonlyMap<Address, CommitSigner>,
  o: StakeStepOptions = {},
): Promise<AppState> {
  const r = await stakeStep(state, keys, o)
  if (!r.verdict.ok) throw new Error(`block ${r.block.height}: ${r.verdict.code}: ${r.verdict.message}`)
  return r.state
}
