/**
 * Signed rollup health reports: what one validator measured on one rollup, as EIP-712 typed data under
 * the network domain (INTERFACES.md, "Other signed objects": validators' own types are defined the
 * same way), their wire codec for the `health` gossip topic, and the gossip validator.
 *
 * Every figure of a report (block number, gas used, gas limit, base fee) describes ONE block, so any
 * node can check it against the chain; only the block time (averaged over a window) and the RPC
 * latency are the reporter's own view.
 */
import type { Address, Hex, LocalAccount, TypedData } from 'viem'
import { bytesToAddress, bytesToHex, bytesToUint, hexToRaw, uintToBytes } from '../codec/bytes.ts'
import { type Codec, cborCodec, shape } from '../codec/cbor.ts'
import { hashNetworkTyped, networkDomain } from '../codec/eip712.ts'
import { recoverAddress } from '../crypto/recover.ts'
import { P2PError } from '../errors.ts'
import { ACCEPT, ignore, reject, type ValidationResult } from '../p2p/validation.ts'
import type { RollupStatus } from './router.ts'

/**
 * `HealthReport(address validator,uint256 chainId,uint64 blockNumber,uint64 gasUsed,uint64 gasLimit,
 * uint32 gasUsedRatioBps,uint256 baseFeeWei,uint32 blockTimeMs,uint32 latencyMs,uint8 status,
 * uint64 timestampMs)`
 *
 * `gasUsed` and `gasLimit` were added to the field list of the design brief: the router needs them for
 * spare capacity (gasLimit − gasUsed), and with them a report describes one verifiable block.
 */
export const HEALTH_REPORT_TYPES = {
  HealthReport: [
    { name: 'validator', type: 'address' },
    { name: 'chainId', type: 'uint256' },
    { name: 'blockNumber', type: 'uint64' },
    { name: 'gasUsed', type: 'uint64' },
    { name: 'gasLimit', type: 'uint64' },
    { name: 'gasUsedRatioBps', type: 'uint32' },
    { name: 'baseFeeWei', type: 'uint256' },
    { name: 'blockTimeMs', type: 'uint32' },
    { name: 'latencyMs', type: 'uint32' },
    { name: 'status', type: 'uint8' },
    { name: 'timestampMs', type: 'uint64' },
  ],
} as const satisfies TypedData

/** Primary type name of a health report. */
export const HEALTH_REPORT_PRIMARY_TYPE = 'HealthReport'

/** Wire and signed form of a status: 0 up, 1 degraded, 2 down. */
export type HealthStatusCode = 0 | 1 | 2

/** Status code of each status name. */
export const HEALTH_STATUS_CODE: { readonly [K in RollupStatus]: HealthStatusCode } = {
  up: 0,
  degraded: 1,
  down: 2,
}

/** Status name of each status code. */
export const HEALTH_STATUS_NAME: readonly RollupStatus[] = ['up', 'degraded', 'down']

/** One validator's view of one rollup at `timestampMs`. Addresses lowercase. */
export interface HealthReport {
  validator: Address
  chainId: bigint
  /** The block the gas and fee figures are read from. */
  blockNumber: bigint
  gasUsed: bigint
  gasLimit: bigint
  /** gasUsed × 10 000 / gasLimit, rounded down (0 when gasLimit is 0). */
  gasUsedRatioBps: number
  baseFeeWei: bigint
  /** Average block interval over the reporter's window, milliseconds. */
  blockTimeMs: number
  /** RPC round trip of the reporter's last poll, milliseconds. */
  latencyMs: number
  status: HealthStatusCode
  /** Reporter's wall clock when it measured, unix milliseconds. */
  timestampMs: bigint
}

/** A report with its 65-byte ECDSA signature by `report.validator`. */
export interface SignedHealthReport {
  report: HealthReport
  /** 0x-prefixed lowercase hex, 65 bytes. */
  signature: Hex
}

const UINT32_MAX = 0xffff_ffff
const UINT64_MAX = (1n << 64n) - 1n
const UINT256_MAX = (1n << 256n) - 1n
const BPS = 10_000

/** gasUsed × 10 000 / gasLimit rounded down, 0 for a zero gas limit; the one formula used everywhere. */
export function gasRatioBps(gasUsed: bigint, gasLimit: bigint): number {
  if (gasLimit <= 0n) return 0
  const r = (gasUsed * BigInt(BPS)) / gasLimit
  return Number(r > BigInt(BPS) ? BigInt(BPS) : r)
}

/** The EIP-712 digest of a report under `networkDomain(networkId)`. */
export function healthReportDigest(networkId: string, report: HealthReport): Hex {
  return hashNetworkTyped(networkId, HEALTH_REPORT_PRIMARY_TYPE, HEALTH_REPORT_TYPES, report)
}

