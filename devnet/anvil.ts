/**
 * Devnet rollups: real anvil chains, one process each, behind a small TCP proxy.
 *
 * Every rollup is reached through its proxy (`rpcUrl`), so the URL stays the same across
 * `stop()`/`start()`/`restart()` and a rollup can be made unreachable without killing the chain.
 * Anvil listens on an ephemeral port (`--port 0`, the port is read from its "Listening on" line);
 * the proxy listens on 127.0.0.1:0. Processes are stopped by their own pid: SIGTERM, then SIGKILL
 * after a grace period, and the exit is awaited.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { gunzipSync } from 'node:zlib'
import type { Address, Hex } from 'viem'
import { keccak256, stringToHex } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { MurmurError } from '../src/errors.ts'

export type AnvilErrorCode =
  | 'BINARY_MISSING'
  | 'EXITED_EARLY'
  | 'START_TIMEOUT'
  | 'RPC_FAILED'
  | 'BAD_OPTION'
  | 'CLOSED'
/** A devnet rollup (anvil process) failed to start, answer or stop. */
export class AnvilError extends MurmurError<AnvilErrorCode> {}

/** Anvil's own default block gas limit. */
export const DEFAULT_GAS_LIMIT = 30_000_000n
export const DEFAULT_BLOCK_TIME_SEC = 1
export const DEFAULT_FIRST_CHAIN_ID = 901
/** 10 000 ether per funded account. */
export const DEFAULT_BALANCE_WEI = 10_000n * 10n ** 18n
export const DEFAULT_READY_TIMEOUT_MS = 20_000
export const DEFAULT_STOP_TIMEOUT_MS = 5_000
const READY_POLL_MS = 50
const RPC_TIMEOUT_MS = 5_000
/** anvil_dumpState of a long chain: tens of MB of JSON, gzipped and hex-encoded. */
const DUMP_TIMEOUT_MS = 60_000
/** Bytes of stdout/stderr kept for error reports. */
const OUTPUT_TAIL_BYTES = 16 * 1024

/**
 * Init code that burns the gas it is given: `loop: if (gas > 5000) goto loop; stop`.
 * A contract creation with this data uses nearly all of its gas limit and deploys nothing, so the
 * load needs no prior deployment and survives a chain reset.
 */
export const GAS_BURNER_INITCODE: Hex = '0x5b6113885a1160005700'
/** Intrinsic gas of a creation tx (53 000) plus calldata and the burner's exit margin. */
const MIN_BURN_GAS = 60_000n

export interface RollupOptions {
  chainId: number
  /** Interval mining period; fractions are allowed (anvil takes e.g. 0.5). */
  blockTimeSec?: number
  /** Block gas limit. */
  gasLimit?: bigint
  /** Base fee of the first block; EIP-1559 moves it from there. Anvil's default when absent. */
  baseFeeWei?: bigint
  /** Private keys whose addresses are funded (anvil_setBalance) after every start. */
  accounts?: readonly Hex[]
  balanceWei?: bigint
  readyTimeoutMs?: number
  stopTimeoutMs?: number
  /** Extra anvil arguments, appended last. */
  extraArgs?: readonly string[]
  /** Path to the anvil binary; the platform package of @foundry-rs/anvil when absent. */
  binary?: string
  /** Where anvil listens and the proxy connects to (its namespace's address in netns mode). */
  host?: string
  /** Where the proxy (rpcUrl) listens; 127.0.0.1 when absent. */
  proxyHost?: string
  /** Command prefix anvil runs under, e.g. `ip netns exec NS` (which execs, so the pid is anvil's). */
  exec?: readonly string[]
}

export interface RollupsOptions extends Omit<RollupOptions, 'chainId' | 'accounts'> {
  count: number
  firstChainId?: number
  /** Private keys to fund on every rollup, or how many keys to derive from `accountSeed`. */
  accounts?: readonly Hex[] | number
  /** Seed of the derived keys: key i = keccak256(utf8(`${seed}/${i}`)). Default 'murmur-devnet'. */
  accountSeed?: string
  /** Per rollup (index 0..count-1): where it runs (host, proxyHost, exec); the common options otherwise. */
  placement?: (index: number) => Pick<RollupOptions, 'host' | 'proxyHost' | 'exec'>
  /** Per-rollup options (block time, gas limit, base fee of rollup i), over the common ones. */
  each?: (index: number) => Omit<RollupOptions, 'chainId' | 'accounts'>
}

