/**
 * EIP-712 type definitions shared by every module (INTERFACES.md, "Intents" and "Other signed objects").
 * Each constant is the `types` argument for viem's `hashTypedData`/`signTypedData` and ethers'
 * `signTypedData` (neither wants `EIP712Domain` listed).
 */
import {
  type Address,
  type HashTypedDataParameters,
  type Hex,
  keccak256,
  stringToBytes,
  type TypedData,
} from 'viem'
import { digestHex, domainSeparatorFast, hashWithSeparatorBytes } from './eip712-hash.ts'

/** EIP-712 domain `name` of every Murmur signature. */
export const EIP712_DOMAIN_NAME = 'Murmur'
/** EIP-712 domain `version` of every Murmur signature. */
export const EIP712_DOMAIN_VERSION = '1'

/** ERC-7683 `GaslessCrossChainOrder`, exactly the eight fields in this order. */
export const GASLESS_ORDER_TYPES = {
  GaslessCrossChainOrder: [
    { name: 'originSettler', type: 'address' },
    { name: 'user', type: 'address' },
    { name: 'nonce', type: 'uint256' },
    { name: 'originChainId', type: 'uint256' },
    { name: 'openDeadline', type: 'uint32' },
    { name: 'fillDeadline', type: 'uint32' },
    { name: 'orderDataType', type: 'bytes32' },
    { name: 'orderData', type: 'bytes' },
  ],
} as const satisfies TypedData

/** Primary type name of an intent. */
export const GASLESS_ORDER_PRIMARY_TYPE = 'GaslessCrossChainOrder'

/** Domain of an order: bound to its origin chain and settler contract. */
export interface OrderDomain {
  name: typeof EIP712_DOMAIN_NAME
  version: typeof EIP712_DOMAIN_VERSION
  chainId: bigint
  verifyingContract: Address
}

/** Domain of network-level objects: bound to one network by a salt. */
export interface NetworkDomain {
  name: typeof EIP712_DOMAIN_NAME
  version: typeof EIP712_DOMAIN_VERSION
  salt: Hex
}

/** `{ name: 'Murmur', version: '1', chainId: originChainId, verifyingContract: originSettler }`. */
export function orderDomain(order: { originChainId: bigint; originSettler: Address }): OrderDomain {
  return {
    name: EIP712_DOMAIN_NAME,
    version: EIP712_DOMAIN_VERSION,
    chainId: order.originChainId,
    verifyingContract: order.originSettler,
  }
}

/** Salts (and below, domain separators) of the networks seen; a node sees one, tests a few. */
const MAX_NETWORKS_CACHED = 64
const salts = new Map<string, Hex>()

/** `salt = keccak256(utf8(networkId))`: the value that binds network-level signatures to one network. */
export function networkSalt(networkId: string): Hex {
  let salt = salts.get(networkId)
  if (salt === undefined) {
    salt = keccak256(stringToBytes(networkId))
    if (salts.size >= MAX_NETWORKS_CACHED) salts.clear()
    salts.set(networkId, salt)
  }
  return salt
}

/** `{ name: 'Murmur', version: '1', salt: keccak256(utf8(networkId)) }`. */
export function networkDomain(networkId: string): NetworkDomain {
  return { name: EIP712_DOMAIN_NAME, version: EIP712_DOMAIN_VERSION, salt: networkSalt(networkId) }
}

/** `StakeMove(address staker,uint256 fromChainId,uint256 toChainId,uint256 amount,uint64 durationBlocks,uint256 nonce)` */
export const STAKE_MOVE_TYPES = {
  StakeMove: [
    { name: 'staker', type: 'address' },
    { name: 'fromChainId', type: 'uint256' },
    { name: 'toChainId', type: 'uint256' },
    { name: 'amount', type: 'uint256' },
    { name: 'durationBlocks', type: 'uint64' },
    { name: 'nonce', type: 'uint256' },
  ],
} as const satisfies TypedData

/** `Unjail(address validator,uint256 nonce)`: a downtime-jailed validator asks to be back. */
export const UNJAIL_TYPES = {
  Unjail: [
    { name: 'validator', type: 'address' },
    { name: 'nonce', type: 'uint256' },
  ],
} as const satisfies TypedData

/** `Transfer(address from,address to,uint256 amount,uint256 nonce)`: tokens from one account to another. */
export const TRANSFER_TYPES = {
  Transfer: [
    { name: 'from', type: 'address' },
    { name: 'to', type: 'address' },
    { name: 'amount', type: 'uint256' },
    { name: 'nonce', type: 'uint256' },
  ],
} as const satisfies TypedData