/** The complete typed-data definition of a report, for any EIP-712 signer. */
export function healthReportTypedData(networkId: string, report: HealthReport) {
  return {
    domain: networkDomain(networkId),
    types: HEALTH_REPORT_TYPES,
    primaryType: HEALTH_REPORT_PRIMARY_TYPE,
    message: report,
  } as const
}

/** Signs a report with the validator's account; the report's `validator` must be that account. */
export async function signHealthReport(
  account: Pick<LocalAccount, 'address' | 'signTypedData'>,
  networkId: string,
  report: HealthReport,
): Promise<SignedHealthReport> {
  if (report.validator !== account.address.toLowerCase()) {
    throw new Error(`report.validator ${report.validator} is not the signing account ${account.address}`)
  }
  const signature = (
    await account.signTypedData(healthReportTypedData(networkId, report))
  ).toLowerCase() as Hex
  return { report, signature }
}

/** The signer of a report (lowercase); rejects with SignatureError when nothing recovers. */
export function recoverHealthReportSigner(networkId: string, signed: SignedHealthReport): Promise<Address> {
  return recoverAddress(healthReportDigest(networkId, signed.report), signed.signature)
}

// ---------------------------------------------------------------------------------------------------
// Wire codec. CBOR map with short keys; bigints as minimal big-endian byte strings (CBOR integers stop
// at 64 bits, and one canonical form per value keeps the encoding deterministic).

/** Largest encoded `{report, signature}`, version byte included. A real one is about 200 bytes. */
export const HEALTH_REPORT_MAX_BYTES = 512
/** Wire version of {@link healthReportCodec}. */
export const HEALTH_REPORT_WIRE_VERSION = 1

interface HealthReportWire {
  v: Uint8Array
  c: Uint8Array
  n: Uint8Array
  gu: Uint8Array
  gl: Uint8Array
  r: number
  bf: Uint8Array
  bt: number
  l: number
  s: number
  t: Uint8Array
  sig: Uint8Array
}

const WIRE_KEYS = ['v', 'c', 'n', 'gu', 'gl', 'r', 'bf', 'bt', 'l', 's', 't', 'sig'] as const

function toWire({ report: r, signature }: SignedHealthReport): HealthReportWire {
  return {
    v: hexToRaw(r.validator),
    c: uintToBytes(r.chainId),
    n: uintToBytes(r.blockNumber),
    gu: uintToBytes(r.gasUsed),
    gl: uintToBytes(r.gasLimit),
    r: r.gasUsedRatioBps,
    bf: uintToBytes(r.baseFeeWei),
    bt: r.blockTimeMs,
    l: r.latencyMs,
    s: r.status,
    t: uintToBytes(r.timestampMs),
    sig: hexToRaw(signature),
  }
}

function fromWire(v: unknown): SignedHealthReport {
  const o = shape.object(v, 'health')
  const keys = Object.keys(o)
  if (keys.length !== WIRE_KEYS.length || !WIRE_KEYS.every((k) => Object.hasOwn(o, k))) {
    throw new P2PError('DECODE', 'health: unexpected key set')
  }
  const report: HealthReport = {
    validator: bytesToAddress(o['v'], 'health.validator'),
    chainId: bytesToUint(o['c'], 'health.chainId', 32),
    blockNumber: bytesToUint(o['n'], 'health.blockNumber', 8),
    gasUsed: bytesToUint(o['gu'], 'health.gasUsed', 8),
    gasLimit: bytesToUint(o['gl'], 'health.gasLimit', 8),
    gasUsedRatioBps: shape.int(o['r'], 'health.gasUsedRatioBps', 0, BPS),
    baseFeeWei: bytesToUint(o['bf'], 'health.baseFeeWei', 32),
    blockTimeMs: shape.int(o['bt'], 'health.blockTimeMs', 0, UINT32_MAX),
    latencyMs: shape.int(o['l'], 'health.latencyMs', 0, UINT32_MAX),
    status: shape.int(o['s'], 'health.status', 0, 2) as HealthStatusCode,
    timestampMs: bytesToUint(o['t'], 'health.timestampMs', 8),
  }
  const signature = bytesToHex(o['sig'], 'health.signature', 65)
  return { report, signature }
}

// CBOR in and out of the wire map; `check` turns the decoded map into the typed form.
const innerCodec = cborCodec<unknown>({
  version: HEALTH_REPORT_WIRE_VERSION,
  maxBytes: HEALTH_REPORT_MAX_BYTES,
  check: fromWire,
})

/** Wire codec of `{report, signature}` for the `health` topic (CBOR, version 1, at most 512 bytes). */
export const healthReportCodec: Codec<SignedHealthReport> = {
  version: innerCodec.version,
  maxBytes: innerCodec.maxBytes,
  encode: (value) => {
    assertReportFields(value.report)
    if (!/^0x[0-9a-f]{130}$/.test(value.signature)) throw new Error('health signature: expected 65 bytes hex')
    return innerCodec.encode(toWire(value))
  },
  decode: (bytes) => innerCodec.decode(bytes) as SignedHealthReport,
}

