import { readFile } from 'node:fs/promises'
import { z } from 'zod'
import { ConfigError } from '../errors.ts'
import { DEFAULT_ALARM_PARAMS } from '../staking/concentration.ts'
import { DEFAULT_SURGE_PARAMS } from '../state/surge.ts'

const address = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed 20-byte hex address')
  .transform((s) => s.toLowerCase() as `0x${string}`)
const uint = z
  .union([z.string().regex(/^[0-9]+$/, 'must be a decimal integer string'), z.number().int().nonnegative()])
  .transform((v) => BigInt(v))
const chainId = z.number().int().positive().safe()
const bps = z.number().int().min(0).max(10_000)

const rollupSchema = z.object({
  chainId,
  name: z.string().min(1).max(64),
  type: z.enum(['optimistic', 'zk']),
  securityBps: z.number().int().min(0).max(10_000),
  /**
   * Blocks on top of a rollup block before a fill in it counts: block `n` is final once
   * `head - n >= confirmations` on a validator's RPC (0: as soon as it is mined, for devnets).
   */
  confirmations: z
    .number({ error: 'must be a whole number of blocks' })
    .int('must be a whole number of blocks')
    .min(0, 'must not be negative')
    .max(1_000_000, 'at most 1000000 blocks')
    .default(0),
  /**
   * The rollup's settlement contracts (`murmur contracts deploy` writes them). Absent: the rollup is
   * served without escrow (the executor pays the output itself and is repaid by nobody).
   */
  settlement: z.object({ settler: address, lightClient: address }).strict().optional(),
})

const validatorSchema = z.object({
  address,
  peerId: z.string().min(1),
  stake: uint,
  pools: z.array(chainId).min(1, 'a validator serves at least one rollup'),
})

/** The same token on several rollups, and the least spread an intent moving it must leave its executor. */
const assetSchema = z
  .object({
    symbol: z.string().regex(/^[A-Za-z0-9._-]{1,32}$/, 'letters, digits, dot, dash or underscore, 1 to 32'),
    minSpreadBps: bps.default(0),
    tokens: z.record(
      z.string().regex(/^[1-9][0-9]*$/, 'keys are chain ids'),
      z
        .string()
        .regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed 20-byte hex address (0x0…0: the native coin)')
        .transform((s) => s.toLowerCase()),
    ),
  })
  .strict()

const delegationSchema = z.object({ delegator: address, validator: address, amount: uint, chainId })

/** A balance in the staking token at genesis. */
const accountSchema = z.object({ address, balance: uint }).strict()

