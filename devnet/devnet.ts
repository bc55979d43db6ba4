import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { join, resolve } from 'node:path'
import type { Address, Hex } from 'viem'
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { IntentTally } from '../src/api/intent-tally.ts'
import { MurmurClient } from '../src/client/index.ts'
import { MurmurError } from '../src/errors.ts'
import { type Rollups, startRollups } from './anvil.ts'
import { DashboardServer } from './dashboard-server.ts'
import { FLAKY, type LinkFault, NetnsError, NetnsNet, type NetnsRecord, netnsUnavailable } from './netns.ts'
import { type PreparedNetwork, prepareNetwork } from './network.ts'
import { type NodeProcess, spawnNode } from './process.ts'
import { planRollups, type RunningLoad, startProfileLoad } from './profiles.ts'
import { DelayRelays, RELAYED_P2P_PORT, type RelayRecord } from './relays.ts'
import {
  DEVNET_GAS_WEI,
  DEVNET_REFUND_GRACE_SEC,
  DEVNET_SPREAD_BPS,
  type DevnetSettlement,
  erc20Intent,
  fundGas,
  setupDevnetSettlement,
} from './settlement.ts'
import { followEvents } from './sse.ts'
import { type Arrival, type TrafficMode, TrafficSchedule } from './traffic.ts'

export const STATE_FILE = 'devnet.json'

export interface DevnetOptions {
  dir: string
  nodes: number
  rollups: number
  /** Intents per second sent by the devnet's wallets, spread over the running nodes. */
  rate: number
  /** Number of wallets sending intents. */
  wallets: number
  blockTimeSec: number
  /** Rollup profile (devnet/profiles.ts): 'uniform' (every rollup a `blockTimeSec` anvil), 'mixed', or one kind. */
  profile: string
  /** Shape of the wallets' traffic at `rate` (devnet/traffic.ts). */
  traffic: TrafficMode
  /** Seed of the traffic schedule. */
  seed: number
  /**
   * Deploy the settlement contracts and a test token on every rollup and send ERC-20 intents (default).
   * False: the old native mode (no contracts, native intents the executor pays out of its own balance).
   */
  settlement: boolean
  /** Print a status line every this many ms (0 = never). */
  statusEveryMs: number
  /** Each node and anvil in its own network namespace (Linux, root): partitions and link faults drop packets. */
  netns: boolean
  /** Port of the control server and dashboard on 127.0.0.1 (0: any free port). */
  controlPort: number
  out: (line: string) => void
}

export const DEFAULT_DEVNET_OPTIONS: DevnetOptions = {
  dir: '.devnet',
  nodes: 4,
  rollups: 3,
  rate: 2,
  wallets: 8,
  blockTimeSec: 1,
  profile: 'uniform',
  traffic: 'steady',
  seed: 1,
  settlement: true,
  statusEveryMs: 5_000,
  netns: false,
  controlPort: 0,
  out: (l) => process.stdout.write(l + '\n'),
}

/** What `devnet up` records in `<dir>/devnet.json` for the other devnet commands. */
export interface DevnetState {
  control: string
  dashboard: string
  genesis: string
  nodes: Array<{ index: number; pid: number | null; api: string | null; peerId: string; listen: string[] }>
  rollups: Array<{ chainId: number; rpcUrl: string; pid: number | null; kind?: string }>
  /** The contracts, token and funded wallets; null in native mode. */
  settlement: DevnetSettlement | null
  /** The namespaces and bridge of a `--netns` devnet (all named after its id); null on loopback. */
  netns?: NetnsRecord | null
  /** The delay relays in front of the nodes (`--netns` without netem); empty otherwise. */
  relays?: RelayRecord[]
}

/** The devnet's pool alarm levels (docs/rewards.md, section 5), for its default 4 nodes and 3 rollups. */
export const DEVNET_POOL_LEVELS = {
  minPoolValidators: 2,
  clearPoolValidators: 3,
  minPoolStake: '500000',
  clearPoolStake: '900000',
} as const

/**
 * The pool alarm levels for `nodes` validators of 1 000 000 spread over `rollups` pools: the stake
 * levels are 3/8 and 27/40 of a pool's share (500 000 and 900 000 of 1.33 M at 4 and 3, the
 * DEVNET_POOL_LEVELS). Fixed levels alarmed every pool of a 16-rollup devnet (250 000 each) at genesis,
 * and the nodes then refused every intent.
 */