export interface FundedAccount {
  address: Address
  privateKey: Hex
}

/**
 * 'reset': connections are accepted and reset at once (fast failure, like a refused connection).
 * 'blackhole': connections are accepted and never answered (callers hit their timeouts).
 */
export type UnreachableMode = 'reset' | 'blackhole'

export interface CongestOptions {
  /** Load transactions per block. */
  txPerBlock: number
  /** Gas limit of each load transaction; default: the block gas limit * targetGasRatioBps / txPerBlock. */
  gasPerTx?: bigint
  /** Share of the block the load aims to fill, in basis points. Default 10 000 (full blocks). */
  targetGasRatioBps?: number
  /** Priority fee of the load; default 1 wei so that fills paying a normal tip still get in. */
  tipWei?: bigint
}

export interface Congestion {
  /** Load transactions accepted by the rollup so far. */
  readonly sent: number
  /** Failed rounds (rollup stopped, RPC error); the load retries on the next block. */
  readonly errors: number
  stop(): Promise<void>
}

export interface Rollup {
  readonly chainId: number
  /** Stable URL (the proxy), valid across stop/start/restart. */
  readonly rpcUrl: string
  /** Anvil's own URL while running; it changes on every start. */
  readonly upstreamUrl: string | undefined
  /** Pid of the running anvil process, undefined while stopped. */
  readonly pid: number | undefined
  readonly running: boolean
  readonly unreachable: boolean
  readonly accounts: readonly FundedAccount[]
  /** Start anvil again after stop(). Funds the accounts again. */
  start(): Promise<void>
  /**
   * Stop the anvil process (the proxy stays, requests to rpcUrl fail). With `keepState` the chain is
   * dumped first and the next start() loads it before the proxy forwards again: an outage, not a reset.
   */
  stop(options?: { keepState?: boolean }): Promise<void>
  /**
   * Stop and start on the same rpcUrl and chain id. The chain starts from genesis again (block 0,
   * fresh state, accounts re-funded) unless `keepState` is set, in which case the state is dumped
   * with anvil_dumpState before the stop and the new anvil starts from it (`--load-state`: balances,
   * code, storage, blocks and the block number carry over).
   */
  restart(options?: { keepState?: boolean }): Promise<void>
  /** Make rpcUrl unreachable (or reachable again) without touching the chain. */
  setUnreachable(unreachable: boolean, mode?: UnreachableMode): void
  /** Start a load of the rollup's own transactions (sent to anvil directly, not via the proxy). */
  congest(options: CongestOptions): Congestion
  /** Stop everything: load, anvil and proxy. Idempotent. */
  close(): Promise<void>
}

export interface Rollups {
  readonly rollups: readonly Rollup[]
  readonly accounts: readonly FundedAccount[]
  /** The rollup with this chain id; throws when there is none. */
  get(chainId: number): Rollup
  /** Close every rollup. */
  stop(): Promise<void>
}

/** Every rollup not closed yet, for stopAll() and the exit hook. */
const live = new Set<AnvilRollup>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // Last resort when the owner forgot to stop: kill our own children by pid on exit.
  process.on('exit', () => {
    for (const rollup of live) rollup.killNow()
  })
}

/** Path of the anvil binary shipped in the @foundry-rs/anvil platform package. */
export function resolveAnvilBinary(): string {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch
  const pkg = `@foundry-rs/anvil-${process.platform}-${arch}/package.json`
  let pkgJson: string
  try {
    pkgJson = createRequire(import.meta.url).resolve(pkg)
  } catch (cause) {
    throw new AnvilError('BINARY_MISSING', `anvil package ${pkg} is not installed`, { cause })
  }
  return join(dirname(pkgJson), 'bin', process.platform === 'win32' ? 'anvil.exe' : 'anvil')
}