/** Network parameters with their defaults. */
const paramsSchema = z
  .object({
    /** Allowed clock skew for intent deadlines and signed reports, seconds. */
    maxClockSkewSec: z.number().int().nonnegative().default(30),
    /** Target interval between blocks, milliseconds. */
    blockIntervalMs: z.number().int().positive().default(500),
    /** A health report older than this is stale, milliseconds. */
    healthFreshnessMs: z.number().int().positive().default(5_000),
    /** Seconds an executor gets to fill an assignment before it is re-routed. */
    fillTimeoutSec: z.number().int().positive().default(30),
    /** Consecutive commits a validator may miss before it is offline (skipped as proposer and executor). */
    offlineAfterBlocks: z.number().int().positive().max(1_000).default(3),
    /** Blocks of the missed-blocks window (Cosmos x/slashing `SignedBlocksWindow`). */
    signedBlocksWindow: z.number().int().positive().max(100_000).default(1_000),
    /** A validator signing less than this share of its window (basis points) is jailed for downtime. */
    minSignedPerWindowBps: bps.default(5_000),
    /** Seconds a downtime jail lasts before an Unjail is accepted. */
    downtimeJailSec: z.number().int().nonnegative().max(31_536_000).default(60),
    /** Stake slashed for downtime, basis points. */
    slashDowntimeBps: bps.default(0),
    /** Stake slashed for double signing, basis points (the validator is also tombstoned). */
    slashDoubleSignBps: bps.default(500),
    /** The consensus validator set changes only after blocks whose height is a multiple of this. */
    epochBlocks: z.number().int().positive().max(1_000_000).default(100),
    /** Seconds after an order's fillDeadline before anyone may refund it without the network. */
    refundGraceSec: z.number().int().nonnegative().max(31_536_000).default(3_600),
    /** Least self-stake to create a validator (and stay eligible); absent: the smallest genesis stake. */
    minSelfStake: uint.optional(),
    /** Most validators in the consensus set. */
    maxValidators: z.number().int().positive().max(1_000).optional(),
    /** Most signed account messages of one account applied in one block. */
    maxMessagesPerBlock: z.number().int().positive().max(1_000).optional(),
    /** Epoch boundaries an Undelegate waits before its stake is back in the balance. */
    unbondingEpochs: z.number().int().nonnegative().max(10_000).optional(),
    /** Most unbonding entries plus loans in force per (delegator, validator) pair. */
    maxEntriesPerPair: z.number().int().positive().max(1_000).optional(),
    /** Share of a double-signing slash paid to the proposer that includes the evidence, basis points. */
    whistleblowerRewardBps: bps.optional(),
    /** Correlation penalty multiplier: extra slash per unit of the set's power slashed in the window. */
    correlationMultiplier: z.number().int().nonnegative().max(100).optional(),
    /** Blocks over which double-signing slashes add up for the correlation penalty. */
    correlationWindowBlocks: z.number().int().positive().max(1_000_000).optional(),
    /** Staking tokens created per epoch and split as rewards (docs/rewards.md). */
    emissionPerEpoch: uint.optional(),
    /** Reward weights of a pool's activity (docs/rewards.md, section 1). */
    baseWeight: uint.optional(),
    fillWeight: uint.optional(),
    settleWeight: uint.optional(),
    valueWeight: uint.optional(),
    valueUnit: uint.refine((v) => v > 0n, 'must be positive').optional(),
    /** Blocks a move into a congested pool waits before its stake counts double. */
    congestedActivationBlocks: uint.optional(),
    /** Overall HHI (basis points squared) above which the least concentrated pools get a reward boost. */
    concentrationHhiLevel: uint.optional(),
    concentrationBoostBps: z.number().int().min(0).max(100_000).optional(),
    /** A pool with fewer validators or less stake than these raises its alarm (docs/rewards.md, section 5). */
    minPoolValidators: z.number().int().nonnegative().max(1_000).optional(),
    minPoolStake: uint.optional(),
    /** ...and clears it only at these (at or above the raise levels). */
    clearPoolValidators: z.number().int().nonnegative().max(1_000).optional(),
    clearPoolStake: uint.optional(),
    /** Share of minSelfStake (basis points) that joins an alarmed pool, and its floor. */
    alarmMinSelfStakeBps: bps.optional(),
    alarmMinSelfStakeFloor: uint.optional(),
    /**
     * Base-fee surge detour (src/state/surge.ts): raise at this share of a rollup's baseline base fee
     * (bps; default 30000 = 3x), clear below surgeClearBps (default 15000), hold at least
     * surgeMinHoldBlocks (default 20), baseline = median of surgeWindowBlocks calm blocks (default 64),
     * never a surge below surgeMinBaseFeeWei (default 100000000 = 0.1 gwei).
     */
    surgeRaiseBps: z.number().int().min(10_001).max(1_000_000).optional(),
    surgeClearBps: z.number().int().min(0).max(1_000_000).optional(),
    surgeMinHoldBlocks: z.number().int().nonnegative().max(1_000_000).optional(),
    surgeWindowBlocks: z.number().int().min(8).max(1_024).optional(),
    surgeMinBaseFeeWei: uint.optional(),
  })
  .strict()
  .default({
    maxClockSkewSec: 30,
    blockIntervalMs: 500,
    healthFreshnessMs: 5_000,
    fillTimeoutSec: 30,
    offlineAfterBlocks: 3,
    signedBlocksWindow: 1_000,
    minSignedPerWindowBps: 5_000,
    downtimeJailSec: 60,
    slashDowntimeBps: 0,
    slashDoubleSignBps: 500,
    epochBlocks: 100,
    refundGraceSec: 3_600,
  })

