/**
 * Rollup profiles of the devnet (issue 12, item 4): anvil chains that behave like the rollup families
 * users know, each an anvil configuration (block time, block gas limit, first base fee, background load)
 * plus the genesis fields the network reads (`type`, `securityBps`, `confirmations`).
 *
 * Anvil takes a fractional `--block-time` (checked with anvil 1.7.1: `--block-time 0.25` mines four blocks
 * a second), so the fast chains need no other mining mode. Block timestamps stay whole seconds of wall
 * time (several 250 ms blocks share one), which is what a node's health monitor averages its block time
 * from. The names say "-like": these are imitations of the families' block times, finality and load,
 * not forks of their chains. Chain ids stay 901 + i whatever the profile.
 */
import { MurmurError } from '../src/errors.ts'
import type { GenesisInput } from '../src/node/genesis.ts'
import type { Rollup } from './anvil.ts'

/** The families the profiles imitate. */
export type RollupFamily = 'fast' | 'op-stack' | 'zk' | 'congested'

/** Background load of a congested profile (the rollup's `congest()` filler) and its base fee ceiling. */
export interface ProfileLoad {
  /** Filler transactions per block. */
  txPerBlock: number
  /** Share of each block the filler takes, in basis points. */
  targetGasRatioBps: number
  /**
   * Base fee the chain is held at once it gets there (anvil_setNextBlockBaseFeePerGas): full blocks raise
   * the EIP-1559 base fee by 12.5 % each, which unchecked would price every fill out within minutes; a
   * busy real chain settles where demand stops, which this ceiling stands for.
   */
  baseFeeCeilingWei: bigint
}

/** One kind of rollup: its anvil settings and its genesis fields. */
export interface RollupProfile {
  kind: string
  family: RollupFamily
  /** What it imitates, for the README table and `devnet up`'s output. */
  description: string
  /** Anvil `--block-time`, seconds (fractions allowed). */
  blockTimeSec: number
  /** Anvil `--gas-limit`. */
  gasLimit: bigint
  /** Anvil `--block-base-fee-per-gas` of the first block. */
  baseFeeWei?: bigint
  type: 'optimistic' | 'zk'
  securityBps: number
  /** Blocks on top before a fill counts (genesis `rollups[].confirmations`). */
  confirmations: number
  load?: ProfileLoad
}

const GWEI = 10n ** 9n

/**
 * The named kinds, in the order `mixed` cycles through them: the first five already cover every family
 * (fast, OP Stack, zk with a finality delay, congested), so a small mixed devnet shows them all.
 */
export const ROLLUP_PROFILES: readonly RollupProfile[] = [
  {
    kind: 'arbitrum-like',
    family: 'fast',
    description: 'Arbitrum One: 250 ms blocks, optimistic',
    blockTimeSec: 0.25,
    gasLimit: 32_000_000n,
    type: 'optimistic',
    securityBps: 8000,
    confirmations: 0,
  },
  {
    kind: 'base-like',
    family: 'op-stack',
    description: 'Base (OP Stack): 2 s blocks, optimistic',
    blockTimeSec: 2,
    gasLimit: 60_000_000n,
    type: 'optimistic',
    securityBps: 8000,
    confirmations: 0,
  },
  {
    kind: 'zksync-like',
    family: 'zk',
    description: 'zkSync Era: 1 s blocks, zk, a fill counts 3 blocks deep',
    blockTimeSec: 1,
    gasLimit: 30_000_000n,
    type: 'zk',
    securityBps: 9500,
    confirmations: 3,
  },
  {
    kind: 'congested-like',
    family: 'congested',
    description: 'a busy chain: 1 s blocks of 4 M gas kept over 90 % full, base fee high',
    blockTimeSec: 1,
    gasLimit: 4_000_000n,
    baseFeeWei: 5n * GWEI,
    type: 'optimistic',
    securityBps: 8000,
    confirmations: 0,
    load: { txPerBlock: 4, targetGasRatioBps: 9_400, baseFeeCeilingWei: 200n * GWEI },
  },
  {
    kind: 'scroll-like',
    family: 'zk',
    description: 'Scroll: 3 s blocks, zk, a fill counts 2 blocks deep',
    blockTimeSec: 3,
    gasLimit: 10_000_000n,
    type: 'zk',
    securityBps: 9500,
    confirmations: 2,
  },
  {
    kind: 'optimism-like',
    family: 'op-stack',
    description: 'OP Mainnet (OP Stack): 2 s blocks, optimistic',
    blockTimeSec: 2,
    gasLimit: 30_000_000n,
    type: 'optimistic',
    securityBps: 8000,
    confirmations: 0,
  },
  {
    kind: 'linea-like',
    family: 'zk',
    description: 'Linea: 2 s blocks, zk, a fill counts 2 blocks deep',
    blockTimeSec: 2,
    gasLimit: 61_000_000n,
    type: 'zk',
    securityBps: 9500,
    confirmations: 2,
  },
  {
    kind: 'arbitrum-nova-like',
    family: 'fast',
    description: 'Arbitrum Nova (AnyTrust): 250 ms blocks, optimistic, weaker data availability',
    blockTimeSec: 0.25,
    gasLimit: 32_000_000n,
    type: 'optimistic',
    securityBps: 7000,
    confirmations: 0,
  },
  {
    kind: 'polygon-zkevm-like',
    family: 'zk',
    description: 'Polygon zkEVM: 2 s blocks, zk, a fill counts 4 blocks deep',
    blockTimeSec: 2,
    gasLimit: 30_000_000n,
    type: 'zk',
    securityBps: 9500,
    confirmations: 4,
  },
  {
    kind: 'blast-like',
    family: 'op-stack',
    description: 'Blast (OP Stack): 2 s blocks, optimistic',
    blockTimeSec: 2,
    gasLimit: 30_000_000n,
    type: 'optimistic',
    securityBps: 7500,
    confirmations: 0,
  },
  {
    kind: 'zora-like',
    family: 'op-stack',
    description: 'Zora (OP Stack): 2 s blocks, optimistic',
    blockTimeSec: 2,
    gasLimit: 30_000_000n,
    type: 'optimistic',
    securityBps: 7500,
    confirmations: 0,
  },
  {
    kind: 'taiko-like',
    family: 'zk',
    description: 'Taiko (based rollup): 2 s blocks here, zk, a fill counts 2 blocks deep',
    blockTimeSec: 2,
    gasLimit: 30_000_000n,
    type: 'zk',
    securityBps: 9000,
    confirmations: 2,
  },
]

