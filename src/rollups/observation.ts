/**
 * A validator's observation of every rollup, carried as the vote extension of its precommits (ABCI++,
 * the way Skip's Slinky carries prices): the health view of block H is the stake-weighted median over the
 * observations in its last commit, so no proposer can hide or invent a report (ARCHITECTURE.md,
 * Consensus). The signed precommit covers keccak256 of these bytes.
 *
 * Encoding: CBOR array, one entry per rollup in ascending chain id order, each
 * `[chainId, status, blockNumber, gasUsed, gasLimit, baseFeeWei, blockTimeMs, latencyMs]` (big integers as
 * minimal big-endian bytes). Canonical: a decoded extension re-encodes to the same bytes.
 */
import { decode as cborDecode, encode as cborEncode } from 'cborg'
import type { Address } from 'viem'
import { bytesToUint, uintToBytes } from '../codec/bytes.ts'
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
