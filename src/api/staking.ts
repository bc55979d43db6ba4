import type { FastifyInstance, FastifyReply } from 'fastify'
import { parseAddress } from '../codec/json.ts'
import type { AccountMessageKey } from '../staking/account-pool.ts'
import { accountToJson } from '../staking/accounts.ts'
import { delegatorToJson } from '../staking/delegations.ts'
import { StakeLedger, stakingToJson } from '../staking/ledger.ts'
import type { StakeSubmitAnswer, StakingService } from '../staking/service.ts'
import { economyToJson } from '../state/economy.ts'
import { pendingRewardsOf } from '../state/rewards-state.ts'
import type { AppState } from '../state/types.ts'

/** The POST routes of account messages and the body key each takes (INTERFACES.md). */
const ACCOUNT_ROUTES: readonly [string, AccountMessageKey][] = [
  ['/v1/transfers', 'transfer'],
  ['/v1/delegations', 'delegate'],
  ['/v1/undelegations', 'undelegate'],
  ['/v1/validators', 'createValidator'],
]

/**
 * `POST /v1/stake-moves` body `{move, signature}`, `POST /v1/unjail` body `{unjail, signature}` and the
 * account message routes (`/v1/transfers` `{transfer, signature}`, `/v1/delegations` `{delegate, ...}`,
 * `/v1/undelegations` `{undelegate, ...}`, `/v1/validators` `{createValidator, ...}`) -> 202 `{id}` /
 * 200 `{id}` (already pending or committed) / 400 `{error:{code,message}}` / 503 with Retry-After;
 * `GET /v1/staking` -> the pools per rollup, the epoch and the moves in force of the committed state;
 * `GET /v1/accounts/:address` -> balance, delegations, unbonding entries and the highest nonce used in
 * each of the address's nonce spaces (`nonces: {account, stakeMove, unjail}`, "0" when none), so that a
 * signer (the `murmur stake` CLI) can pick a fresh nonce and see when its message took effect.
 */
export function stakingRoutes(staking: StakingService, state: () => AppState) {
  return (app: FastifyInstance): void => {
    const answer = (ans: StakeSubmitAnswer, reply: FastifyReply) => {
      if ('retryAfterSec' in ans && ans.retryAfterSec !== undefined)
        reply.header('retry-after', String(ans.retryAfterSec))
      reply.code(ans.status)
      return ans.body
    }
    app.post('/v1/stake-moves', async (req, reply) => answer(await staking.submitJson(req.body), reply))
    app.post('/v1/unjail', async (req, reply) => answer(await staking.submitUnjailJson(req.body), reply))
    for (const [path, key] of ACCOUNT_ROUTES)
      app.post(path, async (req, reply) => answer(await staking.submitAccountJson(key, req.body), reply))
    app.get('/v1/staking', async () => {
      const s = state()
      const base = stakingToJson(s)
      const alarmed = new Set(s.alarms.map(String))
      return {
        ...base,
        pools: base.pools.map((p) => ({ ...p, alarm: alarmed.has(p.chainId) })),
        epoch: s.stake.epoch.toString(),
        ...economyToJson(s),
      }
    })
    app.get<{ Params: { address: string } }>('/v1/accounts/:address', async (req, reply) => {
      let address: `0x${string}`
      try {
        address = parseAddress(req.params.address.toLowerCase(), 'address')
      } catch (err) {
        reply.code(400)
        return { error: { code: 'MALFORMED', message: (err as Error).message } }
      }
      const s = state()
      const ledger = new StakeLedger(s)
      const used = (m: ReadonlyMap<`0x${string}`, bigint>) => (m.get(address) ?? 0n).toString()
      return {
        ...accountToJson(ledger.book.accounts, address),
        ...delegatorToJson(ledger.book.delegations, address),
        rewards: pendingRewardsOf(s.rewards, address).toString(),
        nonces: {
          account: used(s.stake.accountNonces),
          stakeMove: used(s.stakeNonces),
          unjail: used(s.unjailNonces),
        },
      }
    })
  }
}
