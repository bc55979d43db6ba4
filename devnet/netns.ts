/**
 * Network namespaces for `murmur devnet up --netns` (Linux, root, iproute2).
 *
 * Every node and every anvil gets its own namespace with one veth into a bridge the devnet creates;
 * the host end of the bridge has the subnet's `.1`, so the devnet process (control server, wallets,
 * rollup proxies) reaches every namespace and every namespace reaches the host. Every name carries the
 * devnet's id (`mm` + 6 hex), so `destroy()` removes exactly what this devnet made and two devnets
 * never collide.
 *
 * Faults are packets the kernel drops or holds, not deny lists in the nodes:
 * - partition: a permanent neighbour entry in each node's namespace maps every address of the other
 *   groups to a MAC no port owns, so the bridge floods those frames and no namespace takes them: a
 *   silent drop in both directions, with iproute2 alone. (A blackhole route would fail `connect()` at
 *   once, which no real partition does; tc drop needs act_gact, which not every kernel has.)
 * - delay, loss, flaky: tc netem on the node's own veth (egress: what the node sends), where the
 *   kernel has sch_netem. Without it, loss and flaky use a dropper (see DROPPER below: an htb qdisc
 *   whose classic-BPF classifier sends a random share of the packets into a class that never drains),
 *   and delay is made by the devnet's delay relays (relays.ts) when they run, else refused with
 *   NETEM_UNAVAILABLE, one line.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { MurmurError } from '../src/errors.ts'
import type { ChunkDelay } from './delay-relay.ts'
import type { DelayRelays } from './relays.ts'

const run = promisify(execFile)

export type NetnsErrorCode = 'NETNS_UNAVAILABLE' | 'NETNS_FAILED' | 'NETEM_UNAVAILABLE'
/** The namespaces cannot be made here, a command of theirs failed, or the kernel has no netem. */
export class NetnsError extends MurmurError<NetnsErrorCode> {}

/** A MAC address no port of the bridge owns: frames sent to it are flooded and taken by no one. */
const NOWHERE_MAC = '02:00:00:00:00:01'
/** Highest usable host number of the /24 a devnet gets (nodes from .10, rollups from .100). */
const NODE_BASE = 10
const ROLLUP_BASE = 100
export const NETNS_MAX_NODES = 32
export const NETNS_MAX_ROLLUPS = 64

/** One namespace: a node's or an anvil's. */
export interface NetnsHost {
  /** Namespace name, e.g. `mm1a2b3cn0` (node 0) or `mm1a2b3cr0` (rollup 0). */
  ns: string
  /** The namespace's address on the bridge. */
  addr: string
  /** The veth end inside the namespace (faults go here). */
  dev: string
  /** The veth end on the host, a port of the bridge. */
  hostDev: string
}

/** What a devnet records of its namespaces in devnet.json (tests check that none is left). */
export interface NetnsRecord {
  id: string
  bridge: string
  /** The host's address on the bridge. */
  hostAddr: string
  subnet: string
  namespaces: string[]
  netem: boolean
  /** How link faults are made: tc netem, the htb + BPF dropper (loss only), or not at all. */
  shaper: LinkShaper
  /** How `delay` is made: tc netem, the delay relays in front of the nodes' libp2p ports, or not at all. */
  delay: DelayMode
}

/** How a node's delay is made: tc netem, the delay relays (relays.ts), or not at all. */
export type DelayMode = 'netem' | 'relay' | 'none'

/** How a node's link faults are made on this kernel (probed once at create). */
export type LinkShaper = 'netem' | 'dropper' | 'none'

/** Link faults of one node (tc netem); undefined fields are off. */
export interface LinkFault {
  delayMs?: number
  jitterMs?: number
  lossPct?: number
  reorderPct?: number
  /** The dropper's `flaky`: loss redrawn every second from FLAKY_DROPS. */
  flaky?: boolean
}

/** The `flaky` preset: a bad mobile link (jittery delay, some loss, some reordering). */
export const FLAKY: LinkFault = { delayMs: 80, jitterMs: 40, lossPct: 2, reorderPct: 5 }

/**
 * `flaky` where there is no netem (loss only): every second the link's loss is drawn anew from these,
 * so it is clean half the time, lossy at times, and now and then out for a second.
 */
export const FLAKY_DROPS: readonly number[] = [0, 0, 0, 0, 20, 20, 50, 100]

