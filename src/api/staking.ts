import type { FastifyInstance } from 'fastify'
import { type StakingState, stakingToJson } from '../staking/moves.ts'
import type { StakingService } from '../staking/service.ts'

/**
 * `POST /v1/stake-moves` body `{move, signature}` -> 202 `{id}` / 200 `{id}` (already pending or
 * committed) / 400 `{error:{code,message}}` / 503 with Retry-After; `GET /v1/staking` -> the pools per
 * rollup and the moves in force of the committed state.
 */
export function stakingRoutes(staking: StakingService, state: () => StakingState) {
  return (app: FastifyInstance): void => {
    app.post('/v1/stake-moves', async (req, reply) => {
      const ans = await staking.submitJson(req.body)
      if ('retryAfterSec' in ans && ans.retryAfterSec !== undefined)
        reply.header('retry-after', String(ans.retryAfterSec))
      reply.code(ans.status)
      return ans.body
    })
    app.get('/v1/staking', async () => stakingToJson(state()))
  }
}