export const genesisSchema = z
  .object({
    networkId: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, at most 63 characters'),
    genesisTime: z.number().int().nonnegative(),
    validators: z.array(validatorSchema).min(1, 'at least one validator'),
    delegations: z.array(delegationSchema).default([]),
    accounts: z.array(accountSchema).max(100_000, 'at most 100000 accounts').default([]),
    rollups: z.array(rollupSchema).min(1, 'at least one rollup'),
    assets: z.array(assetSchema).max(64, 'at most 64 assets').default([]),
    params: paramsSchema,
  })
  .strict()
  .superRefine((g, ctx) => {
    const p = g.params
    const clearV = p.clearPoolValidators ?? DEFAULT_ALARM_PARAMS.clearPoolValidators
    const minV = p.minPoolValidators ?? DEFAULT_ALARM_PARAMS.minPoolValidators
    if (clearV < minV)
      ctx.addIssue({
        code: 'custom',
        path: ['params', 'clearPoolValidators'],
        message: 'below minPoolValidators',
      })
    if (
      (p.clearPoolStake ?? DEFAULT_ALARM_PARAMS.clearPoolStake) <
      (p.minPoolStake ?? DEFAULT_ALARM_PARAMS.minPoolStake)
    )
      ctx.addIssue({ code: 'custom', path: ['params', 'clearPoolStake'], message: 'below minPoolStake' })
    if (
      (p.surgeClearBps ?? DEFAULT_SURGE_PARAMS.surgeClearBps) >
      (p.surgeRaiseBps ?? DEFAULT_SURGE_PARAMS.surgeRaiseBps)
    )
      ctx.addIssue({ code: 'custom', path: ['params', 'surgeClearBps'], message: 'above surgeRaiseBps' })
    const chains = new Set(g.rollups.map((r) => r.chainId))
    if (chains.size !== g.rollups.length)
      ctx.addIssue({ code: 'custom', path: ['rollups'], message: 'duplicate chainId' })
    const addrs = new Set<string>()
    g.validators.forEach((v, i) => {
      if (addrs.has(v.address))
        ctx.addIssue({ code: 'custom', path: ['validators', i, 'address'], message: 'duplicate validator' })
      addrs.add(v.address)
      v.pools.forEach((c, j) => {
        if (!chains.has(c))
          ctx.addIssue({
            code: 'custom',
            path: ['validators', i, 'pools', j],
            message: `unknown rollup ${c}`,
          })
      })
    })
    const symbols = new Set<string>()
    const tokens = new Map<string, string>()
    g.assets.forEach((a, i) => {
      if (symbols.has(a.symbol))
        ctx.addIssue({ code: 'custom', path: ['assets', i, 'symbol'], message: 'duplicate symbol' })
      symbols.add(a.symbol)
      if (Object.keys(a.tokens).length === 0)
        ctx.addIssue({
          code: 'custom',
          path: ['assets', i, 'tokens'],
          message: 'an asset has a token on at least one rollup',
        })
      for (const [chain, token] of Object.entries(a.tokens)) {
        if (!chains.has(Number(chain)))
          ctx.addIssue({
            code: 'custom',
            path: ['assets', i, 'tokens', chain],
            message: `unknown rollup ${chain}`,
          })
        const other = tokens.get(`${chain}/${token}`)
        if (other !== undefined)
          ctx.addIssue({
            code: 'custom',
            path: ['assets', i, 'tokens', chain],
            message: `${token} on ${chain} is already asset ${other}`,
          })
        tokens.set(`${chain}/${token}`, a.symbol)
      }
    })
    const holders = new Set<string>()
    g.accounts.forEach((a, i) => {
      if (holders.has(a.address))
        ctx.addIssue({ code: 'custom', path: ['accounts', i, 'address'], message: 'duplicate account' })
      holders.add(a.address)
    })
    g.delegations.forEach((d, i) => {
      if (!addrs.has(d.validator))
        ctx.addIssue({ code: 'custom', path: ['delegations', i, 'validator'], message: 'unknown validator' })
      if (!chains.has(d.chainId))
        ctx.addIssue({
          code: 'custom',
          path: ['delegations', i, 'chainId'],
          message: `unknown rollup ${d.chainId}`,
        })
    })
  })

export type Genesis = z.output<typeof genesisSchema>
export type GenesisInput = z.input<typeof genesisSchema>

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('')
}

/** Validates a parsed genesis object; a ConfigError BAD_GENESIS names the first bad field. */
export function parseGenesis(value: unknown, source = 'genesis'): Genesis {
  const result = genesisSchema.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]!
    const field = formatPath(issue.path) || '(root)'
    throw new ConfigError('BAD_GENESIS', `${source}: ${field}: ${issue.message}`)
  }
  return result.data
}

/** Reads and validates a genesis file. */
export async function loadGenesis(path: string): Promise<Genesis> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError('BAD_GENESIS', `cannot read genesis ${path}: ${(err as Error).message}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('BAD_GENESIS', `${path}: not valid JSON: ${(err as Error).message}`)
  }
  return parseGenesis(json, path)
}

/** JSON form of a genesis (bigints as decimal strings), for writing files. */
export function genesisToJson(g: Genesis): GenesisInput {
  return {
    ...g,
    validators: g.validators.map((v) => ({ ...v, stake: v.stake.toString() })),
    delegations: g.delegations.map((d) => ({ ...d, amount: d.amount.toString() })),
    accounts: g.accounts.map((a) => ({ ...a, balance: a.balance.toString() })),
    // Big integers as decimal strings, the rest as they are.
    params: Object.fromEntries(
      Object.entries(g.params).map(([k, v]) => [k, typeof v === 'bigint' ? v.toString() : v]),
    ) as GenesisInput['params'],
  }
}