/**
 * The dropper, for kernels without netem (this machine's has htb, pfifo and the bpf classifier, but no
 * netem, no act_gact and no nftables). Root htb: class 1:10 is the link (10 Gbit/s, the default), class
 * 1:20 drains at 8 bit/s into a one-packet pfifo, so what enters it is lost (tail drop). A classic-BPF
 * classifier reads the kernel's per-packet random number (ancillary load SKF_AD_RANDOM) and returns
 * 1:20 when it is at or above a threshold: loss PCT sets the threshold to (1 - PCT/100) * 2^32.
 */
function dropperBytecode(lossPct: number): string {
  const threshold = Math.min(2 ** 32 - 1, Math.round((1 - lossPct / 100) * 2 ** 32))
  // ld [SKF_AD_OFF + SKF_AD_RANDOM]; jge #threshold (true: next, false: skip one); ret 1:20; ret 1:10
  return `4,32 0 0 ${0xfffff038},53 0 1 ${threshold},6 0 0 ${0x10020},6 0 0 ${0x10010}`
}

/** Why `--netns` cannot run here, or undefined when it can. */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `--netns needs Linux (this is ${process.platform})`
  if (process.getuid?.() !== 0) return '--netns needs root (network namespaces and bridges)'
  try {
    await run('ip', ['-V'])
  } catch {
    return '--netns needs iproute2 (the `ip` command is missing)'
  }
  return undefined
}

async function ip(args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 10_000 })).stdout
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new NetnsError('NETNS_FAILED', `ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`)
  }
}

