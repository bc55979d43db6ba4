/**
 * Unjail (ARCHITECTURE.md, Self-healing: "a long absence jails it until it unjails"; Cosmos x/slashing
 * MsgUnjail): a validator jailed for downtime signs `Unjail(address validator,uint256 nonce)` under the
 * network domain once its jail time is over, and the block that carries it sets it free. A tombstoned
 * validator (double signing) is never set free. Pure: no I/O besides the optional signature recovery of
 * {@link validateUnjail}.
 */
import type { Address, Hex, LocalAccount } from 'viem'
import { hashNetworkTyped, networkDomain, UNJAIL_TYPES } from '../codec/eip712.ts'
import { parseAddress, parseDecimal, parseHex, parseObject } from '../codec/json.ts'
import { recoverAddress } from '../crypto/recover.ts'
import type { RecoverFn } from './moves.ts'

/** `Unjail(address validator,uint256 nonce)` */
export interface Unjail {
  /** Lowercase. */
  readonly validator: Address
  readonly nonce: bigint
}

/** An Unjail with the validator's 65-byte ECDSA signature over its EIP-712 digest. */
export interface SignedUnjail {
  readonly unjail: Unjail
  readonly signature: Hex
}

/** Primary type name of an unjail. */
export const UNJAIL_PRIMARY_TYPE = 'Unjail'

const UINT256_MAX = (1n << 256n) - 1n
const ADDRESS_RE = /^0x[0-9a-f]{40}$/
const SIGNATURE_RE = /^0x[0-9a-f]{130}$/

/** Why an Unjail is refused (the 400 codes of `POST /v1/unjail`). */
export type UnjailRejectCode =
  | 'MALFORMED'
  | 'BAD_SIGNATURE'
  | 'NOT_JAILED'
  | 'TOO_EARLY'
  | 'TOMBSTONED'
  | 'NONCE_USED'

export type UnjailVerdict =
  | { readonly ok: true; readonly id: Hex }
  | { readonly ok: false; readonly code: UnjailRejectCode; readonly message: string }

/** What the unjail rules read of the application state (`AppState` fits). */
export interface UnjailState {
  readonly networkId: string
  readonly validators: readonly {
    readonly address: Address
    readonly jailed: boolean
    readonly jailedUntil: bigint | null
    readonly tombstoned: boolean
  }[]
  /** Highest Unjail nonce used by each validator. */
  readonly unjailNonces: ReadonlyMap<Address, bigint>
}

/** The id of an Unjail: its EIP-712 digest under `networkDomain(networkId)` (what the validator signs). */
export function unjailId(networkId: string, unjail: Unjail): Hex {
  return hashNetworkTyped(networkId, UNJAIL_PRIMARY_TYPE, UNJAIL_TYPES, unjail)
}

/** The complete typed-data definition of an Unjail, for any EIP-712 signer. */
export function unjailTypedData(networkId: string, unjail: Unjail) {
  return {
    domain: networkDomain(networkId),
    types: UNJAIL_TYPES,
    primaryType: UNJAIL_PRIMARY_TYPE,
    message: unjail,
  } as const
}

/** Signs an Unjail with the validator's account; `unjail.validator` must be that account. */
export async function signUnjail(
  account: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  unjail: Unjail,
): Promise<SignedUnjail> {
  if (unjail.validator !== account.address.toLowerCase())
    throw new Error(`unjail.validator ${unjail.validator} is not the signing account ${account.address}`)
  const signature = (await account.signTypedData(unjailTypedData(networkId, unjail))).toLowerCase() as Hex
  return { unjail, signature }
}

/** Which field of a signed Unjail is out of its type's range (or not lowercase hex), or undefined. */
export function findBadUnjailField(s: SignedUnjail): string | undefined {
  const u = s.unjail
  if (typeof u.validator !== 'string' || !ADDRESS_RE.test(u.validator)) return 'validator'
  if (typeof u.nonce !== 'bigint' || u.nonce < 0n || u.nonce > UINT256_MAX) return 'nonce'
  if (typeof s.signature !== 'string' || !SIGNATURE_RE.test(s.signature)) return 'signature'
  return undefined
}

function fail(code: UnjailRejectCode, message: string): UnjailVerdict {
  return { ok: false, code, message }
}

/**
 * Every check of an Unjail but its signature, for a block at `timeSec` (unix seconds) on `state`: the
 * validator is jailed and not tombstoned, its jail time is over (`timeSec >= jailedUntil`), and the nonce
 * is above the highest it used.
 */
export function checkUnjail(state: UnjailState, s: SignedUnjail, timeSec: bigint): UnjailVerdict {
  const bad = findBadUnjailField(s)
  if (bad !== undefined) return fail('MALFORMED', `${bad} is out of range or not lowercase hex`)
  const u = s.unjail
  const v = state.validators.find((x) => x.address === u.validator)
  if (v === undefined) return fail('NOT_JAILED', `${u.validator} is not a validator`)
  if (v.tombstoned) return fail('TOMBSTONED', `${u.validator} is tombstoned (double signing): never unjailed`)
  if (!v.jailed) return fail('NOT_JAILED', `${u.validator} is not jailed`)
  if (v.jailedUntil !== null && timeSec < v.jailedUntil)
    return fail('TOO_EARLY', `${u.validator} is jailed until ${v.jailedUntil}, it is ${timeSec}`)
  const used = state.unjailNonces.get(u.validator)
  if (used !== undefined && u.nonce <= used)
    return fail('NONCE_USED', `nonce ${u.nonce} <= ${used}, the highest used by ${u.validator}`)
  return { ok: true, id: unjailId(state.networkId, u) }
}

/** {@link checkUnjail}, then the signature (it must recover to the validator). */
export async function validateUnjail(
  state: UnjailState,
  s: SignedUnjail,
  timeSec: bigint,
  recover: RecoverFn = recoverAddress,
): Promise<UnjailVerdict> {
  const v = checkUnjail(state, s, timeSec)
  if (!v.ok) return v
  let signer: Address
  try {
    signer = await recover(v.id, s.signature)
  } catch {
    return fail('BAD_SIGNATURE', 'the signature does not recover')
  }
  if (signer !== s.unjail.validator) return fail('BAD_SIGNATURE', `signed by ${signer}, not the validator`)
  return v
}

/** `{unjail, signature}` in the JSON conventions (the body of `POST /v1/unjail`). Throws CodecError. */
export function signedUnjailFromJson(body: unknown): SignedUnjail {
  const o = parseObject(body, '', ['unjail', 'signature'])
  const u = parseObject(o.unjail, 'unjail', ['validator', 'nonce'])
  return {
    unjail: {
      validator: parseAddress(u.validator, 'unjail.validator'),
      nonce: parseDecimal(u.nonce, 'unjail.nonce'),
    },
    signature: parseHex(o.signature, 'signature', { bytes: 65 }),
  }
}

/** A signed Unjail in the JSON conventions. */
export function signedUnjailToJson(s: SignedUnjail) {
  return {
    unjail: { validator: s.unjail.validator, nonce: s.unjail.nonce.toString() },
    signature: s.signature,
  }
}