/** Deterministic funded keys, so the same executors exist on every rollup of a devnet. */
export function deriveAccounts(count: number, seed = 'murmur-devnet'): FundedAccount[] {
  const out: FundedAccount[] = []
  for (let i = 0; i < count; i++) {
    const privateKey = keccak256(stringToHex(`${seed}/${i}`))
    out.push({ privateKey, address: privateKeyToAccount(privateKey).address })
  }
  return out
}

interface RpcResponse {
  id: number
  result?: unknown
  error?: { code: number; message: string }
}

/** One JSON-RPC call (or a batch when `calls` has several entries). */
async function rpcBatch(
  url: string,
  calls: ReadonlyArray<readonly [string, readonly unknown[]]>,
  timeoutMs = RPC_TIMEOUT_MS,
): Promise<unknown[]> {
  const body = calls.map(([method, params], id) => ({ jsonrpc: '2.0', id, method, params }))
  let res: Response
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body.length === 1 ? body[0] : body),
      signal: AbortSignal.timeout(timeoutMs),
    })
  } catch (cause) {
    throw new AnvilError('RPC_FAILED', `${url}: ${calls.map((c) => c[0]).join(',')} failed`, { cause })
  }
  if (!res.ok) throw new AnvilError('RPC_FAILED', `${url}: HTTP ${res.status}`)
  const json = (await res.json()) as RpcResponse | RpcResponse[]
  const list = Array.isArray(json) ? json : [json]
  const out: unknown[] = new Array(calls.length)
  for (const r of list) {
    // An answer to a request anvil could not read has id null: name every method asked.
    const method = calls[r.id]?.[0] ?? calls.map((c) => c[0]).join(',')
    if (r.error) throw new AnvilError('RPC_FAILED', `${url}: ${method}: ${r.error.message}`)
    out[r.id] = r.result
  }
  return out
}

async function rpc(url: string, method: string, params: readonly unknown[] = []): Promise<unknown> {
  const [result] = await rpcBatch(url, [[method, params]])
  return result
}

function toQuantity(n: bigint): Hex {
  return `0x${n.toString(16)}`
}

/** Keeps the last `max` bytes of a stream, for error messages. */
class OutputTail {
  #text = ''
  readonly #max: number
  constructor(max: number) {
    this.#max = max
  }
  push(chunk: string): void {
    this.#text += chunk
    if (this.#text.length > this.#max * 2) this.#text = this.#text.slice(-this.#max)
  }
  get text(): string {
    return this.#text.slice(-this.#max)
  }
}

/**
 * TCP proxy in front of one anvil. Passing through by default; while unreachable it resets or
 * holds every connection. With no upstream (anvil stopped) connections are reset.
 */
class RpcProxy {
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()
  #upstreamPort: number | undefined
  #mode: 'pass' | UnreachableMode = 'pass'
  port = 0
  readonly host: string
  readonly #upstreamHost: string

  constructor(host = '127.0.0.1', upstreamHost = '127.0.0.1') {
    this.host = host
    this.#upstreamHost = upstreamHost
    this.#server = net.createServer((client) => this.#onConnection(client))
  }