export function devnetPoolLevels(
  nodes: number,
  rollups: number,
): { minPoolValidators: number; clearPoolValidators: number; minPoolStake: string; clearPoolStake: string } {
  const total = BigInt(nodes) * 1_000_000n
  return {
    ...DEVNET_POOL_LEVELS,
    minPoolStake: String((total * 3n) / (8n * BigInt(rollups))),
    clearPoolStake: String((total * 27n) / (40n * BigInt(rollups))),
  }
}

export class DevnetError extends MurmurError<'NO_DEVNET' | 'BAD_ARGS' | 'CONTROL_FAILED' | 'STOPPED'> {}

/** The fault verbs that need `--netns` (tc on a node's veth: netem, or the dropper without it). */
const LINK_VERBS = ['delay', 'loss', 'flaky', 'clear'] as const

/** Bounds of `devnet spike RATE SECONDS`. */
export const SPIKE_MAX_RATE = 500
export const SPIKE_MAX_SEC = 3_600

/**
 * A whole network on one machine: K anvil rollups, N node processes, a control server for the
 * fault commands, and a dashboard. Runs until `stop()`; every process is stopped by its pid.
 */
export class Devnet {
  readonly opts: DevnetOptions
  net: PreparedNetwork | undefined
  rollups: Rollups | undefined
  readonly procs: Array<NodeProcess | undefined> = []
  #server: Server | undefined
  #dashboard: DashboardServer | undefined
  #timers: NodeJS.Timeout[] = []
  /** Intents by state and fill latency, from a node's event stream (the status line's figures). */
  readonly tally = new IntentTally()
  /** The event stream being followed, and the node it comes from. */
  #events: { ac: AbortController; node: number } | undefined
  #stopping = false
  #sent = 0
  #accepted = 0
  #refused = 0
  #wallets: PrivateKeyAccount[] = []
  #settlement: DevnetSettlement | null = null
  /** Every secp256k1 key this devnet generated or funds (validators, deployer, wallets). */
  #keys: Hex[] = []
  /** The namespaces of a `--netns` devnet. */
  netns: NetnsNet | undefined
  /** Its delay relays, one per node namespace, where the kernel has no netem. */
  relays: DelayRelays | undefined
  #upRun: Promise<DevnetState> | undefined
  #stopRun: Promise<void> | undefined
  /** Rollup kind by chain id (the profile's), and the congested profiles' running loads. */
  #kinds = new Map<number, string>()
  #loads: RunningLoad[] = []
  /**
   * The p2p and API ports each node last bound: a restart binds them again, as a real validator restarts
   * on its configured port. With a new port at every restart, peers kept dialling dead addresses (backing
   * off up to 30 s) and a node restarted while the others restarted too stayed alone for minutes (the
   * 30-minute crash soak: intents acknowledged there reached no one).
   */
  readonly #ports = new Map<number, { p2p?: number; api?: number }>()
  /** The wallets' schedule and when it started; a spike's schedule and when it ends. */
  #traffic: { schedule: TrafficSchedule; startMs: number } | undefined
  #spike: { schedule: TrafficSchedule; startMs: number; endMs: number } | undefined

  constructor(options: Partial<DevnetOptions>) {
    this.opts = { ...DEFAULT_DEVNET_OPTIONS, ...options }
    this.opts.dir = resolve(this.opts.dir)
  }

  /** The dashboard (its feed: history, faults, the pages' stream); undefined before `up()`. */
  get dashboard(): DashboardServer | undefined {
    return this.#dashboard
  }

  /**
   * Starts everything. A failure (or a stop() meanwhile) leaves what was started running until
   * stop(), which the caller runs in any case; stop() waits for an up() in progress first.
   */
  up(): Promise<DevnetState> {
    this.#upRun ??= this.#up()
    return this.#upRun
  }

  /** Throws once stop() was called, so a start interrupted by Ctrl-C starts nothing more. */
  #live(): void {
    if (this.#stopping) throw new DevnetError('STOPPED', 'the devnet was stopped while starting')
  }