/** Throws a plain Error (programmer error) when a report we are about to sign or send is out of range. */
export function assertReportFields(r: HealthReport): void {
  const bad = findBadReportField(r)
  if (bad !== undefined) throw new Error(`health report field ${bad} is out of range`)
}

/** Name of the first field of a report that is out of its EIP-712 type's range, or undefined. */
export function findBadReportField(r: HealthReport): keyof HealthReport | undefined {
  const u = (x: unknown, max: bigint) => typeof x === 'bigint' && x >= 0n && x <= max
  const n = (x: unknown, max: number) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= max
  if (typeof r.validator !== 'string' || !/^0x[0-9a-f]{40}$/.test(r.validator)) return 'validator'
  if (!u(r.chainId, UINT256_MAX)) return 'chainId'
  if (!u(r.blockNumber, UINT64_MAX)) return 'blockNumber'
  if (!u(r.gasUsed, UINT64_MAX)) return 'gasUsed'
  if (!u(r.gasLimit, UINT64_MAX)) return 'gasLimit'
  if (!n(r.gasUsedRatioBps, BPS)) return 'gasUsedRatioBps'
  if (!u(r.baseFeeWei, UINT256_MAX)) return 'baseFeeWei'
  if (!n(r.blockTimeMs, UINT32_MAX)) return 'blockTimeMs'
  if (!n(r.latencyMs, UINT32_MAX)) return 'latencyMs'
  if (!n(r.status, 2)) return 'status'
  if (!u(r.timestampMs, UINT64_MAX)) return 'timestampMs'
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Gossip validation.

/** A report newer than the last one of its (validator, chain) by less than this is IGNOREd. */
export const DEFAULT_HEALTH_MIN_INTERVAL_MS = 100

/** What {@link validateHealthReport} needs to know about the node's view. */
export interface HealthValidationContext {
  networkId: string
  /** Voting power by lowercase validator address; a zero or absent power is not a validator. */
  validators: ReadonlyMap<Address, bigint>
  /** The receiver's wall clock, unix milliseconds. */
  nowMs: number | bigint
  /** A report older than `nowMs - freshnessMs` is stale. */
  freshnessMs: number
  /** A report dated after `nowMs + maxSkewMs` is forged (no honest clock is that far ahead). */
  maxSkewMs: number
  /** Timestamp of the last report ACCEPTed from this validator for this chain. */
  lastSeen: (validator: Address, chainId: bigint) => bigint | undefined
  /** Chain ids of the network's rollups (genesis). */
  knownChains: ReadonlySet<bigint>
  /** Default {@link DEFAULT_HEALTH_MIN_INTERVAL_MS}. */
  minIntervalMs?: number
}

/**
 * Gossip validation of a decoded health report. Cheap checks first (dedupe before signatures):
 * - REJECT `UNKNOWN_CHAIN`, `NOT_VALIDATOR`, `FUTURE` (dated beyond the allowed skew), `INCONSISTENT`
 *   (gas used above the limit, or a ratio that does not follow from gasUsed/gasLimit), `BAD_SIGNATURE`;
 * - IGNORE `STALE` (older than the freshness window), `DUPLICATE` (not newer than the last accepted
 *   one of that validator and chain: a replay), `RATE_LIMITED` (newer by less than minIntervalMs);
 * - ACCEPT otherwise. The caller records `timestampMs` as the new `lastSeen` on ACCEPT.
 */
export async function validateHealthReport(
  msg: SignedHealthReport,
  ctx: HealthValidationContext,
): Promise<ValidationResult> {
  const r = msg.report
  if (findBadReportField(r) !== undefined) return reject('MALFORMED')
  if (!ctx.knownChains.has(r.chainId)) return reject('UNKNOWN_CHAIN')
  const power = ctx.validators.get(r.validator)
  if (power === undefined || power <= 0n) return reject('NOT_VALIDATOR')
  const now = BigInt(ctx.nowMs)
  if (r.timestampMs > now + BigInt(ctx.maxSkewMs)) return reject('FUTURE')
  if (r.gasUsed > r.gasLimit || r.gasUsedRatioBps !== gasRatioBps(r.gasUsed, r.gasLimit)) {
    return reject('INCONSISTENT')
  }
  if (r.timestampMs < now - BigInt(ctx.freshnessMs)) return ignore('STALE')
  const last = ctx.lastSeen(r.validator, r.chainId)
  if (last !== undefined) {
    if (r.timestampMs <= last) return ignore('DUPLICATE')
    if (r.timestampMs - last < BigInt(ctx.minIntervalMs ?? DEFAULT_HEALTH_MIN_INTERVAL_MS)) {
      return ignore('RATE_LIMITED')
    }
  }
  let signer: Address
  try {
    signer = await recoverHealthReportSigner(ctx.networkId, msg)
  } catch {
    return reject('BAD_SIGNATURE')
  }
  if (signer !== r.validator) return reject('BAD_SIGNATURE')
  return ACCEPT
}