  async listen(): Promise<void> {
    this.#server.listen(0, this.host)
    await once(this.#server, 'listening')
    const addr = this.#server.address()
    if (addr === null || typeof addr === 'string') throw new Error('proxy has no TCP address')
    this.port = addr.port
  }

  setUpstream(port: number | undefined): void {
    this.#upstreamPort = port
    if (port === undefined) this.#dropAll()
  }

  get mode(): 'pass' | UnreachableMode {
    return this.#mode
  }

  setMode(mode: 'pass' | UnreachableMode): void {
    if (mode === this.#mode) return
    this.#mode = mode
    // Kept-alive connections would otherwise keep working through a "down" proxy.
    this.#dropAll()
  }

  async close(): Promise<void> {
    this.#dropAll()
    if (!this.#server.listening) return
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #track(socket: net.Socket): void {
    this.#sockets.add(socket)
    socket.on('error', () => {})
    socket.on('close', () => this.#sockets.delete(socket))
  }

  #dropAll(): void {
    for (const s of this.#sockets) s.resetAndDestroy()
    this.#sockets.clear()
  }

  #onConnection(client: net.Socket): void {
    this.#track(client)
    if (this.#mode === 'blackhole') return // accepted, never answered
    const port = this.#upstreamPort
    if (this.#mode === 'reset' || port === undefined) {
      client.resetAndDestroy()
      return
    }
    const upstream = net.connect(port, this.#upstreamHost)
    this.#track(upstream)
    client.pipe(upstream)
    upstream.pipe(client)
    const drop = (): void => {
      if (!client.destroyed) client.resetAndDestroy()
      if (!upstream.destroyed) upstream.resetAndDestroy()
    }
    client.on('error', drop)
    upstream.on('error', drop)
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  }
}

class LoadGenerator implements Congestion {
  #sent = 0
  #errors = 0
  #stopped = false
  #failure: unknown
  readonly #wake = new AbortController()
  readonly #done: Promise<void>

  constructor(rollup: AnvilRollup, options: CongestOptions) {
    if (!Number.isInteger(options.txPerBlock) || options.txPerBlock < 1) {
      throw new AnvilError('BAD_OPTION', `txPerBlock must be a positive integer, got ${options.txPerBlock}`)
    }
    if (options.gasPerTx !== undefined && options.gasPerTx < MIN_BURN_GAS) {
      throw new AnvilError('BAD_OPTION', `gasPerTx must be at least ${MIN_BURN_GAS}`)
    }
    // A failure ends the load; stop() reports it.
    this.#done = this.#run(rollup, options).catch((err: unknown) => {
      this.#failure = err
    })
  }

  get sent(): number {
    return this.#sent
  }
  get errors(): number {
    return this.#errors
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#wake.abort()
    await this.#done
    if (this.#failure !== undefined) throw this.#failure
  }

  async #pause(ms: number): Promise<void> {
    await delay(ms, undefined, { signal: this.#wake.signal }).catch(() => {})
  }

  async #run(rollup: AnvilRollup, options: CongestOptions): Promise<void> {
    const account = privateKeyToAccount(generatePrivateKey())
    const txPerBlock = BigInt(options.txPerBlock)
    const ratioBps = BigInt(options.targetGasRatioBps ?? 10_000)
    const tip = options.tipWei ?? 1n
    const pollMs = Math.max(20, Math.min(250, Math.floor((rollup.blockTimeSec * 1000) / 4)))
    let lastBlock = -1n
    let funded = false
    while (!this.#stopped) {
      const url = rollup.upstreamUrl
      if (url === undefined) {
        await this.#pause(pollMs)
        continue
      }
      try {
        const [block, pendingNonce, minedNonce, balance] = (await rpcBatch(url, [
          ['eth_getBlockByNumber', ['latest', false]],
          ['eth_getTransactionCount', [account.address, 'pending']],
          ['eth_getTransactionCount', [account.address, 'latest']],
          ['eth_getBalance', [account.address, 'latest']],
        ])) as [{ number: Hex; gasLimit: Hex; baseFeePerGas?: Hex }, Hex, Hex, Hex]
        const number = BigInt(block.number)
        if (number === lastBlock) {
          await this.#pause(pollMs)
          continue
        }
        lastBlock = number
        if (!funded || BigInt(balance) < DEFAULT_BALANCE_WEI / 2n) {
          // Also after a restart, which resets balances.
          await rpc(url, 'anvil_setBalance', [account.address, toQuantity(DEFAULT_BALANCE_WEI)])
          funded = true
        }
        const gasPerTx = options.gasPerTx ?? (BigInt(block.gasLimit) * ratioBps) / 10_000n / txPerBlock
        if (gasPerTx < MIN_BURN_GAS) {
          throw new AnvilError('BAD_OPTION', `gas per load tx ${gasPerTx} is below ${MIN_BURN_GAS}`)
        }
        // Keep two blocks' worth queued so every block finds a full load waiting.
        const backlog = BigInt(pendingNonce) - BigInt(minedNonce)
        const toSend = 2n * txPerBlock - backlog
        if (toSend <= 0n) continue
        const baseFee = BigInt(block.baseFeePerGas ?? '0x0')
        // Room for several blocks of +12.5 % base fee before a queued tx becomes unpayable.
        const maxFeePerGas = baseFee * 3n + tip
        const raws: Array<readonly [string, readonly unknown[]]> = []
        for (let i = 0n; i < toSend; i++) {
          const raw = await account.signTransaction({
            type: 'eip1559',
            chainId: rollup.chainId,
            nonce: Number(BigInt(pendingNonce) + i),
            gas: gasPerTx,
            maxFeePerGas,
            maxPriorityFeePerGas: tip,
            data: GAS_BURNER_INITCODE,
          })
          raws.push(['eth_sendRawTransaction', [raw]])
        }
        await rpcBatch(url, raws)
        this.#sent += raws.length
      } catch (err) {
        if (err instanceof AnvilError && err.code === 'BAD_OPTION') throw err
        this.#errors++
        funded = false
        await this.#pause(pollMs)
      }
    }
  }
}

class AnvilRollup implements Rollup {
  readonly chainId: number
  readonly accounts: readonly FundedAccount[]
  readonly blockTimeSec: number
  readonly #options: RollupOptions
  readonly #binary: string
  readonly #proxy: RpcProxy
  readonly #host: string
  readonly #loads = new Set<LoadGenerator>()
  #child: ChildProcess | undefined
  #upstreamUrl: string | undefined
  #closed = false
  /**
   * The file holding the state stop({keepState}) dumped (anvil_dumpState, un-gzipped), which the next
   * start() passes to anvil as `--load-state`. Not anvil_loadState: anvil refuses a request body over
   * about 2 MB (`Invalid request`), which a devnet's chain passes after some minutes (10,000 blocks
   * dump to 3.3 MB of hex), and the rollup then never came back from an outage.
   */
  #savedState: string | undefined

  constructor(options: RollupOptions, binary: string) {
    this.#options = options
    this.#binary = binary
    this.#host = options.host ?? '127.0.0.1'
    this.#proxy = new RpcProxy(options.proxyHost, this.#host)
    this.chainId = options.chainId
    this.blockTimeSec = options.blockTimeSec ?? DEFAULT_BLOCK_TIME_SEC
    this.accounts = (options.accounts ?? []).map((privateKey) => ({
      privateKey,
      address: privateKeyToAccount(privateKey).address,
    }))
  }

  get rpcUrl(): string {
    return `http://${this.#proxy.host}:${this.#proxy.port}`
  }
  get upstreamUrl(): string | undefined {
    return this.#upstreamUrl
  }
  get pid(): number | undefined {
    return this.#child?.pid
  }
  get running(): boolean {
    return this.#child !== undefined
  }
  get unreachable(): boolean {
    return this.#proxy.mode !== 'pass'
  }

  async init(): Promise<void> {
    live.add(this)
    installExitHook()
    await this.#proxy.listen()
    await this.start()
  }

  async start(): Promise<void> {
    if (this.#closed) throw new AnvilError('CLOSED', `rollup ${this.chainId} is closed`)
    if (this.#child !== undefined) return
    // A saved state is loaded by anvil as it starts, before the proxy forwards: no client ever sees the
    // chain at block 0. Its balances are the chain's own (not funded again).
    const saved = this.#savedState
    const port = await this.#spawn(saved)
    this.#upstreamUrl = `http://${this.#host}:${port}`
    try {
      if (saved === undefined) await this.#fund(this.#upstreamUrl)
    } catch (err) {
      // Never half up: with its anvil running but the proxy not forwarding, every later start() would
      // return at once and the rollup stay down for good.
      await this.stop()
      throw err
    }
    if (saved !== undefined) {
      this.#savedState = undefined
      await rm(dirname(saved), { recursive: true, force: true })
    }
    this.#proxy.setUpstream(port)
  }

  async stop(options: { keepState?: boolean } = {}): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    // Mining stops before the dump, so that no block is mined after it and lost: the next anvil would
    // mine another block at that number (a reorg that a chain with `confirmations` 0 reads as final).
    if (options.keepState && this.#upstreamUrl !== undefined) {
      await rpc(this.#upstreamUrl, 'evm_setIntervalMining', [0])
      const [dump] = await rpcBatch(this.#upstreamUrl, [['anvil_dumpState', []]], DUMP_TIMEOUT_MS)
      this.#savedState = await saveState(this.chainId, dump as Hex)
    }
    this.#proxy.setUpstream(undefined)
    this.#upstreamUrl = undefined
    await killAndWait(child, this.#options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS)
    this.#child = undefined
  }

  async restart(options: { keepState?: boolean } = {}): Promise<void> {
    await this.stop(options)
    await this.start()
  }

  setUnreachable(unreachable: boolean, mode: UnreachableMode = 'reset'): void {
    this.#proxy.setMode(unreachable ? mode : 'pass')
  }

  congest(options: CongestOptions): Congestion {
    if (this.#closed) throw new AnvilError('CLOSED', `rollup ${this.chainId} is closed`)
    const load = new LoadGenerator(this, options)
    this.#loads.add(load)
    const stop = load.stop.bind(load)
    return {
      get sent() {
        return load.sent
      },
      get errors() {
        return load.errors
      },
      stop: async () => {
        this.#loads.delete(load)
        await stop()
      },
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.allSettled([...this.#loads].map((l) => l.stop()))
    this.#loads.clear()
    await this.stop()
    if (this.#savedState !== undefined) await rm(dirname(this.#savedState), { recursive: true, force: true })
    this.#savedState = undefined
    await this.#proxy.close()
    live.delete(this)
  }

  /** Synchronous SIGKILL for the process exit hook. */
  killNow(): void {
    try {
      this.#child?.kill('SIGKILL')
    } catch {
      // already gone
    }
  }

  #args(): string[] {
    const o = this.#options
    const args = [
      '--host',
      this.#host,
      '--port',
      '0',
      '--chain-id',
      String(this.chainId),
      '--block-time',
      String(this.blockTimeSec),
      '--gas-limit',
      String(o.gasLimit ?? DEFAULT_GAS_LIMIT),
      // Funding is ours (anvil_setBalance); no dev accounts keeps the output and start-up small.
      '--accounts',
      '0',
      '--color',
      'never',
    ]
    if (o.baseFeeWei !== undefined) args.push('--block-base-fee-per-gas', String(o.baseFeeWei))
    if (o.extraArgs) args.push(...o.extraArgs)
    return args
  }

  /** Spawns anvil (from a saved state file) and resolves with its port once eth_chainId answers with our chain id. */
  async #spawn(loadState?: string): Promise<number> {
    const timeoutMs = this.#options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
    const deadline = Date.now() + timeoutMs
    const [cmd, ...pre] = [...(this.#options.exec ?? []), this.#binary]
    const args = [...this.#args(), ...(loadState === undefined ? [] : ['--load-state', loadState])]
    const child = spawn(cmd!, [...pre, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    const stdout = new OutputTail(OUTPUT_TAIL_BYTES)
    const stderr = new OutputTail(OUTPUT_TAIL_BYTES)
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    // Drain both pipes for the whole life of the process: a full pipe would block anvil.
    child.stdout.on('data', (d: string) => stdout.push(d))
    child.stderr.on('data', (d: string) => stderr.push(d))

    let failure: AnvilError | undefined
    child.once('error', (err: NodeJS.ErrnoException) => {
      failure =
        err.code === 'ENOENT' || err.code === 'EACCES'
          ? new AnvilError('BINARY_MISSING', `cannot run anvil at ${this.#binary}: ${err.code}`, {
              cause: err,
            })
          : new AnvilError('EXITED_EARLY', `anvil failed: ${err.message}`, { cause: err })
    })
    child.once('exit', (code, signal) => {
      failure ??= new AnvilError(
        'EXITED_EARLY',
        `anvil (chain ${this.chainId}) exited with ${signal ?? code} before it was ready\n` +
          `stderr: ${stderr.text}\nstdout: ${stdout.text.slice(-2000)}`,
      )
    })

    let port: number | undefined
    try {
      while (true) {
        if (failure) throw failure
        if (Date.now() > deadline) {
          throw new AnvilError(
            'START_TIMEOUT',
            `anvil (chain ${this.chainId}) not ready after ${timeoutMs} ms\nstderr: ${stderr.text}`,
          )
        }
        if (port === undefined) {
          const m = new RegExp(`Listening on ${this.#host.replaceAll('.', '\\.')}:(\\d+)`).exec(stdout.text)
          if (m) port = Number(m[1])
        }
        if (port !== undefined) {
          const id = await rpc(`http://${this.#host}:${port}`, 'eth_chainId').catch(() => undefined)
          if (typeof id === 'string' && BigInt(id) === BigInt(this.chainId)) break
        }
        await delay(READY_POLL_MS)
      }
    } catch (err) {
      await killAndWait(child, this.#options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS)
      throw err
    }
    this.#child = child
    child.once('exit', () => {
      // Died on its own (or killed from outside): the proxy must stop forwarding.
      if (this.#child === child) {
        this.#child = undefined
        this.#upstreamUrl = undefined
        this.#proxy.setUpstream(undefined)
      }
    })
    return port
  }

  async #fund(url: string): Promise<void> {
    const balance = toQuantity(this.#options.balanceWei ?? DEFAULT_BALANCE_WEI)
    if (this.accounts.length === 0) return
    await rpcBatch(
      url,
      this.accounts.map((a) => ['anvil_setBalance', [a.address, balance]] as const),
    )
  }
}

/**
 * Writes an anvil_dumpState answer (hex of gzipped JSON) as the JSON file `--load-state` reads, in a
 * directory of its own under the system's temporary directory; returns the file's path.
 */
async function saveState(chainId: number, hex: Hex): Promise<string> {
  const raw = Buffer.from(hex.slice(2), 'hex')
  const json = raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw
  const dir = await mkdtemp(join(tmpdir(), `murmur-anvil-${chainId}-`))
  const file = join(dir, 'state.json')
  await writeFile(file, json)
  return file
}

/** SIGTERM by pid, SIGKILL after `graceMs`, and wait for the exit (the child is reaped then). */
async function killAndWait(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = AbortSignal.timeout(graceMs)
  const inTime = await Promise.race([exited.then(() => true), once(timer, 'abort').then(() => false)])
  if (!inTime) {
    child.kill('SIGKILL')
    await exited
  }
}

/** Starts one anvil rollup behind its proxy and waits until it answers. */
export async function startRollup(options: RollupOptions): Promise<Rollup> {
  if (!Number.isSafeInteger(options.chainId) || options.chainId <= 0) {
    throw new AnvilError('BAD_OPTION', `bad chain id ${options.chainId}`)
  }
  const rollup = new AnvilRollup(options, options.binary ?? resolveAnvilBinary())
  try {
    await rollup.init()
  } catch (err) {
    await rollup.close()
    throw err
  }
  return rollup
}

/**
 * Starts `count` rollups with chain ids firstChainId, firstChainId+1, ..., all funding the same
 * accounts. If one fails to start, the others are stopped and the error is thrown.
 */
export async function startRollups(options: RollupsOptions): Promise<Rollups> {
  const {
    count,
    firstChainId = DEFAULT_FIRST_CHAIN_ID,
    accounts = 0,
    accountSeed,
    placement,
    each,
    ...common
  } = options
  if (!Number.isInteger(count) || count < 1) throw new AnvilError('BAD_OPTION', `bad rollup count ${count}`)
  const funded =
    typeof accounts === 'number'
      ? deriveAccounts(accounts, accountSeed)
      : accounts.map((privateKey) => ({ privateKey, address: privateKeyToAccount(privateKey).address }))
  const keys = funded.map((a) => a.privateKey)
  const results = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      startRollup({ ...common, ...each?.(i), ...placement?.(i), chainId: firstChainId + i, accounts: keys }),
    ),
  )
  const started = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const failed = results.find((r) => r.status === 'rejected')
  if (failed) {
    await stopAll(started)
    throw failed.reason
  }
  return {
    rollups: started,
    accounts: funded,
    get(chainId: number): Rollup {
      const r = started.find((x) => x.chainId === chainId)
      if (!r) throw new AnvilError('BAD_OPTION', `no rollup with chain id ${chainId}`)
      return r
    },
    stop: () => stopAll(started),
  }
}

/** Closes the given rollups, or every rollup this process started and did not close yet. */
export async function stopAll(rollups?: Iterable<Rollup>): Promise<void> {
  const targets = rollups ? [...rollups] : [...live]
  await Promise.all(targets.map((r) => r.close()))
}
