/**
 * The HTTP API's protective limits (issue 13, item 2): a per-client request rate on every public route,
 * body and header sizes, and the socket timeouts that end slow-loris clients. Plain data with defaults,
 * and the parser of the `--rate-limit` flag.
 */
import { ConfigError } from '../errors.ts'

/** A request rate: at most `max` requests per client in each window of `windowMs`. */
export interface RateLimit {
  readonly max: number
  readonly windowMs: number
}

/** Everything {@link ApiServer} bounds, besides the routes' own checks. */
export interface ApiLimits {
  /** Per-client rate of the public routes; undefined: no limit (benchmarks, devnets on one address). */
  readonly rateLimit: RateLimit | undefined
  /**
   * IPv6 clients are one client per prefix of this length: anyone holds a /64, so counting single
   * addresses would let one host rotate through 2^64 budgets.
   */
  readonly ipv6Subnet: number
  /** Largest request body of every route but the intent batch, bytes. */
  readonly bodyLimit: number
  /** Largest `POST /v1/intents` body: a batch of {@link MAX_BATCH_INTENTS} intents, bytes. */
  readonly batchBodyLimit: number
  /** Largest request head (request line and headers), bytes (Node's `maxHeaderSize`). */
  readonly maxHeaderSize: number
  /** A client that has not sent its whole head within this is cut off, ms (slow headers). */
  readonly headersTimeoutMs: number
  /** A client that has not sent its whole request within this is cut off, ms (slow bodies). */
  readonly requestTimeoutMs: number
  /** An idle keep-alive connection is closed after this, ms. */
  readonly keepAliveTimeoutMs: number
  /** A socket idle this long is destroyed, ms (event streams opt out: they are idle by design). */
  readonly connectionTimeoutMs: number
  /** Most open connections of the whole server; beyond it new ones are refused. */
  readonly maxConnections: number
}

/** Most intents in one `POST /v1/intents` array (issue 13). */
export const MAX_BATCH_INTENTS = 256

/**
 * Sized for wallets, not aggregators: a wallet submits an intent, then polls it about once a second or
 * holds one event stream, a few requests a second at most; 10 a second leaves it room for bursts, and
 * one that posts more should batch (256 intents count as one request).
 */
export const DEFAULT_RATE_LIMIT: RateLimit = { max: 10, windowMs: 1000 }

export const DEFAULT_API_LIMITS: ApiLimits = {
  rateLimit: DEFAULT_RATE_LIMIT,
  ipv6Subnet: 64,
  bodyLimit: 64 * 1024,
  // A signed intent is at most 4 KiB of order plus its JSON overhead: 256 of them fit in 2 MiB.
  batchBodyLimit: 2 * 1024 * 1024,
  maxHeaderSize: 16 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  connectionTimeoutMs: 60_000,
  maxConnections: 4096,
}

const UNITS: Record<string, number> = { s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000 }

/**
 * Parses a `--rate-limit` value: `N/s`, `N/m` (or `N/min`), `N/h` requests per client, or `0` / `off`
 * for no limit. Throws ConfigError BAD_OPTION on anything else.
 */
export function parseRateLimit(value: string): RateLimit | undefined {
  const v = value.trim().toLowerCase()
  if (v === 'off' || v === '0') return undefined
  const m = /^(\d{1,9})\/(s|sec|m|min|h)$/.exec(v)
  const max = Number(m?.[1])
  if (m === null || !Number.isSafeInteger(max)) {
    throw new ConfigError(
      'BAD_OPTION',
      `rate limit ${JSON.stringify(value)}: expected N/s, N/m, N/h, 0 or off`,
    )
  }
  if (max === 0) return undefined
  return { max, windowMs: UNITS[m[2]!]! }
}

/** The flag form of a rate limit (`10/s`), `off` for none. */
export function formatRateLimit(r: RateLimit | undefined): string {
  if (r === undefined) return 'off'
  const unit = Object.entries(UNITS).find(([, ms]) => ms === r.windowMs)?.[0]
  return unit === undefined ? `${r.max}/${r.windowMs}ms` : `${r.max}/${unit}`
}
