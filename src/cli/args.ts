/** Argument parsers and output helpers shared by the `murmur` commands (cli.ts, chain.ts). */
import { CommanderError, InvalidArgumentError } from 'commander'
import { MurmurError } from '../errors.ts'

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage. */
export const EXIT_USAGE = 2
/** `CHAINID=URL` (repeatable) into a map by chain id. */
export function parseRollup(value: string, previous: Map<number, string>): Map<number, string> {
  const m = /^(\d+)=(https?:\/\/.+|wss?:\/\/.+)$/.exec(value)
  if (m === null) throw new InvalidArgumentError('expected CHAINID=RPC_URL, e.g. 901=http://127.0.0.1:8545')
  const next = new Map(previous)
  next.set(Number(m[1]), m[2]!)
  return next
}

/** GET a node API URL; coded errors for transport failures and the node's own refusals. */
export async function getJson(url: string): Promise<unknown> {
  return (await requestJson(url)).body
}

/**
 * POST a JSON body to a node API URL: the status and body of a 2xx answer; coded errors for transport
 * failures and the node's refusals (its `{error:{code,message}}`; a 503 says when to retry).
 */
export async function postJson(url: string, body: unknown): Promise<{ status: number; body: unknown }> {
  return requestJson(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

async function requestJson(url: string, init: RequestInit = {}): Promise<{ status: number; body: unknown }> {
  let res: Response
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(10_000) })
  } catch (err) {
    throw new MurmurError('UNREACHABLE', `cannot reach ${url}: ${(err as Error).message}`)
  }
  const body = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null
  if (!res.ok) {
    const retry = res.headers.get('retry-after')
    const message = body?.error?.message ?? res.statusText
    throw new MurmurError(
      body?.error?.code ?? `HTTP_${res.status}`,
      retry === null ? message : `${message} (retry after ${retry} s)`,
    )
  }
  return { status: res.status, body }
}

/** Pretty JSON on stdout. */
export function print(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

/** Bad usage found after parsing: one line on stderr, exit code 2 (as commander's own errors). */
export function usage(message: string): never {
  process.stderr.write(`murmur: error: ${message} (see --help)\n`)
  throw new CommanderError(EXIT_USAGE, 'murmur.usage', message)
}

/** A decimal integer (wei or token units). */
export function bigintArg(value: string): bigint {
  if (!/^[0-9]+$/.test(value)) throw new InvalidArgumentError('expected a decimal integer (wei)')
  return BigInt(value)
}

/** One chain id, e.g. 901. */
export function chainArg(value: string): bigint {
  if (!/^[1-9][0-9]*$/.test(value)) throw new InvalidArgumentError('expected one chain id, e.g. 901')
  return BigInt(value)
}

/** Comma-separated chain ids. */
export function chainsArg(value: string): bigint[] {
  if (!/^[0-9]+(,[0-9]+)*$/.test(value)) throw new InvalidArgumentError('expected chain ids like 901,902')
  return value.split(',').map((c) => BigInt(c))
}

/** A private key from a JSON file with `privateKey`, or a file holding just the hex key. */
export async function readKeyFile(path: string): Promise<`0x${string}`> {
  const { readFile } = await import('node:fs/promises')
  let text: string
  try {
    text = (await readFile(path, 'utf8')).trim()
  } catch (err) {
    throw new MurmurError('BAD_KEY', `cannot read ${path}: ${(err as Error).message}`)
  }
  let key = text
  if (text.startsWith('{')) {
    try {
      key = String((JSON.parse(text) as { privateKey?: unknown }).privateKey ?? '')
    } catch {
      throw new MurmurError('BAD_KEY', `${path} is not valid JSON`)
    }
  }
  if (!/^0x[0-9a-fA-F]{64}$/.test(key))
    throw new MurmurError('BAD_KEY', `${path}: expected a 32-byte 0x hex private key`)
  return key as `0x${string}`
}

/** A non-negative integer. */
export function intArg(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer')
  return n
}

/** A 0x address argument, lowercased. */
export function addressArg(value: string): `0x${string}` {
  if (!/^0x[0-9a-fA-F]{40}$/.test(value))
    throw new InvalidArgumentError('expected a 0x-prefixed 20-byte address')
  return value.toLowerCase() as `0x${string}`
}
