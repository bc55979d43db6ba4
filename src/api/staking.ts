import type { FastifyInstance, FastifyReply } from 'fastify'
import { type StakingState, stakingToJson } from '../staking/moves.ts'
import type { StakeSubmitAnswer, StakingService } from '../staking/service.ts'

/**
 * `POST /v1/stake-moves` body `{move, signature}` and `POST /v1/unjail` body `{unjail, signature}` ->
 * 202 `{id}` / 200 `{id}` (already pending or committed) / 400 `{error:{code,message}}` / 503 with
 * Retry-After; `GET /v1/staking` -> the pools per rollup and the moves in force of the committed state.
 */
export function stakingRoutes(staking: StakingService, state: () => StakingState) {
  return (app: FastifyInstance): void => {
    const answer = (ans: StakeSubmitAnswer, reply: FastifyReply) => {
      if ('retryAfterSec' in ans && ans.retryAfterSec !== undefined)
        reply.header('retry-after', String(ans.retryAfterSec))
      reply.code(ans.status)
      return ans.body
    }
    app.post('/v1/stake-moves', async (req, reply) => answer(await staking.submitJson(req.body), reply))
    app.post('/v1/unjail', async (req, reply) => answer(await staking.submitUnjailJson(req.body), reply))
    app.get('/v1/staking', async () => stakingToJson(state()))
  }
}
