// Rewards benchmark (pure, one process, no network): the reward work of one epoch boundary with 100
// validators in 4 pools and 10 000 delegations (issue 11, Measure):
//   boundary = stake entries from the pools and moves in force + concentration and alarms + the split of
//   the emission + the F1 credit of each validator's accumulator. No delegation is visited (F1), so the
//   10 000 delegations cost nothing here; they are timed apart, all withdrawing at once (the worst block).
// Goal (issue 11): no longer than an ordinary block on this machine, about 100-250 ms.
//
//   npm run bench -- rewards [--runs 50]
import { parseArgs } from 'node:util'
import type { Address, Hex } from 'viem'
import { concentration, DEFAULT_ALARM_PARAMS, poolAlarms } from '../src/staking/concentration.ts'
import type { StakeMoveRecord } from '../src/staking/moves.ts'
import {
  DEFAULT_REWARD_PARAMS,
  type DelegationPeriod,
  distributeEpoch,
  EMPTY_ACCUMULATOR,
  stakeEntries,
  startDelegation,
  type ValidatorAccumulator,
  withdrawReward,
} from '../src/staking/rewards.ts'
import { median } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'rewards'),
  options: { runs: { type: 'string', default: '50' } },
})
const RUNS = Number(values.runs)
const VALIDATORS = 100
const DELEGATIONS = 10_000
const CHAINS = [901n, 902n, 903n, 904n]

const addr = (i: number) => `0x${i.toString(16).padStart(40, '0')}` as Address
let seed = 42
const rand = (n: number) => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31
  return seed % n
}

// Each validator serves two pools; a quarter have a congested move in force, active.
const validators = Array.from({ length: VALIDATORS }, (_, i) => ({
  address: addr(i + 1),
  pools: new Map([
    [CHAINS[i % 4]!, BigInt(1_000_000 + rand(1_000_000))],
    [CHAINS[(i + 1) % 4]!, BigInt(500_000 + rand(500_000))],
  ]),
  jailed: i % 50 === 49,
}))
const moves: StakeMoveRecord[] = validators
  .filter((_, i) => i % 4 === 0)
  .map((v, i) => ({
    id: `0x${(i + 1).toString(16).padStart(64, '0')}` as Hex,
    staker: v.address,
    fromChainId: [...v.pools.keys()][0]!,
    toChainId: [...v.pools.keys()][1]!,
    amount: 100_000n,
    height: 1_000n,
    untilHeight: 100_000n,
    targetCongested: true,
  }))
const commissionBps = new Map(validators.map((v, i) => [v.address, (i * 37) % 2_000]))

let accs = new Map<Address, ValidatorAccumulator>()
const delegations: { validator: Address; period: DelegationPeriod }[] = []
for (let d = 0; d < DELEGATIONS; d++) {
  const validator = addr(1 + rand(VALIDATORS))
  const r = startDelegation(accs.get(validator) ?? EMPTY_ACCUMULATOR, BigInt(1 + rand(100_000)))
  accs.set(validator, r.acc)
  delegations.push({ validator, period: r.period })
}

let height = 10_000n
function boundary(): void {
  height += 100n
  const stakes = stakeEntries(validators, moves, height, DEFAULT_REWARD_PARAMS.congestedActivationBlocks)
  poolAlarms(new Set(), concentration(stakes), DEFAULT_ALARM_PARAMS)
  const contributions = CHAINS.map((chainId, i) => ({
    chainId,
    intentsFilled: BigInt(100 + rand(1000)),
    intentsSettled: BigInt(rand(1000)),
    valueMoved: BigInt(rand(1_000_000)) * 10n ** 18n,
    securityBps: 5_000 + i * 1_000,
  }))
  accs = distributeEpoch(DEFAULT_REWARD_PARAMS, { contributions, stakes, commissionBps }, accs).accumulators
}

function withdrawAll(): void {
  const next = new Map(accs)
  for (const d of delegations) {
    const r = withdrawReward(next.get(d.validator)!, d.period)
    next.set(d.validator, r.acc)
    d.period = r.period
  }
  accs = next
}

const time = (f: () => void) => {
  const t0 = performance.now()
  f()
  return performance.now() - t0
}
for (let i = 0; i < 5; i++) boundary() // warm-up
const boundaryMs = Array.from({ length: RUNS }, () => time(boundary))
const withdrawMs = Array.from({ length: RUNS }, () => {
  boundary()
  return time(withdrawAll)
})
const fmt = (x: number) => x.toFixed(3)
process.stdout.write(
  `rewards: ${VALIDATORS} validators, ${CHAINS.length} pools, ${DELEGATIONS} delegations, ${RUNS} runs\n` +
    `  epoch boundary (entries + concentration + split + F1 credit): median ${fmt(median(boundaryMs))} ms ` +
    `(goal: no longer than an ordinary block here, about 100-250 ms)\n` +
    `  per block, amortised over an epoch of 100 blocks: ${fmt(median(boundaryMs) / 100)} ms\n` +
    `  all ${DELEGATIONS} delegations withdrawing in one block: median ${fmt(median(withdrawMs))} ms\n`,
)
