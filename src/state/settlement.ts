/**
 * Settlement leaves and roots (docs/settlement.md, "Leaves and the settlement root"): what a block commits
 * in `settlementRoot` so that a settler contract pays an executor (FILL) or a user (REFUND) against the
 * block's commit certificate, and the `CommitProof` values the contracts take.
 *
 * The tree is OpenZeppelin's StandardMerkleTree (`@openzeppelin/merkle-tree`, format standard-v1): leaf hash
 * `keccak256(keccak256(abi.encode(leaf)))`, leaves sorted by hash, nodes `keccak256(sorted pair)`, so
 * `MerkleProof.verify` checks a proof on chain. It is computed here with the node's WebAssembly keccak and
 * a hand-written encoding: the library takes about 650 ms for 1,024 leaves on this machine (pure-JS keccak
 * and a generic ABI encoder), too slow for a proposer and every validator at every height; this code takes
 * a few milliseconds and test/settlement.test.ts checks roots and proofs against the library.
 */
import type { Address, Hex } from 'viem'
import {
  type Block,
  type BlockFill,
  type BlockHeader,
  blockHeader,
  type CommitCertificate,
  decodeBlock,
  HEADER_TUPLE,
} from '../consensus/block.ts'
import { extensionHash } from '../consensus/votes.ts'
import { keccak256Bytes } from '../crypto/keccak.ts'
import { isEpochBoundary } from './epoch.ts'
import { fillSettles } from './plan.ts'
import { type BatchOp, heightKey } from './store.ts'
import { type AppState, cmp } from './types.ts'

/** Leaf kinds. */
export const LEAF_FILL = 1
export const LEAF_REFUND = 2

/** The StandardMerkleTree leaf encoding of every settlement leaf. */
export const LEAF_ENCODING = [
  'uint8',
  'bytes32',
  'uint256',
  'uint256',
  'address',
  'address',
  'uint256',
  'address',
] as const

/** One settlement leaf (the contracts' `struct Leaf`). */
export interface SettlementLeaf {
  readonly kind: typeof LEAF_FILL | typeof LEAF_REFUND
  /** The intent id (the order id the settler computes). */
  readonly orderId: Hex
  readonly originChainId: bigint
  /** The chain the order was filled on; 0 for a refund. */
  readonly destinationChainId: bigint
  /** Who filled it (FILL); the zero address for a refund. */
  readonly executor: Address
  /** The output token on the destination (FILL) or the input token (REFUND). */
  readonly token: Address
  /** outputAmount (FILL) or inputAmount (REFUND). */
  readonly amount: bigint
  /** The order's recipient (FILL) or its user (REFUND). */
  readonly recipient: Address
}

/**
 * An opened order that was not filled by its fill deadline: what its REFUND leaf pays back. A block's
 * `refunds` name them by intent id; {@link refundsOf} reads the rest from the state.
 */
export interface SettlementRefund {
  readonly orderId: Hex
  readonly originChainId: bigint
  readonly inputToken: Address
  readonly inputAmount: bigint
  readonly user: Address
}

/**
 * The refunds of `ids` (a block's `refunds`) from the assignments, open or released, they name in `state`
 * (the state before the block). Throws for an id the state does not hold: validateBlock refuses such a
 * block first, so only a caller that skipped it can meet this.
 */
export function refundsOf(
  state: Pick<AppState, 'assignments' | 'released'>,
  ids: readonly Hex[] | undefined,
): SettlementRefund[] {
  return (ids ?? []).map((id) => {
    const a = state.assignments.get(id) ?? state.released.get(id)
    if (a === undefined) throw new Error(`settlement: refund of ${id}, which the state does not hold`)
    return {
      orderId: id,
      originChainId: a.originChainId,
      inputToken: a.inputToken,
      inputAmount: a.inputAmount,
      user: a.user,
    }
  })
}

const ZERO_ADDRESS: Address = '0x0000000000000000000000000000000000000000'
/** The root of a block without leaves. */
export const EMPTY_SETTLEMENT_ROOT: Hex = `0x${'00'.repeat(32)}`

/**
 * The leaves of a block built on `state`: one FILL leaf per fill that settles an open assignment
 * (`fillSettles`, what apply commits: by its assigned executor, or, on a settled destination, by the
 * executor it was taken from, who then is the one the leaf repays), in intent id order, then one REFUND leaf per refund, in order id order
 * (docs/settlement.md: REFUND leaves; {@link refundsOf} gives a block's). Throws when
 * an assignment lacks its origin chain (an assignment loaded from a store that does not keep it).
 */