  async #up(): Promise<DevnetState> {
    const o = this.opts
    if (!Number.isInteger(o.nodes) || o.nodes < 1 || o.nodes > 32)
      throw new DevnetError('BAD_ARGS', '--nodes must be 1..32')
    if (!Number.isInteger(o.rollups) || o.rollups < 1 || o.rollups > 64)
      throw new DevnetError('BAD_ARGS', '--rollups must be 1..64')
    // Refused before anything is written or started.
    const noNetns = o.netns ? await netnsUnavailable() : undefined
    if (noNetns !== undefined) throw new NetnsError('NETNS_UNAVAILABLE', noNetns)
    await mkdir(o.dir, { recursive: true })
    // The previous devnet's record must not pass for this one's while it starts.
    await this.#saveState()
    if (o.netns) {
      this.netns = await NetnsNet.create({ nodes: o.nodes, rollups: o.rollups })
      await this.#saveState()
      o.out(
        `devnet: network namespaces ${this.netns.id}* on bridge ${this.netns.bridge} (${this.netns.subnet}.0/24)`,
      )
      this.#live()
    }
    const runDir = join(o.dir, `run-${Date.now().toString(36)}`)
    if (this.netns !== undefined && !this.netns.netem) {
      // No netem: `delay` is made by a relay in front of each node's libp2p port (docs/netns.md).
      const ns = this.netns
      await mkdir(runDir, { recursive: true })
      this.relays = new DelayRelays(ns.nodes)
      try {
        await this.relays.start(
          (h) => ns.exec(h),
          (i) => join(runDir, `relay-${i}.log`),
        )
      } finally {
        await this.#saveState()
      }
      ns.useRelays(this.relays)
      this.#live()
    }
    o.out(`devnet: ${o.nodes} nodes, ${o.rollups} anvil rollups, state in ${o.dir}`)
    let plan: ReturnType<typeof planRollups>
    try {
      plan = planRollups(o.profile, o.rollups, o.blockTimeSec)
    } catch (err) {
      throw new DevnetError('BAD_ARGS', (err as Error).message)
    }
    this.#kinds = new Map(plan.map((p) => [p.chainId, p.kind]))
    const rollups = plan.map((p) => p.genesis)
    this.net = await prepareNetwork({
      dir: runDir,
      nodes: o.nodes,
      rollups,
      params: {
        ...(o.settlement ? { refundGraceSec: DEVNET_REFUND_GRACE_SEC } : {}),
        // Safe pool levels, scaled to the pools' share (4 validators of 1 000 000 over 3 rollups: about
        // 1.33 M per pool, alarmed with one validator left or under 500 000, cleared at 3 and 900 000).
        ...devnetPoolLevels(o.nodes, o.rollups),
      },
      // Each validator also holds 1 000 000 of the staking token, to try `murmur stake` with.
      accounts: 'validators',
    })
    const walletKeys = Array.from({ length: o.wallets }, () => generatePrivateKey())
    this.#wallets = walletKeys.map((k) => privateKeyToAccount(k))
    // A fresh deployer has nonce 0 on every chain: the contracts land at the same addresses everywhere.
    const deployerKey = generatePrivateKey()
    this.#keys = [...this.net.nodes.map((n) => n.validatorPrivateKey as Hex), deployerKey, ...walletKeys]
    o.out(`devnet: starting ${o.rollups} anvil rollups...`)
    const ns = this.netns
    this.rollups = await startRollups({
      ...(ns === undefined
        ? {}
        : {
            placement: (i: number) => ({
              host: ns.rollups[i]!.addr,
              proxyHost: ns.hostAddr,
              exec: ns.exec(ns.rollups[i]!),
            }),
          }),
      count: o.rollups,
      blockTimeSec: o.blockTimeSec,
      each: (i) => plan[i]!.anvil,
      accounts: [
        ...this.net.nodes.map((n) => n.validatorPrivateKey as Hex),
        ...(o.settlement ? [deployerKey, ...walletKeys] : []),
      ],
    })
    await this.#saveState()
    this.#live()
    if (o.settlement) {
      const { genesis, record } = await setupDevnetSettlement({
        genesisPath: this.net.genesisPath,
        genesis: this.net.genesis,
        rpcUrls: new Map(this.rollups.rollups.map((r) => [r.chainId, r.rpcUrl])),
        deployerKey,
        wallets: this.#wallets,
        walletKeys,
        executors: this.net.nodes.map((n) => n.address),
        out: o.out,
      })
      this.net.genesis = genesis
      this.#settlement = record
      this.#live()
    }
    // Congested profiles: the background load starts once the contracts and mints are in.
    for (const [i, p] of plan.entries())
      if (p.load !== undefined)
        this.#loads.push(startProfileLoad(this.rollups.rollups[i]!, p.load, p.anvil.blockTimeSec))
    if (o.profile !== 'uniform')
      o.out(`devnet: rollup profiles ${plan.map((p) => `${p.chainId}=${p.kind}`).join(' ')}`)
    const rollupFlags = new Map(this.rollups.rollups.map((r) => [r.chainId, r.rpcUrl]))
    o.out(`devnet: starting ${o.nodes} nodes...`)
    this.procs[0] = await this.#spawn(0, [])
    const boot = this.procs[0].listen[0]!
    await this.#saveState()
    this.#live()
    // Settled, not all: a failure must not leave the other starts running unseen by stop().
    const started = await Promise.allSettled(
      this.net.nodes.slice(1).map(async (n) => {
        this.procs[n.index] = await this.#spawn(n.index, [boot], rollupFlags)
      }),
    )
    await this.#saveState()
    for (const r of started) if (r.status === 'rejected') throw r.reason
    this.#live()
    await this.#serveControl()
    const state = this.state()
    await this.#saveState()
    for (const [i, p] of this.procs.entries()) o.out(`  node ${i}: api ${p?.api}  peer ${p?.peerId}`)
    for (const r of this.rollups.rollups) o.out(`  rollup ${r.chainId}: rpc ${r.rpcUrl}`)
    o.out(`devnet: dashboard ${state.dashboard}`)
    o.out('devnet: up. Ctrl-C stops everything. Try: murmur devnet partition --dir ' + o.dir + ' 0,1 2,3')
    this.#startTraffic()
    if (o.statusEveryMs > 0) {
      await this.#followEvents()
      this.#timers.push(setInterval(() => this.#printStatus(), o.statusEveryMs))
    }
    return state
  }

  async #spawn(i: number, bootstrap: string[], rollups?: Map<number, string>): Promise<NodeProcess> {
    const n = this.net!.nodes[i]!
    // In a namespace the node listens on its own address; partitions are packet drops there, so the
    // admin routes (loopback only) are not needed.
    const h = this.netns?.nodes[i]
    const host = h?.addr ?? '127.0.0.1'
    const spawnOn = (ports: { p2p?: number; api?: number }) =>
      spawnNode({
        dataDir: n.dataDir,
        genesisPath: this.net!.genesisPath,
        bootstrap,
        rollups: rollups ?? new Map(this.rollups!.rollups.map((r) => [r.chainId, r.rpcUrl])),
        admin: h === undefined,
        logFile: join(this.net!.dir, `node-${i}.log`),
        listen: `/ip4/${host}/tcp/${ports.p2p ?? 0}`,
        api: `${host}:${ports.api ?? 0}`,
        ...(h === undefined ? {} : { exec: this.netns!.exec(h) }),
        // Behind a relay: libp2p on the namespace's loopback, announced at the relay's address.
        ...(h === undefined || this.relays === undefined
          ? {}
          : {
              listen: `/ip4/127.0.0.1/tcp/${RELAYED_P2P_PORT}`,
              announce: [`/ip4/${h.addr}/tcp/${RELAYED_P2P_PORT}`],
            }),
      })
    const last = this.#ports.get(i) ?? {}
    let p: NodeProcess
    try {
      p = await spawnOn(last)
    } catch (err) {
      // Its old ports taken meanwhile by another process: any free ones.
      if (last.p2p === undefined && last.api === undefined) throw err
      if (!/EADDRINUSE/.test(`${(err as Error).message} ${(err as { output?: string }).output}`)) throw err
      this.opts.out(`devnet: node ${i}'s ports ${last.p2p}/${last.api} are taken; it restarts on new ones`)
      p = await spawnOn({})
    }
    this.#ports.set(i, { p2p: tcpPort(p.listen[0]), api: tcpPort(p.api) })
    // A stop() while this node started: nothing else stops it.
    if (this.#stopping) {
      await p.stop()
      this.#live()
    }
    p.exited.then((code) => {
      if (!this.#stopping && this.procs[i] === p) {
        this.opts.out(`devnet: node ${i} exited (${code})`)
        this.procs[i] = undefined
        this.#saveState().catch(() => {})
      }
    })
    return p
  }

  state(): DevnetState {
    const addr = this.#server?.address()
    const control = addr !== null && typeof addr === 'object' ? `http://127.0.0.1:${addr.port}` : ''
    return {
      control,
      dashboard: `${control}/`,
      genesis: this.net?.genesisPath ?? '',
      nodes: (this.net?.nodes ?? []).map((n) => {
        const p = this.procs[n.index]
        return {
          index: n.index,
          pid: p?.pid ?? null,
          api: p?.api ?? null,
          peerId: n.peerId,
          listen: p?.listen ?? [],
        }
      }),
      rollups: (this.rollups?.rollups ?? []).map((r) => ({
        chainId: r.chainId,
        rpcUrl: r.rpcUrl,
        pid: r.pid ?? null,
        kind: this.#kinds.get(r.chainId) ?? 'uniform',
      })),
      settlement: this.#settlement,
      netns: this.netns?.record() ?? null,
      relays: this.relays?.record() ?? [],
    }
  }

  async #saveState(): Promise<void> {
    await writeFile(join(this.opts.dir, STATE_FILE), JSON.stringify(this.state(), null, 2) + '\n')
  }

  /**
   * The wallets' traffic: every TRAFFIC_TICK_MS, what the schedule (or a running spike's) has due is
   * sent. Arrivals of the normal schedule that fall inside a spike are dropped: after the spike the
   * traffic goes back to its normal pace, it does not catch up.
   */
  #startTraffic(): void {
    const o = this.opts
    const chainIds = (this.rollups?.rollups ?? []).map((r) => r.chainId)
    if (o.rate > 0)
      this.#traffic = {
        schedule: new TrafficSchedule({
          mode: o.traffic,
          rate: o.rate,
          wallets: Math.max(1, this.#wallets.length),
          chainIds,
          seed: o.seed,
        }),
        startMs: Date.now(),
      }
    this.#timers.push(setInterval(() => this.#trafficTick(), TRAFFIC_TICK_MS))
  }

  #trafficTick(): void {
    const now = Date.now()
    const spike = this.#spike
    if (spike !== undefined) {
      for (const a of spike.schedule.takeUntil(Math.min(now, spike.endMs) - spike.startMs + 1))
        void this.#sendIntent(a)
      if (now >= spike.endMs) this.#spike = undefined
    }
    const t = this.#traffic
    if (t === undefined) return
    for (const a of t.schedule.takeUntil(now - t.startMs + 1))
      if (spike === undefined) void this.#sendIntent(a)
  }

  /** One wallet hands one intent to one node (round robin), as wallets near different nodes would. */
  async #sendIntent(a: Arrival): Promise<void> {
    const live = this.procs.filter((p): p is NodeProcess => p !== undefined)
    if (live.length === 0 || this.#wallets.length === 0) return
    const n = this.#sent++
    const node = live[n % live.length]!
    const w = this.#wallets[a.wallet % this.#wallets.length]!
    // Native mode pays out of the executor's own balance on one chain: at most one destination.
    const chains = a.destinations.slice(0, this.#settlement === null ? 1 : undefined).map(BigInt)
    try {
      await new MurmurClient(node.api, { timeoutMs: 5_000 }).send(w, this.#intent(w.address, chains, n, a))
      this.#accepted++
    } catch {
      this.#refused++
    }
  }

  #intent(to: Address, chains: bigint[], n: number, a: Arrival) {
    if (this.#settlement === null)
      return { to, amount: 1_000_000_000_000n + BigInt(n), chains, fillInSec: 120 }
    const base = erc20Intent(this.#settlement, to, chains, n)
    if (a.amountMilli === 1000) return base
    const inputAmount = 10n ** 15n * BigInt(a.amountMilli) + BigInt(n)
    return { ...base, inputAmount, amount: inputAmount - (inputAmount * DEVNET_SPREAD_BPS) / 10_000n }
  }

  async nodeStatuses(): Promise<Array<Record<string, unknown> | { index: number; down: true }>> {
    return Promise.all(
      this.procs.map(async (p, index) => {
        if (p === undefined) return { index, down: true as const }
        try {
          const res = await fetch(`${p.api}/v1/status`, { signal: AbortSignal.timeout(2_000) })
          return { index, ...((await res.json()) as Record<string, unknown>) }
        } catch {
          return { index, down: true as const }
        }
      }),
    )
  }

  /**
   * Follows the event stream of the first running node (again after that node stops: the next status
   * tick picks another), so the status line counts intents by state.
   */
  async #followEvents(): Promise<void> {
    if (this.#events !== undefined || this.#stopping) return
    const i = this.procs.findIndex((p) => p?.api !== undefined)
    const api = this.procs[i]?.api
    if (api === undefined) return
    const ac = new AbortController()
    const held = { ac, node: i }
    this.#events = held
    try {
      await followEvents(
        api,
        ac.signal,
        (type, data) => {
          if (type === 'intent') this.tally.onEvent(data)
        },
        () => {
          if (this.#events === held) this.#events = undefined
        },
      )
    } catch {
      if (this.#events === held) this.#events = undefined
    }
  }

  async #printStatus(): Promise<void> {
    await this.#followEvents()
    const s = await this.nodeStatuses()
    const parts = s.map((n) =>
      'down' in n ? `n${n.index}:down` : `n${n.index}:h${n['height']}/p${n['peers']}`,
    )
    const seen =
      this.#events === undefined
        ? 'no node to follow'
        : `node ${this.#events.node} sees ${this.tally.summary()}`
    this.opts.out(
      `[${new Date().toISOString().slice(11, 19)}] ${parts.join(' ')}  intents sent ${this.#sent} ` +
        `(accepted ${this.#accepted}, refused ${this.#refused}); ${seen}`,
    )
  }

  /** Runs one fault command; the same verbs as `murmur devnet <verb>`. */
  async control(cmd: string, args: string[]): Promise<unknown> {
    this.#dashboard?.feed.fault(cmd, args)
    const idx = (s: string | undefined, max: number, what: string) => {
      const n = Number(s)
      if (!Number.isInteger(n) || n < 0 || n >= max)
        throw new DevnetError('BAD_ARGS', `${what} must be 0..${max - 1}`)
      return n
    }
    const nodes = this.net!.nodes
    switch (cmd) {
      case 'partition': {
        const groups = args.map((g) => g.split(',').map((x) => idx(x, nodes.length, 'node index')))
        if (groups.length < 2)
          throw new DevnetError('BAD_ARGS', 'partition needs at least two groups, e.g. 0,1 2,3')
        if (this.netns !== undefined) {
          await this.netns.partition(groups)
          return { groups, drops: 'packets' }
        }
        const groupOf = new Map<number, number>()
        for (const [gi, g] of groups.entries()) for (const n of g) groupOf.set(n, gi)
        await Promise.all(
          nodes.map((n) => {
            const mine = groupOf.get(n.index)
            const deny = nodes
              .filter((m) => m.index !== n.index && groupOf.get(m.index) !== mine)
              .map((m) => m.peerId)
            return this.#admin(n.index, deny)
          }),
        )
        return { groups }
      }
      case 'heal':
        if (this.netns !== undefined) await this.netns.heal()
        else await Promise.all(nodes.map((n) => this.#admin(n.index, [])))
        return { healed: true }
      case 'delay':
      case 'loss':
      case 'flaky':
      case 'clear':
        return this.#linkFault(cmd, args)
      case 'kill': {
        const i = idx(args[0], nodes.length, 'node index')
        const p = this.procs[i]
        if (p === undefined) return { index: i, alreadyDown: true }
        this.procs[i] = undefined
        await p.kill9()
        await this.#saveState()
        return { index: i, killed: p.pid }
      }
      case 'restart': {
        const i = idx(args[0], nodes.length, 'node index')
        const old = this.procs[i]
        this.procs[i] = undefined
        if (old !== undefined) await old.stop()
        // Every live node as a bootstrap: the first alone may be the next to die.
        const boot = this.procs.flatMap((p) => (p === undefined ? [] : p.listen.slice(0, 1)))
        this.procs[i] = await this.#spawn(i, boot)
        await this.#saveState()
        return { index: i, pid: this.procs[i]!.pid, api: this.procs[i]!.api }
      }
      case 'rollup-down':
      case 'rollup-up': {
        const list = this.rollups!.rollups
        const byChain = list.findIndex((r) => String(r.chainId) === args[0])
        const r = list[byChain >= 0 ? byChain : idx(args[0], list.length, 'rollup index or chain id')]!
        // An outage keeps the chain (as a real rollup's would): a chain back at block 0 would leave
        // every executor's nonce far ahead of it.
        if (cmd === 'rollup-down') await r.stop({ keepState: true })
        else await r.start()
        await this.#saveState()
        return { chainId: r.chainId, running: r.running }
      }
      case 'spike': {
        const rate = Number(args[0])
        const seconds = Number(args[1])
        if (!(rate > 0 && rate <= SPIKE_MAX_RATE) || !(seconds > 0 && seconds <= SPIKE_MAX_SEC))
          throw new DevnetError(
            'BAD_ARGS',
            `spike needs RATE (intents/s, above 0, at most ${SPIKE_MAX_RATE}) and SECONDS (above 0, at most ${SPIKE_MAX_SEC})`,
          )
        const startMs = Date.now()
        const schedule = new TrafficSchedule({
          mode: 'steady',
          rate,
          wallets: Math.max(1, this.#wallets.length),
          chainIds: this.rollups!.rollups.map((r) => r.chainId),
          seed: this.opts.seed + startMs,
        })
        this.#spike = { schedule, startMs, endMs: startMs + Math.round(seconds * 1000) }
        return { rate, seconds, until: new Date(this.#spike.endMs).toISOString() }
      }
      case 'fund': {
        const address = args[0] ?? ''
        if (!/^0x[0-9a-fA-F]{40}$/.test(address)) throw new DevnetError('BAD_ARGS', 'fund needs a 0x address')
        const urls = this.rollups!.rollups.filter((r) => r.running).map((r) => r.rpcUrl)
        await fundGas(urls, address as Address)
        return { address: address.toLowerCase(), gasWei: String(DEVNET_GAS_WEI), rollups: urls.length }
      }
      default:
        throw new DevnetError('BAD_ARGS', `unknown devnet command ${cmd}`)
    }
  }

  /** What `/api/state` answered before the dashboard had its own server (scripts may read it). */
  async #statuses(): Promise<object> {
    const live = this.procs.find((p) => p !== undefined)
    const view =
      live === undefined
        ? []
        : await fetch(`${live.api}/v1/rollups`, { signal: AbortSignal.timeout(2_000) })
            .then((r) => r.json())
            .catch(() => [])
    return {
      statuses: await this.nodeStatuses(),
      view,
      intents: { sent: this.#sent, accepted: this.#accepted, refused: this.#refused },
    }
  }

  /** `delay MS [NODES]`, `loss PCT [NODES]`, `flaky [NODES]`, `clear [NODES]`; NODES e.g. 0,2 (default all). */
  async #linkFault(cmd: (typeof LINK_VERBS)[number], args: string[]): Promise<unknown> {
    if (this.netns === undefined)
      throw new DevnetError('BAD_ARGS', `${cmd} needs a devnet started with --netns (tc on each node's link)`)
    const withValue = cmd === 'delay' || cmd === 'loss'
    const value = Number(args[0])
    if (withValue && (!Number.isInteger(value) || value < 0 || value > (cmd === 'loss' ? 100 : 60_000)))
      throw new DevnetError(
        'BAD_ARGS',
        cmd === 'loss' ? 'loss needs a percentage 0..100' : 'delay needs 0..60000 ms',
      )
    const list = args[withValue ? 1 : 0]
    const count = this.net!.nodes.length
    const targets =
      list === undefined || list === ''
        ? this.net!.nodes.map((n) => n.index)
        : list.split(',').map((x) => {
            const n = Number(x)
            if (!Number.isInteger(n) || n < 0 || n >= count)
              throw new DevnetError('BAD_ARGS', `node index must be 0..${count - 1}`)
            return n
          })
    if (cmd === 'clear') {
      await this.netns.clear(targets)
      return { cleared: targets }
    }
    const fault: LinkFault =
      cmd === 'delay' ? { delayMs: value } : cmd === 'loss' ? { lossPct: value } : FLAKY
    return { nodes: await this.netns.link(targets, fault, { flaky: cmd === 'flaky' }) }
  }

  async #admin(i: number, deny: string[]): Promise<void> {
    const p = this.procs[i]
    if (p === undefined) return
    const res = await fetch(`${p.api}/admin/v1/partition`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ deny }),
      signal: AbortSignal.timeout(5_000),
    })
    if (!res.ok)
      throw new DevnetError('CONTROL_FAILED', `node ${i} refused the partition: ${await res.text()}`)
  }

  /**
   * Every secp256k1 private key this devnet generated and funds on its rollups: the validators', the
   * deployer's and the wallets'. For the key-leak check (test/helpers/key-leak.ts), which greps every
   * output of the devnet for them; the nodes' libp2p keys are in their data dirs.
   */
  secretKeys(): readonly Hex[] {
    return this.#keys
  }

  async #serveControl(): Promise<void> {
    this.#dashboard = new DashboardServer({
      // The wallets' keys stay in the state file (the scenario runner reads them there); the dashboard's
      // answers, which any local page can read, carry their count only (found by the key-leak test).
      state: () => {
        const s = this.state()
        return s.settlement === null
          ? s
          : { ...s, settlement: { ...s.settlement, wallets: s.settlement.wallets.length } }
      },
      statuses: () => this.#statuses(),
      nodes: () =>
        (this.net?.nodes ?? []).map((n) => ({
          index: n.index,
          api: this.procs[n.index]?.api ?? null,
          peerId: n.peerId,
        })),
      rollups: () => (this.rollups?.rollups ?? []).map((r) => ({ chainId: r.chainId, running: r.running })),
      extra: () => ({ sent: this.#sent, accepted: this.#accepted, refused: this.#refused }),
    })
    this.#dashboard.feed.start()
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: Error) => {
        res.writeHead(err instanceof DevnetError ? 400 : 500, { 'content-type': 'application/json' })
        res.end(
          JSON.stringify({ error: { code: (err as DevnetError).code ?? 'INTERNAL', message: err.message } }),
        )
      })
    })
    const server = this.#server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.opts.controlPort, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    }).catch((err: NodeJS.ErrnoException) => {
      this.#server = undefined
      throw new DevnetError(
        'BAD_ARGS',
        `control port ${this.opts.controlPort} on 127.0.0.1: ${err.code ?? err.message} (pick another --control-port, or 0)`,
      )
    })
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'POST' && req.url === '/control') {
      let body = ''
      for await (const chunk of req) body += chunk
      const { cmd, args } = JSON.parse(body) as { cmd: string; args: string[] }
      const result = await this.control(cmd, Array.isArray(args) ? args.map(String) : [])
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(result))
      return
    }
    if (await this.#dashboard?.handle(req, res)) return
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end('{"error":{"code":"NOT_FOUND","message":"no such route"}}')
  }

  /**
   * Stops everything up() started, also after a failed or interrupted up(): every node and anvil by
   * its pid, the control server, then the namespaces. Every call returns the same promise.
   */
  stop(): Promise<void> {
    this.#stopRun ??= this.#stop()
    return this.#stopRun
  }

  async #stop(): Promise<void> {
    this.#stopping = true
    for (const t of this.#timers) clearInterval(t)
    this.#dashboard?.feed.stop()
    await Promise.allSettled(this.#loads.map((l) => l.stop()))
    this.#events?.ac.abort()
    // An up() in progress notices #stopping at its next step; what it started by then is stopped below.
    await this.#upRun?.catch(() => {})
    await Promise.allSettled(this.procs.map((p) => p?.stop()))
    await this.relays?.stop()
    await this.rollups?.stop()
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()))
    this.#server?.closeAllConnections()
    // Last: a namespace is only gone once no process holds it.
    await this.netns?.destroy()
  }
}