/** The fields of Delegate and Undelegate (the same five, two primary types so neither signs for the other). */
const DELEGATION_FIELDS = [
  { name: 'delegator', type: 'address' },
  { name: 'validator', type: 'address' },
  { name: 'chainId', type: 'uint256' },
  { name: 'amount', type: 'uint256' },
  { name: 'nonce', type: 'uint256' },
] as const

/** `Delegate(address delegator,address validator,uint256 chainId,uint256 amount,uint256 nonce)` */
export const DELEGATE_TYPES = { Delegate: DELEGATION_FIELDS } as const satisfies TypedData

/** `Undelegate(address delegator,address validator,uint256 chainId,uint256 amount,uint256 nonce)` */
export const UNDELEGATE_TYPES = { Undelegate: DELEGATION_FIELDS } as const satisfies TypedData

/**
 * `CreateValidator(address validator,bytes peerId,uint256[] chainIds,uint256 selfStake,uint16 commissionBps,
 * uint256 nonce)`: the signed validator record that binds an address to a libp2p peer id.
 */
export const CREATE_VALIDATOR_TYPES = {
  CreateValidator: [
    { name: 'validator', type: 'address' },
    { name: 'peerId', type: 'bytes' },
    { name: 'chainIds', type: 'uint256[]' },
    { name: 'selfStake', type: 'uint256' },
    { name: 'commissionBps', type: 'uint16' },
    { name: 'nonce', type: 'uint256' },
  ],
} as const satisfies TypedData

/** `RebalanceRule(address token,uint256 threshold,uint256[] spreadOverChainIds)`, a member of Profile. */
export const REBALANCE_RULE_TYPE = [
  { name: 'token', type: 'address' },
  { name: 'threshold', type: 'uint256' },
  { name: 'spreadOverChainIds', type: 'uint256[]' },
] as const

/**
 * `Profile(address user,uint256[] preferredChainIds,uint256[] avoidChainIds,string preferredType,
 * uint256 maxFeeBps,address gasToken,RebalanceRule[] rebalanceRules,uint256 nonce)` with its
 * `RebalanceRule` dependency.
 */
export const PROFILE_TYPES = {
  Profile: [
    { name: 'user', type: 'address' },
    { name: 'preferredChainIds', type: 'uint256[]' },
    { name: 'avoidChainIds', type: 'uint256[]' },
    { name: 'preferredType', type: 'string' },
    { name: 'maxFeeBps', type: 'uint256' },
    { name: 'gasToken', type: 'address' },
    { name: 'rebalanceRules', type: 'RebalanceRule[]' },
    { name: 'nonce', type: 'uint256' },
  ],
  RebalanceRule: REBALANCE_RULE_TYPE,
} as const satisfies TypedData

/**
 * `Credential(string issuer,string subject,string credentialType,bytes32 claimsHash,uint64 validFrom,
 * uint64 validUntil,uint256[] chainIds,uint256 nonce)`
 */
export const CREDENTIAL_TYPES = {
  Credential: [
    { name: 'issuer', type: 'string' },
    { name: 'subject', type: 'string' },
    { name: 'credentialType', type: 'string' },
    { name: 'claimsHash', type: 'bytes32' },
    { name: 'validFrom', type: 'uint64' },
    { name: 'validUntil', type: 'uint64' },
    { name: 'chainIds', type: 'uint256[]' },
    { name: 'nonce', type: 'uint256' },
  ],
} as const satisfies TypedData

/** `Revocation(bytes32 credentialId,string issuer,uint256 nonce)` */
export const REVOCATION_TYPES = {
  Revocation: [
    { name: 'credentialId', type: 'bytes32' },
    { name: 'issuer', type: 'string' },
    { name: 'nonce', type: 'uint256' },
  ],
} as const satisfies TypedData

/**
 * EIP-712 digest of a network-level object under `networkDomain(networkId)`; sign it or recover from it.
 * `types` is one of the constants above (or a validator type defined the same way). Same digest as
 * viem's `hashTypedData`, computed by `hashTypedDataFast` (eip712-hash.ts) with the separator cached.
 */
export function hashNetworkTyped<const types extends TypedData, primaryType extends keyof types & string>(
  networkId: string,
  primaryType: primaryType,
  types: types,
  message: HashTypedDataParameters<types, primaryType>['message'],
): Hex {
  return digestHex(hashWithSeparatorBytes(networkSeparator(networkId), types, primaryType, message))
}

const separators = new Map<string, Uint8Array>()

/** Domain separator of `networkDomain(networkId)`. */
function networkSeparator(networkId: string): Uint8Array {
  let sep = separators.get(networkId)
  if (sep === undefined) {
    sep = domainSeparatorFast(networkDomain(networkId))
    if (separators.size >= MAX_NETWORKS_CACHED) separators.clear()
    separators.set(networkId, sep)
  }
  return sep
}