/** `--profile` values: `uniform` (every rollup today's 1 s anvil), `mixed`, or one kind for all. */
export const PROFILE_NAMES = ['uniform', 'mixed', ...ROLLUP_PROFILES.map((p) => p.kind)] as const

export class ProfileError extends MurmurError<'UNKNOWN_PROFILE'> {}

/** What one devnet rollup gets: its anvil options and its genesis entry. */
export interface PlannedRollup {
  chainId: number
  kind: string
  anvil: { blockTimeSec: number; gasLimit?: bigint; baseFeeWei?: bigint }
  genesis: GenesisInput['rollups'][number]
  load?: ProfileLoad
}

/**
 * The rollups of a devnet of `count` chains (ids 901 + i) under `profile`. `uniform` is what the devnet
 * did before profiles existed: `blockTimeSec` for every chain, optimistic and zk alternating, no
 * confirmations, anvil's default gas limit.
 */
export function planRollups(profile: string, count: number, blockTimeSec = 1): PlannedRollup[] {
  if (profile === 'uniform')
    return Array.from({ length: count }, (_, i) => {
      const chainId = 901 + i
      const zk = i % 2 === 1
      return {
        chainId,
        kind: 'uniform',
        anvil: { blockTimeSec },
        genesis: {
          chainId,
          name: `rollup-${chainId}`,
          type: zk ? ('zk' as const) : ('optimistic' as const),
          securityBps: zk ? 9500 : 8000,
        },
      }
    })
  const one = ROLLUP_PROFILES.find((p) => p.kind === profile)
  if (profile !== 'mixed' && one === undefined)
    throw new ProfileError('UNKNOWN_PROFILE', `--profile must be one of ${PROFILE_NAMES.join(', ')}`)
  return Array.from({ length: count }, (_, i) => {
    const p = one ?? ROLLUP_PROFILES[i % ROLLUP_PROFILES.length]!
    const chainId = 901 + i
    return {
      chainId,
      kind: p.kind,
      anvil: {
        blockTimeSec: p.blockTimeSec,
        gasLimit: p.gasLimit,
        ...(p.baseFeeWei === undefined ? {} : { baseFeeWei: p.baseFeeWei }),
      },
      genesis: {
        chainId,
        name: `${p.kind}-${chainId}`,
        type: p.type,
        securityBps: p.securityBps,
        confirmations: p.confirmations,
      },
      ...(p.load === undefined ? {} : { load: p.load }),
    }
  })
}

/** A running background load: the filler and the base fee ceiling. */
export interface RunningLoad {
  stop(): Promise<void>
}

/**
 * Starts a congested profile's load on `rollup`: its `congest()` filler, and a check once a block that
 * puts the next block's base fee back at the ceiling when it went over. Errors of the check (the rollup
 * stopped by `rollup-down`) are ignored: it tries again on the next tick.
 */
export function startProfileLoad(
  rollup: Pick<Rollup, 'congest' | 'rpcUrl' | 'running'>,
  load: ProfileLoad,
  blockTimeSec: number,
): RunningLoad {
  const filler = rollup.congest({ txPerBlock: load.txPerBlock, targetGasRatioBps: load.targetGasRatioBps })
  const call = async (method: string, params: unknown[]) => {
    const res = await fetch(rollup.rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      signal: AbortSignal.timeout(2_000),
    })
    return ((await res.json()) as { result?: unknown }).result
  }
  let busy = false
  const timer = setInterval(
    () => {
      if (busy || !rollup.running) return
      busy = true
      call('eth_getBlockByNumber', ['latest', false])
        .then(async (b) => {
          const fee = BigInt((b as { baseFeePerGas?: string } | null)?.baseFeePerGas ?? '0x0')
          if (fee > load.baseFeeCeilingWei)
            await call('anvil_setNextBlockBaseFeePerGas', [`0x${load.baseFeeCeilingWei.toString(16)}`])
        })
        .catch(() => {})
        .finally(() => {
          busy = false
        })
    },
    Math.max(100, blockTimeSec * 1000),
  )
  return {
    async stop() {
      clearInterval(timer)
      await filler.stop().catch(() => {})
    },
  }
}
