/**
 * Epochs and validator-set hashes (ARCHITECTURE.md, Consensus: "The validator set changes only at epoch
 * boundaries; each header commits the hash of the set that signs it and of the next one").
 *
 * The consensus set (what quorums count, what proposer selection runs over) is `AppState.consensusSet`. It
 * changes only in a block whose height is a multiple of `params.epochBlocks`: the set that signs the next
 * heights is then taken from the validators as they stand before that block (not jailed, not tombstoned,
 * power > 0, with their power then), so the boundary block can commit its hash in `nextValidatorsHash`
 * without executing itself first (CometBFT's NextValidatorsHash is likewise known before the block).
 * Between boundaries jailing and slashing change stake and status, never the set or its powers: jailed
 * members keep voting, and are skipped as proposers and executors (plan.ts `skippedValidators`).
 */
import { type Address, encodeAbiParameters, type Hex, keccak256 } from 'viem'
import { type AppState, cmp } from './types.ts'

const hashes = new WeakMap<ReadonlyMap<Address, bigint>, Hex>()

/**
 * `keccak256(abi.encode(address[] validators, uint256[] powers))` with the addresses in ascending order
 * and `powers[i]` the power of `validators[i]`: what a Solidity light client computes with
 * `keccak256(abi.encode(validators, powers))`. Cached per set object (sets are immutable values).
 */
export function validatorSetHash(set: ReadonlyMap<Address, bigint>): Hex {
  let h = hashes.get(set)
  if (h === undefined) {
    const sorted = [...set].sort(([a], [b]) => cmp(a, b))
    h = keccak256(
      encodeAbiParameters(
        [{ type: 'address[]' }, { type: 'uint256[]' }],
        [sorted.map(([a]) => a), sorted.map(([, p]) => p)],
      ),
    )
    hashes.set(set, h)
  }
  return h
}

/** True when the block at `height` is the last of its epoch: the set changes after it. */
export function isEpochBoundary(state: Pick<AppState, 'params'>, height: bigint): boolean {
  return height % BigInt(state.params.epochBlocks) === 0n
}

/**
 * The consensus set chosen at a boundary: the validators not jailed, not tombstoned, with positive power
 * and a self-stake (their delegation to themselves) of at least `minSelfStake` (or the lower one a
 * validator was admitted at into alarmed pools), the `maxValidators` of
 * most power among them (ties: the lower address; staking/validators.ts `selectValidatorSet`), by
 * address. Should none be eligible, the current set stays (a network with no eligible validator could
 * never sign again).
 */
export function eligibleSet(state: AppState): ReadonlyMap<Address, bigint> {
  const self = new Map<Address, bigint>()
  for (const e of state.stake.delegations.values())
    if (e.delegator === e.validator) self.set(e.validator, (self.get(e.validator) ?? 0n) + e.amount)
  const candidates = state.validators.filter(
    (v) =>
      !v.jailed &&
      !v.tombstoned &&
      v.power > 0n &&
      (self.get(v.address) ?? 0n) >=
        (state.stake.validators.get(v.address)?.minSelfStake ?? state.stakeParams.minSelfStake),
  )
  candidates.sort((a, b) => cmp(b.power, a.power) || cmp(a.address, b.address))
  const next = new Map<Address, bigint>()
  for (const v of candidates.slice(0, state.stakeParams.maxValidators)) next.set(v.address, v.power)
  if (next.size === 0) return state.consensusSet
  const current = state.consensusSet
  if (next.size === current.size && [...next].every(([a, p]) => current.get(a) === p)) return current // same set: keep the object (its cached hash)
  return next
}

/** The set that signs the block after the one at `height` built on `state` (`state.height + 1 = height`). */
export function nextConsensusSet(state: AppState, height: bigint): ReadonlyMap<Address, bigint> {
  return isEpochBoundary(state, height) ? eligibleSet(state) : state.consensusSet
}

/** `validatorsHash` and `nextValidatorsHash` of the block at `height` on `state`. */
export function blockValidatorHashes(
  state: AppState,
  height: bigint,
): { validatorsHash: Hex; nextValidatorsHash: Hex } {
  return {
    validatorsHash: validatorSetHash(state.consensusSet),
    nextValidatorsHash: validatorSetHash(nextConsensusSet(state, height)),
  }
}