export function settlementLeaves(
  state: Pick<AppState, 'assignments' | 'rollups' | 'validators'>,
  fills: readonly BlockFill[],
  refunds: readonly SettlementRefund[] = [],
): SettlementLeaf[] {
  const out: SettlementLeaf[] = []
  for (const f of [...fills].sort((x, y) => cmp(x.intentId, y.intentId))) {
    const a = state.assignments.get(f.intentId)
    if (a === undefined || !fillSettles(state, a, f)) continue
    if (a.originChainId === undefined)
      throw new Error(`settlement: assignment ${f.intentId} has no origin chain id`)
    out.push({
      kind: LEAF_FILL,
      orderId: f.intentId,
      originChainId: a.originChainId,
      destinationChainId: f.chainId,
      executor: f.executor,
      token: a.outputToken,
      amount: a.outputAmount,
      recipient: a.recipient,
    })
  }
  for (const r of [...refunds].sort((x, y) => cmp(x.orderId, y.orderId))) {
    out.push({
      kind: LEAF_REFUND,
      orderId: r.orderId,
      originChainId: r.originChainId,
      destinationChainId: 0n,
      executor: ZERO_ADDRESS,
      token: r.inputToken,
      amount: r.inputAmount,
      recipient: r.user,
    })
  }
  return out
}

/** The leaf as StandardMerkleTree values (`LEAF_ENCODING` order), for the library and for viem. */
export function leafValues(
  l: SettlementLeaf,
): [number, Hex, bigint, bigint, Address, Address, bigint, Address] {
  return [
    l.kind,
    l.orderId,
    l.originChainId,
    l.destinationChainId,
    l.executor,
    l.token,
    l.amount,
    l.recipient,
  ]
}

const UINT256_MAX = (1n << 256n) - 1n

function putUint(out: Uint8Array, word: number, x: bigint): void {
  if (x < 0n || x > UINT256_MAX) throw new Error('settlement: integer out of range')
  const view = new DataView(out.buffer, out.byteOffset + word * 32, 32)
  for (let i = 3; i >= 0; i--) {
    view.setBigUint64(i * 8, x & 0xffff_ffff_ffff_ffffn)
    x >>= 64n
  }
}

function putHex(out: Uint8Array, word: number, hex: Hex, bytes: number): void {
  if (hex.length !== 2 + 2 * bytes) throw new Error(`settlement: expected ${bytes} bytes, got ${hex}`)
  out.set(Buffer.from(hex.slice(2), 'hex'), word * 32 + 32 - bytes)
}