/** Namespaces and host links whose name starts with `id` (what a devnet with that id left behind). */
export async function netnsLeftovers(id: string): Promise<{ namespaces: string[]; links: string[] }> {
  const namespaces = (await ip(['netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(id))
  const links = (JSON.parse(await ip(['-j', 'link', 'show'])) as Array<{ ifname: string }>)
    .map((l) => l.ifname)
    .filter((n) => n.startsWith(id))
  return { namespaces, links }
}

/** A /24 of 10.0.0.0/8 no address or route of the host uses yet, and an id that names nothing yet. */
async function pickIdAndSubnet(): Promise<{ id: string; subnet: string }> {
  const used = (await ip(['-4', 'route', 'show', 'table', 'all'])) + (await ip(['-4', '-o', 'addr', 'show']))
  for (let attempt = 0; attempt < 20; attempt++) {
    const b = randomBytes(3)
    const id = `mm${b.toString('hex')}`
    const subnet = `10.${100 + (b[0]! % 100)}.${b[1]!}`
    const left = await netnsLeftovers(id)
    if (used.includes(`${subnet}.`) || left.namespaces.length + left.links.length > 0) continue
    return { id, subnet }
  }
  throw new NetnsError('NETNS_FAILED', 'no free 10.x.y.0/24 subnet found for the devnet bridge')
}

/** The bridge, namespaces and veths of one devnet. */
export class NetnsNet {
  readonly id: string
  readonly subnet: string
  readonly bridge: string
  readonly hostAddr: string
  readonly nodes: NetnsHost[]
  readonly rollups: NetnsHost[]
  /** Whether the kernel has tc netem (probed once at create). */
  netem = false
  /** How link faults are made here (probed once at create). */
  shaper: LinkShaper = 'none'
  /** Nodes whose `flaky` is redrawn every second (dropper only), and the timer that does it. */
  #flaky = new Set<number>()
  #flakyTimer: NodeJS.Timeout | undefined
  /** tc commands of the dropper run one after another (the flaky timer and the verbs share links). */
  #tcChain: Promise<unknown> = Promise.resolve()
  /** Veths that have the dropper's qdisc. */
  #shaped = new Set<string>()
  /** Partitioned peers per node index: node -> node indexes whose addresses it cannot reach. */
  #cut = new Map<number, Set<number>>()
  #faults = new Map<number, LinkFault>()
  /** The delay relays, when the devnet runs them (no netem). */
  #relays: DelayRelays | undefined
  #destroyed = false

  private constructor(id: string, subnet: string, nodes: number, rollups: number) {
    this.id = id
    this.subnet = subnet
    this.bridge = `${id}br`
    this.hostAddr = `${subnet}.1`
    const host = (kind: 'n' | 'r', i: number, base: number): NetnsHost => ({
      ns: `${id}${kind}${i}`,
      addr: `${subnet}.${base + i}`,
      dev: `${id}${kind}${i}v`,
      hostDev: `${id}${kind}${i}h`,
    })
    this.nodes = Array.from({ length: nodes }, (_, i) => host('n', i, NODE_BASE))
    this.rollups = Array.from({ length: rollups }, (_, i) => host('r', i, ROLLUP_BASE))
  }

  /**
   * Creates the bridge and one namespace per node and rollup. On a failure halfway, what was made is
   * removed before the error is thrown.
   */
  static async create(opts: { nodes: number; rollups: number }): Promise<NetnsNet> {
    const why = await netnsUnavailable()
    if (why !== undefined) throw new NetnsError('NETNS_UNAVAILABLE', why)
    if (opts.nodes > NETNS_MAX_NODES || opts.rollups > NETNS_MAX_ROLLUPS)
      throw new NetnsError(
        'NETNS_UNAVAILABLE',
        `--netns takes at most ${NETNS_MAX_NODES} nodes and ${NETNS_MAX_ROLLUPS} rollups`,
      )
    const { id, subnet } = await pickIdAndSubnet()
    const net = new NetnsNet(id, subnet, opts.nodes, opts.rollups)
    try {
      await ip(['link', 'add', net.bridge, 'type', 'bridge'])
      await ip(['addr', 'add', `${net.hostAddr}/24`, 'dev', net.bridge])
      await ip(['link', 'set', net.bridge, 'up'])
      for (const h of [...net.nodes, ...net.rollups]) await net.#addHost(h)
      net.netem = await net.#probeNetem()
      net.shaper = net.netem ? 'netem' : (await net.#probeDropper()) ? 'dropper' : 'none'
    } catch (err) {
      await net.destroy()
      throw err
    }
    return net
  }

  async #addHost(h: NetnsHost): Promise<void> {
    await ip(['netns', 'add', h.ns])
    await ip(['link', 'add', h.hostDev, 'type', 'veth', 'peer', 'name', h.dev])
    await ip(['link', 'set', h.dev, 'netns', h.ns])
    await ip(['link', 'set', h.hostDev, 'master', this.bridge, 'up'])
    await ip(['-n', h.ns, 'link', 'set', 'lo', 'up'])
    await ip(['-n', h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', h.dev])
    await ip(['-n', h.ns, 'link', 'set', h.dev, 'up'])
  }

  async #probeNetem(): Promise<boolean> {
    const h = this.nodes[0] ?? this.rollups[0]
    if (h === undefined) return false
    try {
      await tc(h, ['qdisc', 'add', 'dev', h.dev, 'root', 'netem', 'delay', '0ms'])
      await tc(h, ['qdisc', 'del', 'dev', h.dev, 'root'])
      return true
    } catch {
      return false
    }
  }

  async #probeDropper(): Promise<boolean> {
    const h = this.nodes[0]
    if (h === undefined) return false
    try {
      await this.#dropper(h, 50)
      return true
    } catch {
      return false
    } finally {
      await this.#unshape(h).catch(() => {})
    }
  }

  /**
   * Sets the dropper of `h` to lose `lossPct` % of what it sends (0: no filter, the link is clean). The
   * qdisc and its classes are made once per link (an htb root cannot be replaced by another), then only
   * the classifier changes.
   */
  async #dropper(h: NetnsHost, lossPct: number): Promise<void> {
    const d = h.dev
    if (!this.#shaped.has(d)) {
      await tc(h, ['qdisc', 'add', 'dev', d, 'root', 'handle', '1:', 'htb', 'default', '10'])
      this.#shaped.add(d)
      await tc(h, ['class', 'add', 'dev', d, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '10gbit'])
      await tc(h, [
        'class',
        'add',
        'dev',
        d,
        'parent',
        '1:',
        'classid',
        '1:20',
        'htb',
        'rate',
        '8bit',
        'ceil',
        '8bit',
      ])
      await tc(h, ['qdisc', 'add', 'dev', d, 'parent', '1:20', 'handle', '20:', 'pfifo', 'limit', '1'])
    }
    await tc(h, ['filter', 'del', 'dev', d, 'parent', '1:']).catch(() => {})
    if (lossPct > 0)
      await tc(h, [
        'filter',
        'add',
        'dev',
        d,
        'parent',
        '1:',
        'pref',
        '1',
        'bpf',
        'bytecode',
        dropperBytecode(lossPct),
        'classid',
        '1:10',
      ])
  }

  /** Removes the dropper's qdisc from `h` (the link is as created again). */
  async #unshape(h: NetnsHost): Promise<void> {
    this.#shaped.delete(h.dev)
    await tc(h, ['qdisc', 'del', 'dev', h.dev, 'root'])
  }

  /** Runs `fn` after every tc command of the dropper queued before it. */
  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#tcChain.then(fn)
    this.#tcChain = next.catch(() => {})
    return next
  }

  /** Packets the dropper of node `i` dropped so far (its class 1:20), or 0 without a dropper. */
  async dropped(i: number): Promise<number> {
    const h = this.nodes[i]!
    const { stdout } = await run('ip', ['netns', 'exec', h.ns, 'tc', '-s', 'class', 'show', 'dev', h.dev])
    const m = /class htb 1:20 [\s\S]*?dropped (\d+)/.exec(stdout)
    return m === null ? 0 : Number(m[1])
  }

  #redrawFlaky(): void {
    for (const i of this.#flaky) {
      const pct = FLAKY_DROPS[Math.floor(Math.random() * FLAKY_DROPS.length)]!
      void this.#serial(() => this.#dropper(this.nodes[i]!, pct)).catch(() => {})
    }
  }

  /** Delays go through these relays from now on (the devnet started them in front of every node). */
  useRelays(relays: DelayRelays): void {
    this.#relays = relays
  }

  /** How `delay` is made here. */
  get delay(): DelayMode {
    return this.netem ? 'netem' : this.#relays !== undefined ? 'relay' : 'none'
  }

  /** The command prefix that runs a program in `h`'s namespace; `ip` execs it, so the pid is its own. */
  exec(h: NetnsHost): string[] {
    return ['ip', 'netns', 'exec', h.ns]
  }

  record(): NetnsRecord {
    return {
      id: this.id,
      bridge: this.bridge,
      hostAddr: this.hostAddr,
      subnet: `${this.subnet}.0/24`,
      namespaces: [...this.nodes, ...this.rollups].map((h) => h.ns),
      netem: this.netem,
      shaper: this.shaper,
      delay: this.delay,
    }
  }

  /**
   * Drops every packet between nodes of different groups (nodes in no group form one more group, as
   * in loopback mode). Replaces the previous partition.
   */
  async partition(groups: number[][]): Promise<void> {
    await this.heal()
    const groupOf = new Map<number, number>()
    for (const [gi, g] of groups.entries()) for (const n of g) groupOf.set(n, gi)
    for (const [i, h] of this.nodes.entries()) {
      const cut = new Set(
        this.nodes.flatMap((_, j) => (j !== i && groupOf.get(j) !== groupOf.get(i) ? [j] : [])),
      )
      for (const j of cut) {
        const to = this.nodes[j]!.addr
        await ip([
          '-n',
          h.ns,
          'neigh',
          'replace',
          to,
          'lladdr',
          NOWHERE_MAC,
          'dev',
          h.dev,
          'nud',
          'permanent',
        ])
      }
      this.#cut.set(i, cut)
    }
  }

  /** Removes the partition: the neighbour entries go, and ARP finds the real addresses again. */
  async heal(): Promise<void> {
    for (const [i, cut] of this.#cut) {
      const h = this.nodes[i]!
      for (const j of cut)
        await ip(['-n', h.ns, 'neigh', 'del', this.nodes[j]!.addr, 'dev', h.dev]).catch(() => {})
    }
    this.#cut.clear()
  }

  /**
   * Adds `fault` to the link faults of each of `nodes` (delay and loss combine; flaky sets all). With
   * the dropper (no netem), loss works, `flaky` is FLAKY_DROPS redrawn every second, and a delay goes
   * to the delay relays (flaky adds FLAKY's jittery delay there), refused with NETEM_UNAVAILABLE
   * when there are none.
   */
  async link(
    nodes: number[],
    fault: LinkFault,
    opts: { flaky?: boolean } = {},
  ): Promise<Record<number, LinkFault>> {
    if (!this.netem) return this.#dropLink(nodes, fault, opts.flaky === true)
    const out: Record<number, LinkFault> = {}
    for (const i of nodes) {
      const f = { ...this.#faults.get(i), ...fault }
      const args = ['qdisc', 'replace', 'dev', this.nodes[i]!.dev, 'root', 'netem']
      if (f.delayMs !== undefined) args.push('delay', `${f.delayMs}ms`, `${f.jitterMs ?? 0}ms`)
      if (f.lossPct !== undefined) args.push('loss', `${f.lossPct}%`)
      if (f.reorderPct !== undefined && f.delayMs !== undefined) args.push('reorder', `${f.reorderPct}%`)
      await tc(this.nodes[i]!, args)
      this.#faults.set(i, f)
      out[i] = f
    }
    return out
  }

  /** Link faults without netem: loss by the dropper, delay by the relays. */
  async #dropLink(nodes: number[], fault: LinkFault, flaky: boolean): Promise<Record<number, LinkFault>> {
    const relays = this.#relays
    if ((flaky || fault.lossPct !== undefined) && this.shaper !== 'dropper')
      throw new NetnsError(
        'NETEM_UNAVAILABLE',
        `this kernel has no tc netem (CONFIG_NET_SCH_NETEM) and no htb/bpf to drop with: loss and flaky cannot run here; partition${relays === undefined ? '' : ' and delay'} work`,
      )
    if (!flaky && fault.delayMs !== undefined && relays === undefined)
      throw new NetnsError(
        'NETEM_UNAVAILABLE',
        'this kernel has no tc netem (CONFIG_NET_SCH_NETEM): delay cannot run here; loss and flaky drop packets with an htb + bpf dropper instead',
      )
    const out: Record<number, LinkFault> = {}
    const delays = new Map<number, ChunkDelay | undefined>()
    for (const i of nodes) {
      const prev = this.#faults.get(i)
      // Flaky is replaced whole by a delay or a loss; a delay and a loss combine.
      const f: LinkFault = flaky
        ? {
            flaky: true,
            ...(relays === undefined ? {} : { delayMs: FLAKY.delayMs, jitterMs: FLAKY.jitterMs }),
          }
        : { ...(prev?.flaky === true ? {} : prev), ...fault }
      if (flaky) this.#flaky.add(i)
      else {
        this.#flaky.delete(i)
        if (this.shaper === 'dropper' && (fault.lossPct !== undefined || prev?.flaky === true)) {
          const lossPct = f.lossPct ?? 0
          await this.#serial(() => this.#dropper(this.nodes[i]!, lossPct))
        }
      }
      if (relays !== undefined && (f.delayMs !== undefined || prev?.delayMs !== undefined))
        delays.set(i, f.delayMs === undefined ? undefined : { ms: f.delayMs, jitterMs: f.jitterMs ?? 0 })
      this.#faults.set(i, f)
      out[i] = f
    }
    if (relays !== undefined && delays.size > 0) await relays.apply(delays)
    if (this.#flaky.size > 0 && this.#flakyTimer === undefined) {
      this.#flakyTimer = setInterval(() => this.#redrawFlaky(), 1_000)
      this.#flakyTimer.unref()
    }
    if (flaky) this.#redrawFlaky()
    return out
  }

  /** Removes the link faults (netem, or the dropper and its flaky redraws, and the relays' delays) of `nodes`. */
  async clear(nodes: number[]): Promise<void> {
    await this.#relays?.apply(new Map(nodes.map((i) => [i, undefined])))
    for (const i of nodes) {
      const had = this.#faults.has(i) || this.#flaky.has(i)
      this.#flaky.delete(i)
      this.#faults.delete(i)
      if (!had) continue
      const h = this.nodes[i]!
      await this.#serial(() =>
        this.shaper === 'dropper' ? this.#unshape(h) : tc(h, ['qdisc', 'del', 'dev', h.dev, 'root']),
      ).catch(() => {})
    }
    if (this.#flaky.size === 0 && this.#flakyTimer !== undefined) {
      clearInterval(this.#flakyTimer)
      this.#flakyTimer = undefined
    }
  }

  /**
   * Removes every namespace (their veth ends go with them), the bridge, and any host link left with
   * this devnet's id. Only names carrying the id are touched. Idempotent; run after the processes in
   * the namespaces stopped.
   */
  async destroy(): Promise<void> {
    if (this.#destroyed) return
    this.#destroyed = true
    if (this.#flakyTimer !== undefined) clearInterval(this.#flakyTimer)
    this.#flaky.clear()
    await this.#tcChain
    const left = await netnsLeftovers(this.id)
    for (const ns of left.namespaces) await ip(['netns', 'del', ns]).catch(() => {})
    const links = (await netnsLeftovers(this.id)).links
    // Veth ends first, the bridge last (deleting either end of a veth removes the pair).
    links.sort((a, b) => (a === this.bridge ? 1 : b === this.bridge ? -1 : 0))
    for (const l of links) await ip(['link', 'del', l]).catch(() => {})
    // The kernel tears a namespace down asynchronously: wait (bounded) until nothing of ours is listed.
    const deadline = Date.now() + 10_000
    for (;;) {
      const rest = await netnsLeftovers(this.id)
      if (rest.namespaces.length + rest.links.length === 0) return
      if (Date.now() > deadline)
        throw new NetnsError('NETNS_FAILED', `left behind: ${[...rest.namespaces, ...rest.links].join(' ')}`)
      for (const l of rest.links) await ip(['link', 'del', l]).catch(() => {})
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

async function tc(h: NetnsHost, args: string[]): Promise<void> {
  try {
    await run('ip', ['netns', 'exec', h.ns, 'tc', ...args], { timeout: 10_000 })
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new NetnsError('NETNS_FAILED', `tc ${args.join(' ')} in ${h.ns}: ${(e.stderr ?? e.message).trim()}`)
  }
}
