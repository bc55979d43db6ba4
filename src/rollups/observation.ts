/**
 * A validator's observation of every rollup, carried as the vote extension of its precommits (ABCI++,
 * the way Skip's Slinky carries prices): the health view of block H is the stake-weighted median over the
 * observations in its last commit, so no proposer can hide or invent a report (ARCHITECTURE.md,
 * Consensus). The signed precommit covers keccak256 of these bytes.
 *
 * Encoding: CBOR array, one entry per rollup in ascending chain id order, each
 * `[chainId, status, blockNumber, gasUsed, gasLimit, baseFeeWei, blockTimeMs, latencyMs]` (big integers as
 * minimal big-endian bytes). Canonical: a decoded extension re-encodes to the same bytes. A validator that
 * also reports its balances (executor inventory) wraps it: `[1, observations, balances]`
 * ({@link encodeExtension}).
 */
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import type { Address } from 'viem'
import { bytesToAddress, bytesToUint, uintToBytes } from '../codec/bytes.ts'
import { shape } from '../codec/cbor.ts'
import { P2PError } from '../errors.ts'
import { gasRatioBps, type HealthReport, type HealthStatusCode } from './health-report.ts'

/** One rollup as one validator measured it. */
export interface Observation {
  readonly chainId: bigint
  readonly status: HealthStatusCode
  readonly blockNumber: bigint
  readonly gasUsed: bigint
  readonly gasLimit: bigint
  readonly baseFeeWei: bigint
  readonly blockTimeMs: number
  readonly latencyMs: number
}

/** Most rollups one extension describes. */
export const MAX_OBSERVATIONS = 32
const UINT32_MAX = 0xffff_ffff

/** The extension bytes of `observations` (sorted by chain id here; one per chain). */
export function encodeObservations(observations: readonly Observation[]): Uint8Array {
  const sorted = [...observations].sort((a, b) =>
    a.chainId < b.chainId ? -1 : a.chainId > b.chainId ? 1 : 0,
  )
  if (sorted.length > MAX_OBSERVATIONS) throw new Error(`more than ${MAX_OBSERVATIONS} observations`)
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.chainId === sorted[i - 1]!.chainId)
      throw new Error(`two observations of ${sorted[i]!.chainId}`)
  if (sorted.length === 0) return new Uint8Array(0)
  return cborEncode(
    sorted.map((o) => [
      uintToBytes(o.chainId),
      o.status,
      uintToBytes(o.blockNumber),
      uintToBytes(o.gasUsed),
      uintToBytes(o.gasLimit),
      uintToBytes(o.baseFeeWei),
      o.blockTimeMs,
      o.latencyMs,
    ]),
  )
}

/**
 * Inverse of {@link encodeObservations}. Throws P2PError DECODE on anything else (wrong shape, chains out
 * of order or twice, gas used above the limit, bytes that do not re-encode identically).
 */
export function decodeObservations(bytes: Uint8Array): Observation[] {
  if (bytes.length === 0) return []
  let v: unknown
  try {
    v = cborDecode(bytes, { strict: true })
  } catch (err) {
    throw new P2PError('DECODE', `observations: ${(err as Error).message}`)
  }
  const list = shape.array(v, 'observations', MAX_OBSERVATIONS).map((x, i): Observation => {
    const a = shape.array(x, `observations[${i}]`, 8)
    if (a.length !== 8) throw new P2PError('DECODE', `observations[${i}]: expected 8 fields`)
    const o: Observation = {
      chainId: bytesToUint(a[0], `observations[${i}].chainId`, 32),
      status: shape.int(a[1], `observations[${i}].status`, 0, 2) as HealthStatusCode,
      blockNumber: bytesToUint(a[2], `observations[${i}].blockNumber`, 8),
      gasUsed: bytesToUint(a[3], `observations[${i}].gasUsed`, 32),
      gasLimit: bytesToUint(a[4], `observations[${i}].gasLimit`, 32),
      baseFeeWei: bytesToUint(a[5], `observations[${i}].baseFeeWei`, 32),
      blockTimeMs: shape.int(a[6], `observations[${i}].blockTimeMs`, 0, UINT32_MAX),
      latencyMs: shape.int(a[7], `observations[${i}].latencyMs`, 0, UINT32_MAX),
    }
    if (o.gasUsed > o.gasLimit) throw new P2PError('DECODE', `observations[${i}]: gas used above the limit`)
    return o
  })
  for (let i = 1; i < list.length; i++) {
    if (list[i]!.chainId <= list[i - 1]!.chainId)
      throw new P2PError('DECODE', 'observations: chains not in ascending order')
  }
  if (!Buffer.from(encodeObservations(list)).equals(Buffer.from(bytes)))
    throw new P2PError('DECODE', 'observations: not canonically encoded')
  return list
}

/** An observation from a validator's own health report. */
export function observationOf(r: HealthReport): Observation {
  return {
    chainId: r.chainId,
    status: r.status,
    blockNumber: r.blockNumber,
    gasUsed: r.gasUsed,
    gasLimit: r.gasLimit,
    baseFeeWei: r.baseFeeWei,
    blockTimeMs: r.blockTimeMs,
    latencyMs: r.latencyMs,
  }
}

