/**
 * Settlement test helpers: headers, leaves, settlement trees and commit proofs built exactly as
 * docs/settlement.md fixes them, with precommits signed by the node's own code (src/consensus/votes.ts),
 * so a contract test proves the contracts accept the node's signatures.
 *
 * Header hash and leaf encoding are the node's own; the tree is OpenZeppelin's library, so a contract
 * test also checks the node's layout against the library's (test/settlement.test.ts compares them too).
 */
import { StandardMerkleTree } from '@openzeppelin/merkle-tree'
import { type Address, encodeAbiParameters, type Hex, keccak256, type LocalAccount, stringToHex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { type BlockHeader, HEADER_ABI, headerHash } from '../../src/consensus/block.ts'
import { extensionHash, signVote } from '../../src/consensus/votes.ts'
import { murmurLightClientAbi, murmurSettlerAbi } from '../../src/contracts/abi.ts'
import { LEAF_ENCODING } from '../../src/state/settlement.ts'

/** The network id every contract test signs under. */
export const TEST_NETWORK_ID = 'murmur-contracts-test'

/** A block header, typed as viem passes the Solidity struct (the node's own type). */
export type Header = BlockHeader

/** The Header struct as an ABI parameter: the node's own (src/consensus/block.ts). */
export { HEADER_ABI }

/** `keccak256(abi.encode(header))`: the block hash precommits sign, as the node computes it. */
export function hashHeader(header: Header): Hex {
  return headerHash(header)
}

/** A settlement leaf (the Solidity `Leaf` struct). */
export interface Leaf {
  kind: number
  orderId: Hex
  originChainId: bigint
  destinationChainId: bigint
  executor: Address
  token: Address
  amount: bigint
  recipient: Address
}

/** StandardMerkleTree leaf encoding of every leaf: the node's own (src/state/settlement.ts). */
export { LEAF_ENCODING }

export const KIND_FILL = 1
export const KIND_REFUND = 2

type LeafTuple = [number, Hex, bigint, bigint, Address, Address, bigint, Address]
const leafTuple = (l: Leaf): LeafTuple => [
  l.kind,
  l.orderId,
  l.originChainId,
  l.destinationChainId,
  l.executor,
  l.token,
  l.amount,
  l.recipient,
]

/** A settlement tree over `leaves`: its root and one proof per leaf, in the leaves' order. */
export function settlementTree(leaves: readonly Leaf[]): { root: Hex; proofs: Hex[][] } {
  if (leaves.length === 0) return { root: `0x${'00'.repeat(32)}`, proofs: [] }
  const tree = StandardMerkleTree.of(leaves.map(leafTuple), [...LEAF_ENCODING])
  return { root: tree.root as Hex, proofs: leaves.map((_, i) => tree.getProof(i) as Hex[]) }
}

/** A validator set: accounts ascending by address, with their powers. */
export interface ValidatorSet {
  accounts: LocalAccount[]
  validators: Address[]
  powers: bigint[]
  hash: Hex
}

/** `keccak256(abi.encode(address[] validators, uint256[] powers))`. */
export function validatorsHash(validators: readonly Address[], powers: readonly bigint[]): Hex {
  return keccak256(
    encodeAbiParameters([{ type: 'address[]' }, { type: 'uint256[]' }], [[...validators], [...powers]]),
  )
}

/**
 * `n` deterministic validators (seeded by `seed`), sorted ascending; `powers(i)` is the power of the i-th
 * in ascending order (default 1 each).
 */
export function makeValidatorSet(
  n: number,
  seed: string,
  powers: (i: number) => bigint = () => 1n,
): ValidatorSet {
  const accounts = Array.from({ length: n }, (_, i) =>
    privateKeyToAccount(keccak256(stringToHex(`${seed}/${i}`))),
  )
  accounts.sort((a, b) => (BigInt(a.address) < BigInt(b.address) ? -1 : 1))
  const validators = accounts.map((a) => a.address.toLowerCase() as Address)
  const p = accounts.map((_, i) => powers(i))
  return { accounts, validators, powers: p, hash: validatorsHash(validators, p) }
}

/** The Solidity Precommit struct. */
export interface Precommit {
  validator: Address
  timestampMs: bigint
  extensionHash: Hex
  signature: Hex
}

/** Precommits of `signers` for `header` in `round`, signed with votes.ts `signVote`, ascending. */
export async function precommits(
  header: Header,
  signers: readonly LocalAccount[],
  round = header.round,
  networkId = TEST_NETWORK_ID,
): Promise<Precommit[]> {
  const blockHash = hashHeader(header)
  const out: Precommit[] = []
  for (const [i, account] of signers.entries()) {
    const extension = i % 2 === 0 ? new Uint8Array([1, 2, 3, i]) : undefined
    const v = await signVote(account, networkId, {
      kind: 'precommit',
      height: header.height,
      round,
      blockHash,
      timestampMs: Number(header.timeMs) + i,
      extension,
    })
    out.push({
      validator: v.validator,
      timestampMs: BigInt(v.timestampMs),
      extensionHash: extensionHash(v.extension),
      signature: v.signature,
    })
  }
  return out.sort((a, b) => (BigInt(a.validator) < BigInt(b.validator) ? -1 : 1))
}

/** The Solidity CommitProof struct. */
export interface CommitProof {
  header: Header
  certificate: { round: number; precommits: Precommit[] }
  validators: Address[]
  powers: bigint[]
}

/** A header of `set` at `height` committing `settlementRoot` (next set: the same unless given). */
export function makeHeader(
  set: ValidatorSet,
  height: bigint,
  settlementRoot: Hex,
  nextValidatorsHash: Hex = set.hash,
): Header {
  return {
    height,
    round: 0,
    timeMs: 1_700_000_000_000n + height * 1000n,
    proposer: set.validators[0]!,
    parentHash: keccak256(stringToHex(`parent/${height}`)),
    bodyHash: keccak256(stringToHex(`body/${height}`)),
    settlementRoot,
    validatorsHash: set.hash,
    nextValidatorsHash,
  }
}

/** A commit proof of `header` signed by `signers` (default: all of `set`). */
export async function commitProof(
  set: ValidatorSet,
  header: Header,
  signers: readonly LocalAccount[] = set.accounts,
): Promise<CommitProof> {
  return {
    header,
    certificate: { round: header.round, precommits: await precommits(header, signers) },
    validators: set.validators,
    powers: set.powers,
  }
}

/** The smallest prefix of equal-power signers above 2/3: floor(2n/3) + 1. */
export function quorumSize(n: number): number {
  return Math.floor((2 * n) / 3) + 1
}

/** The settler's ABI plus the light client's errors, which the settler's calls bubble up. */
export const settlerWithClientErrorsAbi = [
  ...murmurSettlerAbi,
  ...murmurLightClientAbi.filter((x) => x.type === 'error'),
] as const
