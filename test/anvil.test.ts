import { randomBytes } from 'node:crypto'
import { readdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AnvilError, type Rollup, type Rollups, startRollup, startRollups, stopAll } from '../devnet/anvil.ts'
import { alive } from './helpers/proc.ts'

const GAS_LIMIT = 3_000_000n
const BASE_FEE_WEI = 1_000_000_000n

interface Block {
  number: bigint
  gasUsed: bigint
  gasLimit: bigint
  baseFeePerGas: bigint
}

async function call(
  url: string,
  method: string,
  params: unknown[] = [],
  timeoutMs = 3_000,
): Promise<unknown> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(timeoutMs),
  })
  const json = (await res.json()) as { result?: unknown; error?: { message: string } }
  if (json.error) throw new Error(json.error.message)
  return json.result
}

async function chainId(url: string, timeoutMs?: number): Promise<number> {
  return Number(BigInt((await call(url, 'eth_chainId', [], timeoutMs)) as string))
}

async function block(url: string, tag: string | bigint = 'latest'): Promise<Block> {
  const t = typeof tag === 'bigint' ? `0x${tag.toString(16)}` : tag
  const b = (await call(url, 'eth_getBlockByNumber', [t, false])) as Record<string, string>
  return {
    number: BigInt(b['number']!),
    gasUsed: BigInt(b['gasUsed']!),
    gasLimit: BigInt(b['gasLimit']!),
    baseFeePerGas: BigInt(b['baseFeePerGas']!),
  }
}

/** Polls `check` until it returns a value other than undefined, or fails at the deadline. */
async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const v = await check()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
}

