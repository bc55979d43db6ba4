// Epoch benchmark (pure, one process, no network): what `apply` costs on a state with 100 validators in 4
// pools and 10 000 delegations (issue 11, Measure), for
//   - an ordinary empty block (the baseline: no staking change),
//   - the epoch boundary block (unbonding payouts, the set chosen again, the emission split and credited,
//     concentration and alarms),
//   - a block with one Delegate (the rewards work a stake change costs: the periods reconciled over every
//     delegation pair), and
//   - the store ops of the boundary block (the stake book and rewards written as JSON).
// Goal (issue 11): the boundary no longer than an ordinary block on this machine (a block interval, 500 ms).
//
//   npm run bench -- epoch [--runs 30]
import { parseArgs } from 'node:util'
import type { Address } from 'viem'
import { fastAccount } from '../src/crypto/sign.ts'
import { parseGenesis } from '../src/node/genesis.ts'
import { signDelegate } from '../src/staking/delegations.ts'
import { apply } from '../src/state/apply.ts'
import { genesisState } from '../src/state/genesis.ts'
import { proposeBlock } from '../src/state/propose.ts'
import { appStateOps } from '../src/state/storage.ts'
import type { AppState } from '../src/state/types.ts'
import { median } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'epoch'),
  options: { runs: { type: 'string', default: '30' } },
})
const RUNS = Number(values.runs)
const VALIDATORS = 100
const DELEGATIONS = 10_000
const CHAINS = [901, 902, 903, 904]
const NETWORK = 'bench-epoch'
const EPOCH = 4

const addr = (i: number) => `0x${i.toString(16).padStart(40, '0')}` as Address
let seed = 42
const rand = (n: number) => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31
  return seed % n
}
const delegator = fastAccount(`0x${'5'.repeat(64)}`)
const genesis = parseGenesis({
  networkId: NETWORK,
  genesisTime: Math.floor(Date.now() / 1000) - 100,
  validators: Array.from({ length: VALIDATORS }, (_, i) => ({
    address: addr(i + 1),
    peerId: `peer-${i}`,
    stake: String(1_000_000 + rand(1_000_000)),
    pools: [CHAINS[i % 4]!, CHAINS[(i + 1) % 4]!],
  })),
  delegations: Array.from({ length: DELEGATIONS }, (_, i) => {
    const v = rand(VALIDATORS)
    return {
      delegator: addr(10_000 + i),
      validator: addr(v + 1),
      amount: String(1_000 + rand(10_000)),
      chainId: CHAINS[v % 4]!,
    }
  }),
  accounts: [{ address: delegator.address, balance: '1000000' }],
  rollups: CHAINS.map((chainId) => ({ chainId, name: `r${chainId}`, type: 'zk', securityBps: 9000 })),
  params: { epochBlocks: EPOCH, unbondingEpochs: 1 },
})

const t0 = performance.now()
let state: AppState = genesisState(genesis)
const genesisMs = performance.now() - t0
const block = (
  s: AppState,
  extra: Parameters<typeof proposeBlock>[5] extends infer O ? Partial<O> : never = {},
) => proposeBlock(s, [], null, [], s.lastBlockTime + 1_000, { proposer: addr(1), round: 0, ...extra })
// Up to the block before the boundary.
for (let h = 1; h < EPOCH; h++) state = apply(state, block(state)).state
const ordinaryBase = apply(state, block(state)).state // height EPOCH: a boundary; the next is ordinary
const boundaryBlock = block(state)
const ordinaryBlock = block(ordinaryBase)
const delegate = await signDelegate(delegator, NETWORK, {
  delegator: delegator.address.toLowerCase() as Address,
  validator: addr(1),
  chainId: BigInt(CHAINS[0]!),
  amount: 100n,
  nonce: 1n,
})
const delegateBlock = block(ordinaryBase, { accountMessages: [delegate] })
if ((delegateBlock.accountMessages ?? []).length !== 1) throw new Error('the Delegate was left out')

const time = (f: () => unknown) => {
  const xs: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now()
    f()
    xs.push(performance.now() - t)
  }
  return median(xs)
}
const ordinary = time(() => apply(ordinaryBase, ordinaryBlock))
const boundary = time(() => apply(state, boundaryBlock))
const withDelegate = time(() => apply(ordinaryBase, delegateBlock))
const after = apply(state, boundaryBlock).state
const ops = time(() => appStateOps(state, after))
const bytes = appStateOps(state, after).reduce(
  (t, o) => t + ('value' in o ? JSON.stringify(o.value).length : 0),
  0,
)
if (after.rewards.history.length !== 1) throw new Error('the boundary did not pay the epoch')

console.log(
  `epoch bench: ${VALIDATORS} validators, ${DELEGATIONS} delegations, 4 pools, ${RUNS} runs, medians`,
)
console.log(`  genesis state                 ${genesisMs.toFixed(1)} ms (once)`)
console.log(`  apply, ordinary empty block   ${ordinary.toFixed(2)} ms`)
console.log(`  apply, epoch boundary block   ${boundary.toFixed(2)} ms`)
console.log(`  apply, block with a Delegate  ${withDelegate.toFixed(2)} ms (periods reconciled)`)
console.log(`  store ops of the boundary     ${ops.toFixed(2)} ms, ${(bytes / 1024).toFixed(0)} KiB of JSON`)