/** The observation as a health report of `validator` at `timestampMs` (what aggregation reads). */
export function observationReport(validator: Address, timestampMs: number, o: Observation): HealthReport {
  return {
    validator,
    chainId: o.chainId,
    blockNumber: o.blockNumber,
    gasUsed: o.gasUsed,
    gasLimit: o.gasLimit,
    gasUsedRatioBps: gasRatioBps(o.gasUsed, o.gasLimit),
    baseFeeWei: o.baseFeeWei,
    blockTimeMs: o.blockTimeMs,
    latencyMs: o.latencyMs,
    status: o.status,
    timestampMs: BigInt(timestampMs),
  }
}

/**
 * What an executor holds of one token on one rollup (issue 10, "Economics that close"): the router gives
 * an executor no fill it could not pay. Self-reported: a validator lying about its own balance only earns
 * itself assignments it cannot fill, which move away at their deadline.
 */
export interface Balance {
  readonly chainId: bigint
  /** Lowercase; 0x0…0 is the native coin. */
  readonly token: Address
  readonly amount: bigint
}

/** A validator's vote extension: its observation of every rollup and its own balances. */
export interface VoteExtension {
  readonly observations: readonly Observation[]
  readonly balances: readonly Balance[]
}

/** Most balances one extension carries (the extension is at most 2,048 bytes). */
export const MAX_BALANCES = 16
/** Version tag of the extension envelope `[1, observations, balances]`. */
const EXTENSION_V1 = 1

function cmpBalance(a: Balance, b: Balance): number {
  if (a.chainId !== b.chainId) return a.chainId < b.chainId ? -1 : 1
  return a.token < b.token ? -1 : a.token > b.token ? 1 : 0
}

/**
 * The extension bytes: with no balances, exactly {@link encodeObservations}' (what validators without an
 * executor sign); with balances, the envelope `[1, observations, balances]`, balances sorted by chain then
 * token, each `[chainId, token (20 bytes), amount]`.
 */
export function encodeExtension(e: VoteExtension): Uint8Array {
  if (e.balances.length === 0) return encodeObservations(e.observations)
  const balances = [...e.balances].sort(cmpBalance)
  if (balances.length > MAX_BALANCES) throw new Error(`more than ${MAX_BALANCES} balances`)
  for (let i = 1; i < balances.length; i++)
    if (cmpBalance(balances[i]!, balances[i - 1]!) === 0)
      throw new Error(`two balances of ${balances[i]!.token} on ${balances[i]!.chainId}`)
  const observations =
    e.observations.length === 0 ? [] : (cborDecode(encodeObservations(e.observations)) as unknown[])
  return cborEncode([
    EXTENSION_V1,
    observations,
    balances.map((b) => [
      uintToBytes(b.chainId),
      Buffer.from(b.token.slice(2), 'hex'),
      uintToBytes(b.amount),
    ]),
  ])
}

/**
 * Inverse of {@link encodeExtension}: either a bare observation list or the envelope. Throws P2PError
 * DECODE on anything else, or on bytes that do not re-encode identically.
 */
export function decodeExtension(bytes: Uint8Array): VoteExtension {
  if (bytes.length === 0) return { observations: [], balances: [] }
  let v: unknown
  try {
    v = cborDecode(bytes, { strict: true })
  } catch (err) {
    throw new P2PError('DECODE', `extension: ${(err as Error).message}`)
  }
  if (!Array.isArray(v) || v[0] !== EXTENSION_V1)
    return { observations: decodeObservations(bytes), balances: [] }
  if (v.length !== 3) throw new P2PError('DECODE', 'extension: expected [1, observations, balances]')
  const inner = shape.array(v[1], 'extension.observations', MAX_OBSERVATIONS)
  const observations = inner.length === 0 ? [] : decodeObservations(cborEncode(inner))
  const balances = shape.array(v[2], 'extension.balances', MAX_BALANCES).map((x, i): Balance => {
    const a = shape.array(x, `balances[${i}]`, 3)
    if (a.length !== 3) throw new P2PError('DECODE', `balances[${i}]: expected 3 fields`)
    return {
      chainId: bytesToUint(a[0], `balances[${i}].chainId`, 32),
      token: bytesToAddress(a[1], `balances[${i}].token`),
      amount: bytesToUint(a[2], `balances[${i}].amount`, 32),
    }
  })
  if (balances.length === 0) throw new P2PError('DECODE', 'extension: an envelope without balances')
  let out: VoteExtension
  try {
    out = { observations, balances }
    if (!Buffer.from(encodeExtension(out)).equals(Buffer.from(bytes)))
      throw new P2PError('DECODE', 'extension: not canonically encoded')
  } catch (err) {
    if (err instanceof P2PError) throw err
    throw new P2PError('DECODE', `extension: ${(err as Error).message}`)
  }
  return out
}