describe('anvil rollups', () => {
  let net: Rollups
  let a: Rollup
  let b: Rollup

  beforeAll(async () => {
    net = await startRollups({
      count: 2,
      firstChainId: 901,
      blockTimeSec: 1,
      gasLimit: GAS_LIMIT,
      baseFeeWei: BASE_FEE_WEI,
      accounts: 2,
    })
    a = net.get(901)
    b = net.get(902)
  })

  afterAll(async () => {
    await net?.stop()
  })

  it('starts each chain with its chain id, funded accounts and advancing blocks', async () => {
    expect(net.rollups.map((r) => r.chainId)).toEqual([901, 902])
    expect(a.rpcUrl).not.toBe(b.rpcUrl)
    for (const r of [a, b]) {
      expect(await chainId(r.rpcUrl)).toBe(r.chainId)
      expect(alive(r.pid!)).toBe(true)
      for (const acct of net.accounts) {
        const bal = BigInt((await call(r.rpcUrl, 'eth_getBalance', [acct.address, 'latest'])) as string)
        expect(bal).toBeGreaterThan(0n)
      }
      expect((await block(r.rpcUrl)).gasLimit).toBe(GAS_LIMIT)
    }
    // Both chains mine on their own clock.
    await Promise.all(
      [a, b].map(async (r) => {
        const start = (await block(r.rpcUrl)).number
        await waitFor(`two new blocks on ${r.chainId}`, async () =>
          (await block(r.rpcUrl)).number >= start + 2n ? true : undefined,
        )
      }),
    )
    // The same derived executors on both rollups.
    expect(net.accounts).toHaveLength(2)
    expect(a.accounts).toEqual(b.accounts)
  })

  it('congestion fills blocks near the gas limit and raises the base fee', async () => {
    const before = await block(a.rpcUrl)
    const load = a.congest({ txPerBlock: 4 })
    try {
      const full = await waitFor('three consecutive near-full blocks', async () => {
        const head = await block(a.rpcUrl)
        if (head.number < 3n) return undefined
        const recent = [
          head,
          await block(a.rpcUrl, head.number - 1n),
          await block(a.rpcUrl, head.number - 2n),
        ]
        return recent.every((x) => x.gasUsed * 10_000n >= x.gasLimit * 9_500n) ? head : undefined
      })
      expect(full.gasUsed).toBeLessThanOrEqual(full.gasLimit)
      // EIP-1559: each full block raises the next base fee by 12.5 %.
      const next = await waitFor('the block after', async () => {
        const x = await block(a.rpcUrl)
        return x.number > full.number ? await block(a.rpcUrl, full.number + 1n) : undefined
      })
      expect(next.baseFeePerGas).toBeGreaterThan(full.baseFeePerGas)
      expect(next.baseFeePerGas).toBeGreaterThan(before.baseFeePerGas)
      expect(load.sent).toBeGreaterThan(0)
    } finally {
      await load.stop()
    }
    // The other rollup is untouched.
    const other = await block(b.rpcUrl)
    expect(other.gasUsed).toBe(0n)
  })

  it('unreachable toggles without touching the chain', async () => {
    const pid = a.pid!
    a.setUnreachable(true)
    expect(a.unreachable).toBe(true)
    await expect(chainId(a.rpcUrl)).rejects.toThrow()
    // The chain itself still runs.
    expect(await chainId(a.upstreamUrl!)).toBe(901)
    expect(a.pid).toBe(pid)

    a.setUnreachable(true, 'blackhole')
    const t0 = Date.now()
    await expect(chainId(a.rpcUrl, 300)).rejects.toThrow()
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)

    a.setUnreachable(false)
    expect(a.unreachable).toBe(false)
    expect(await chainId(a.rpcUrl)).toBe(901)
  })

  it('stop kills the process and fails RPC; start brings it back on the same URL', async () => {
    const pid = b.pid!
    const url = b.rpcUrl
    await b.stop()
    expect(b.running).toBe(false)
    expect(b.pid).toBeUndefined()
    expect(() => process.kill(pid, 0)).toThrow()
    await expect(chainId(url)).rejects.toThrow()

    await b.start()
    expect(b.rpcUrl).toBe(url)
    expect(b.pid).not.toBe(pid)
    expect(await chainId(url)).toBe(902)
  })

  it('restart keeps URL and chain id; state resets unless keepState', async () => {
    const probe = '0x00000000000000000000000000000000000000aa'
    await call(a.rpcUrl, 'anvil_setBalance', [probe, '0x1234'])
    const pid = a.pid!
    const url = a.rpcUrl
    const height = (await block(url)).number

    await a.restart({ keepState: true })
    expect(a.rpcUrl).toBe(url)
    expect(a.pid).not.toBe(pid)
    expect(alive(pid)).toBe(false)
    expect(await chainId(url)).toBe(901)
    expect(await call(url, 'eth_getBalance', [probe, 'latest'])).toBe('0x1234')
    expect((await block(url)).number).toBeGreaterThanOrEqual(height)

    await a.restart()
    expect(await chainId(url)).toBe(901)
    expect(await call(url, 'eth_getBalance', [probe, 'latest'])).toBe('0x0')
    // Funded accounts are funded again after a reset.
    const bal = BigInt((await call(url, 'eth_getBalance', [net.accounts[0]!.address, 'latest'])) as string)
    expect(bal).toBeGreaterThan(0n)
  })

  it('keepState carries a chain whose dump is over anvil_loadState limit (a devnet after some minutes)', async () => {
    // A long devnet's chain (10,000 blocks dump to about 3.3 MB of hex) made anvil answer anvil_loadState
    // `Invalid request`, and the rollup never came back from `rollup-down`. Here 100 contracts of random
    // (incompressible) code make a dump of about 4.8 MB of hex at once.
    const probe = '0x00000000000000000000000000000000000000bb'
    const codes: Array<[string, string]> = []
    for (let i = 0; i < 100; i++) {
      const addr = `0x${(0xc0de0000 + i).toString(16).padStart(40, '0')}`
      codes.push([addr, `0x${randomBytes(24_000).toString('hex')}`])
      await call(a.rpcUrl, 'anvil_setCode', codes[i]!)
    }
    await call(a.rpcUrl, 'anvil_setBalance', [probe, '0x4321'])
    const dump = (await call(a.rpcUrl, 'anvil_dumpState', [], 30_000)) as string
    expect(dump.length).toBeGreaterThan(4_000_000)
    const height = (await block(a.rpcUrl)).number
    const dirs = async () => (await readdir(tmpdir())).filter((d) => d.startsWith('murmur-anvil-901-'))
    const before = await dirs()
    await a.stop({ keepState: true })
    await a.start()
    expect(await chainId(a.rpcUrl)).toBe(901)
    expect((await block(a.rpcUrl)).number).toBeGreaterThanOrEqual(height)
    expect(await call(a.rpcUrl, 'eth_getBalance', [probe, 'latest'])).toBe('0x4321')
    expect(await call(a.rpcUrl, 'eth_getCode', [codes[99]![0], 'latest'])).toBe(codes[99]![1])
    // Mining stopped for the dump and goes on from the kept height.
    const deadline = Date.now() + 10_000
    while ((await block(a.rpcUrl)).number <= height && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200))
    expect((await block(a.rpcUrl)).number).toBeGreaterThan(height)
    // The state file is gone once the new anvil has loaded it.
    expect(await dirs()).toEqual(before)
  }, 60_000)
})

describe('anvil start failures and stopAll', () => {
  it('reports a missing binary', async () => {
    const err = await startRollup({ chainId: 990, binary: '/nonexistent/anvil' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AnvilError)
    expect((err as AnvilError).code).toBe('BINARY_MISSING')
  })

  it('reports an anvil that exits early, with its stderr', async () => {
    const err = await startRollup({ chainId: 991, extraArgs: ['--hardfork', 'no-such-fork'] }).catch(
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(AnvilError)
    expect((err as AnvilError).code).toBe('EXITED_EARLY')
    expect((err as AnvilError).message).toContain('stderr:')
  })

  it('stopAll stops every rollup still running', async () => {
    const r = await startRollup({ chainId: 992, blockTimeSec: 1 })
    const pid = r.pid!
    expect(await chainId(r.rpcUrl)).toBe(992)
    await stopAll()
    expect(alive(pid)).toBe(false)
    await expect(chainId(r.rpcUrl, 1_000)).rejects.toThrow()
    await expect(r.start()).rejects.toMatchObject({ code: 'CLOSED' })
  })
})
