/**
 * Metrics of the stake economy, computed from the committed state when scraped: concentration (Nakamoto
 * coefficient and HHI, overall and per pool), pool alarms, the community pool and the last epoch's
 * emission split.
 */
import { Gauge, type Registry } from 'prom-client'
import { concentration } from '../staking/concentration.ts'
import { poolHoldings } from '../state/economy.ts'
import type { AppState } from '../state/types.ts'

/** Registers the staking gauges on `registry`; `state` is read at each scrape. */
export function registerStakingMetrics(registry: Registry, state: () => AppState): void {
  const figures = () => {
    const s = state()
    return { s, c: concentration(poolHoldings(s, s.validators, s.consensusSet)) }
  }
  const nakamoto: Gauge<'pool'> = new Gauge({
    name: 'murmur_staking_nakamoto',
    help: 'Fewest validators holding more than 1/3 of the stake (pool="all" overall, else a chain id)',
    labelNames: ['pool'] as const,
    registers: [registry],
    collect: () => {
      const { c } = figures()
      nakamoto.set({ pool: 'all' }, c.overall.nakamoto)
      for (const p of c.pools) nakamoto.set({ pool: p.chainId.toString() }, p.nakamoto)
    },
  })
  const hhi: Gauge<'pool'> = new Gauge({
    name: 'murmur_staking_hhi',
    help: 'Herfindahl-Hirschman index of stake, basis points squared (10^8: one validator holds all)',
    labelNames: ['pool'] as const,
    registers: [registry],
    collect: () => {
      const { c } = figures()
      hhi.set({ pool: 'all' }, Number(c.overall.hhi))
      for (const p of c.pools) hhi.set({ pool: p.chainId.toString() }, Number(p.hhi))
    },
  })
  const alarm: Gauge<'pool'> = new Gauge({
    name: 'murmur_staking_pool_alarm',
    help: '1 while the pool is below its safe level (no new assignments there), else 0',
    labelNames: ['pool'] as const,
    registers: [registry],
    collect: () => {
      const s = state()
      for (const r of s.rollups)
        alarm.set({ pool: String(r.chainId) }, s.alarms.includes(BigInt(r.chainId)) ? 1 : 0)
    },
  })
  const community: Gauge = new Gauge({
    name: 'murmur_staking_community_pool',
    help: 'Staking tokens in the community pool (every reward remainder so far)',
    registers: [registry],
    collect: () => community.set(Number(state().rewards.communityPool)),
  })
  const emitted: Gauge = new Gauge({
    name: 'murmur_staking_emitted',
    help: 'Staking tokens created by epoch emissions so far',
    registers: [registry],
    collect: () => emitted.set(Number(state().rewards.emitted)),
  })
}

const alarmedSets = new WeakMap<readonly bigint[], ReadonlySet<bigint>>()

/** The state's alarmed pools as a set (cached per list: a state keeps its list until the alarms change). */
export function alarmedSet(state: Pick<AppState, 'alarms'>): ReadonlySet<bigint> {
  let s = alarmedSets.get(state.alarms)
  if (s === undefined) {
    s = new Set(state.alarms)
    alarmedSets.set(state.alarms, s)
  }
  return s
}