/** `keccak256(bytes.concat(keccak256(abi.encode(leaf))))`: the StandardMerkleTree leaf hash. */
export function leafHash(l: SettlementLeaf): Uint8Array {
  const enc = new Uint8Array(8 * 32)
  putUint(enc, 0, BigInt(l.kind))
  putHex(enc, 1, l.orderId, 32)
  putUint(enc, 2, l.originChainId)
  putUint(enc, 3, l.destinationChainId)
  putHex(enc, 4, l.executor, 20)
  putHex(enc, 5, l.token, 20)
  putUint(enc, 6, l.amount)
  putHex(enc, 7, l.recipient, 20)
  return keccak256Bytes(keccak256Bytes(enc))
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

function hashPair(a: Uint8Array, b: Uint8Array): Uint8Array {
  const buf = new Uint8Array(64)
  if (compareBytes(a, b) <= 0) {
    buf.set(a, 0)
    buf.set(b, 32)
  } else {
    buf.set(b, 0)
    buf.set(a, 32)
  }
  return keccak256Bytes(buf)
}

function hex(b: Uint8Array): Hex {
  return `0x${Buffer.from(b).toString('hex')}`
}

/** A settlement tree: StandardMerkleTree's array layout (root at 0, sorted leaves at the end). */
export interface SettlementTree {
  readonly root: Hex
  /** The leaves in the order given (proof indices refer to it). */
  readonly leaves: readonly SettlementLeaf[]
  /** The proof of `leaves[i]`: what `tree.getProof(i)` of the library gives. */
  proof(i: number): Hex[]
}

/** The tree of `leaves` (in the order given, as `StandardMerkleTree.of(values, LEAF_ENCODING)`). */
export function settlementTree(leaves: readonly SettlementLeaf[]): SettlementTree {
  if (leaves.length === 0) {
    return {
      root: EMPTY_SETTLEMENT_ROOT,
      leaves,
      proof: () => {
        throw new Error('settlement: no leaves')
      },
    }
  }
  const hashed = leaves.map((l, i) => ({ i, h: leafHash(l) })).sort((a, b) => compareBytes(a.h, b.h))
  const tree = new Array<Uint8Array>(2 * leaves.length - 1)
  const position = new Array<number>(leaves.length)
  for (const [k, { i, h }] of hashed.entries()) {
    tree[tree.length - 1 - k] = h
    position[i] = tree.length - 1 - k
  }
  for (let i = tree.length - 1 - leaves.length; i >= 0; i--)
    tree[i] = hashPair(tree[2 * i + 1]!, tree[2 * i + 2]!)
  return {
    root: hex(tree[0]!),
    leaves,
    proof(i: number): Hex[] {
      let at = position[i]
      if (at === undefined) throw new RangeError(`settlement: no leaf ${i}`)
      const out: Hex[] = []
      while (at > 0) {
        out.push(hex(tree[at - (-1) ** (at % 2)]!))
        at = Math.floor((at - 1) / 2)
      }
      return out
    },
  }
}

/** The settlement root of `leaves`; bytes32(0) when there are none. */
export function settlementRoot(leaves: readonly SettlementLeaf[]): Hex {
  return settlementTree(leaves).root
}

/** The proof of `leaves[i]` against {@link settlementRoot}(leaves). */
export function settlementProof(leaves: readonly SettlementLeaf[], i: number): Hex[] {
  return settlementTree(leaves).proof(i)
}

// ---------------------------------------------------------------------------------------------------
// Records kept for `GET /v1/settlement/:height` (the `settlement` sublevel).

/** `l/<height>` -> the leaves of the block at that height (blocks without leaves have no record). */
export const SETTLEMENT_LEAVES_PREFIX = 'l/'
/** `v/<validatorsHash>` -> the validator set with that hash (`{validators, powers}`). */
export const SETTLEMENT_SET_PREFIX = 'v/'

/** A leaf as JSON (INTERFACES.md conventions: big integers as decimal strings). */
export interface SettlementLeafJson {
  kind: 'fill' | 'refund'
  orderId: Hex
  originChainId: string
  destinationChainId: string
  executor: Address
  token: Address
  amount: string
  recipient: Address
}

/** A leaf in the JSON conventions. */
export function leafToJson(l: SettlementLeaf): SettlementLeafJson {
  return {
    kind: l.kind === LEAF_FILL ? 'fill' : 'refund',
    orderId: l.orderId,
    originChainId: l.originChainId.toString(),
    destinationChainId: l.destinationChainId.toString(),
    executor: l.executor,
    token: l.token,
    amount: l.amount.toString(),
    recipient: l.recipient,
  }
}

/** Inverse of {@link leafToJson}. */
export function leafFromJson(j: SettlementLeafJson): SettlementLeaf {
  return {
    kind: j.kind === 'fill' ? LEAF_FILL : LEAF_REFUND,
    orderId: j.orderId,
    originChainId: BigInt(j.originChainId),
    destinationChainId: BigInt(j.destinationChainId),
    executor: j.executor,
    token: j.token,
    amount: BigInt(j.amount),
    recipient: j.recipient,
  }
}

/** A validator set as the contracts take it: addresses ascending, powers aligned. */
export interface ValidatorSetValues {
  readonly validators: readonly Address[]
  readonly powers: readonly bigint[]
}

/** `set` (power by address) with the addresses ascending. */
export function validatorSetValues(set: ReadonlyMap<Address, bigint>): ValidatorSetValues {
  const sorted = [...set].sort(([a], [b]) => cmp(a, b))
  return { validators: sorted.map(([a]) => a), powers: sorted.map(([, p]) => p) }
}

/**
 * The records a committed block adds to the `settlement` sublevel: its leaves (when it has any), and the
 * validator set that signed it when that set is new (at height 1 and at the first block of every epoch),
 * so the settlement route can serve any committed height after a restart.
 */
export function settlementOps(prev: AppState, block: Block, leaves: readonly SettlementLeaf[]): BatchOp[] {
  const ops: BatchOp[] = []
  if (leaves.length > 0)
    ops.push({
      type: 'put',
      sublevel: 'settlement',
      key: SETTLEMENT_LEAVES_PREFIX + heightKey(block.height),
      value: leaves.map(leafToJson),
    })
  if (block.height === 1n || isEpochBoundary(prev, block.height - 1n)) {
    const v = validatorSetValues(prev.consensusSet)
    ops.push({
      type: 'put',
      sublevel: 'settlement',
      key: SETTLEMENT_SET_PREFIX + block.validatorsHash,
      value: { validators: v.validators, powers: v.powers.map(String) },
    })
  }
  return ops
}

// ---------------------------------------------------------------------------------------------------
// CommitProof (what `claim`, `refund` and `rotate` take).

/** viem ABI parameter of `struct CommitProof` (docs/settlement.md). */
export const COMMIT_PROOF_TUPLE = {
  type: 'tuple',
  name: 'proof',
  components: [
    HEADER_TUPLE,
    {
      type: 'tuple',
      name: 'certificate',
      components: [
        { name: 'round', type: 'uint32' },
        {
          name: 'precommits',
          type: 'tuple[]',
          components: [
            { name: 'validator', type: 'address' },
            { name: 'timestampMs', type: 'uint64' },
            { name: 'extensionHash', type: 'bytes32' },
            { name: 'signature', type: 'bytes' },
          ],
        },
      ],
    },
    { name: 'validators', type: 'address[]' },
    { name: 'powers', type: 'uint256[]' },
  ],
} as const

/** The values of a `CommitProof`, ready for viem (`args` of claim/refund/rotate). */
export interface CommitProofValues {
  readonly header: BlockHeader
  readonly certificate: {
    readonly round: number
    readonly precommits: readonly {
      readonly validator: Address
      readonly timestampMs: bigint
      readonly extensionHash: Hex
      readonly signature: Hex
    }[]
  }
  readonly validators: readonly Address[]
  readonly powers: readonly bigint[]
}

/**
 * The `CommitProof` of `block` committed by `certificate`, signed by `set` (the set whose hash is the
 * block's `validatorsHash`). Throws when the certificate is not for this block.
 */
export function toCommitProof(
  block: Block | BlockHeader,
  certificate: CommitCertificate,
  set: ValidatorSetValues,
): CommitProofValues {
  const header = 'bodyHash' in block ? block : blockHeader(block)
  if (certificate.height !== header.height) throw new Error('settlement: certificate of another height')
  return {
    header,
    certificate: {
      round: certificate.round,
      precommits: certificate.precommits.map((p) => ({
        validator: p.validator,
        timestampMs: BigInt(p.timestampMs),
        extensionHash: extensionHash(p.extension),
        signature: p.signature,
      })),
    },
    validators: set.validators,
    powers: set.powers,
  }
}

// ---------------------------------------------------------------------------------------------------
// A committed height's settlement, as relayers take it (GET /v1/settlement/:height, rollups/refunds.ts).

/** What a committed height's settlement is read from (ConsensusWiring#settlementSource gives it). */
export interface SettlementSource {
  /** A committed block: its canonical bytes, hash and commit certificate (undefined: not certified yet). */
  block(
    height: bigint,
  ): Promise<{ bytes: Uint8Array; hash: Hex; certificate: CommitCertificate | undefined } | undefined>
  /** The block's settlement leaves, in leaf order (empty for a block without any). */
  leaves(height: bigint): Promise<readonly SettlementLeaf[]>
  /** The validator set whose hash is `validatorsHash`, addresses ascending. */
  validatorSet(validatorsHash: Hex): Promise<ValidatorSetValues | undefined>
}

/** A committed height's leaves with their tree, and the `CommitProof` of its block. */
export interface CertifiedSettlement {
  readonly block: Block
  readonly hash: Hex
  readonly tree: SettlementTree
  readonly proof: CommitProofValues
}

/** Why a height's settlement cannot be served (the API maps them to 404 and 409). */
export type SettlementUnavailable = 'NOT_FOUND' | 'NOT_CERTIFIED' | 'VALIDATOR_SET_UNKNOWN'

/**
 * The settlement of the committed block at `height`: its stored leaves (their root checked against the
 * block's: one that differs is a corrupt store, and throws), their proofs and the block's commit proof;
 * or why not: no committed block there (`NOT_FOUND`), no certificate (`NOT_CERTIFIED`), its signing set
 * not recorded (`VALIDATOR_SET_UNKNOWN`).
 */
export async function certifiedSettlement(
  source: SettlementSource,
  height: bigint,
): Promise<
  { ok: true; value: CertifiedSettlement } | { ok: false; code: SettlementUnavailable; message: string }
> {
  const b = height === 0n ? undefined : await source.block(height)
  if (b === undefined)
    return { ok: false, code: 'NOT_FOUND', message: `no committed block at height ${height}` }
  if (b.certificate === undefined)
    return { ok: false, code: 'NOT_CERTIFIED', message: `block ${height} has no commit certificate yet` }
  const block = decodeBlock(b.bytes)
  const set = await source.validatorSet(block.validatorsHash)
  if (set === undefined)
    return {
      ok: false,
      code: 'VALIDATOR_SET_UNKNOWN',
      message: `validator set ${block.validatorsHash} not recorded`,
    }
  const tree = settlementTree(await source.leaves(height))
  if (tree.root !== block.settlementRoot)
    throw new Error(
      `settlement leaves of ${height} give ${tree.root}, the block commits ${block.settlementRoot}`,
    )
  return { ok: true, value: { block, hash: b.hash, tree, proof: toCommitProof(block, b.certificate, set) } }
}