/** Sends a fault command to the devnet recorded in `dir`. */
export async function devnetCommand(dir: string, cmd: string, args: string[]): Promise<unknown> {
  let state: DevnetState
  try {
    state = JSON.parse(await readFile(join(resolve(dir), STATE_FILE), 'utf8')) as DevnetState
  } catch {
    throw new DevnetError(
      'NO_DEVNET',
      `no running devnet recorded in ${dir} (start one with: murmur devnet up --dir ${dir})`,
    )
  }
  let res: Response
  try {
    res = await fetch(`${state.control}/control`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ cmd, args }),
      signal: AbortSignal.timeout(60_000),
    })
  } catch {
    throw new DevnetError(
      'NO_DEVNET',
      `the devnet in ${dir} does not answer at ${state.control}; is it still up?`,
    )
  }
  const body = (await res.json()) as { error?: { code: string; message: string } }
  if (!res.ok) throw new DevnetError('CONTROL_FAILED', body.error?.message ?? res.statusText)
  return body
}

/** Period of the traffic loop: a schedule's due arrivals are sent at most this late. */
const TRAFFIC_TICK_MS = 20

/** The TCP port of a multiaddr (`/ip4/A/tcp/P/...`) or a URL (`http://A:P`); undefined when it has none. */
function tcpPort(addr: string | undefined): number | undefined {
  const m = addr === undefined ? null : (/\/tcp\/(\d+)/.exec(addr) ?? /:(\d+)\/?$/.exec(addr))
  const port = m === null ? 0 : Number(m[1])
  return port > 0 ? port : undefined
}
