import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import type { Address } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prepareNetwork } from '../devnet/network.ts'
import { MurmurNode } from '../src/node/node.ts'
import { type StakeMove, signStakeMove, stakeMoveTypedData } from '../src/staking/moves.ts'
import { signedStakeMoveToJson } from '../src/staking/service.ts'
import { wallet } from './helpers/intents.ts'
import { getJson, postJson, waitFor } from './helpers/wait.ts'

interface StakingBody {
  height: string
  pools: Array<{ chainId: string; validators: Array<{ address: string; stake: string }>; total: string }>
  moves: Array<{
    id: string
    staker: string
    fromChainId: string
    toChainId: string
    amount: string
    height: string
  }>
}

describe('stake moves API (one validator node)', () => {
  let node: MurmurNode
  let api: string
  let dir: string
  let networkId: string
  let validator: ReturnType<typeof privateKeyToAccount>
  let me: Address

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-api-staking-'))
    const net = await prepareNetwork({ dir, nodes: 1, stake: 900n })
    networkId = net.genesis.networkId
    validator = privateKeyToAccount(net.nodes[0]!.validatorPrivateKey)
    me = net.nodes[0]!.address
    node = new MurmurNode(
      {
        dataDir: net.nodes[0]!.dataDir,
        genesisPath: net.genesisPath,
        api: { host: '127.0.0.1', port: 0 },
        // More requests a second than a wallet's (api-limits.test.ts tests the limit).
        apiLimits: { rateLimit: undefined },
      },
      pino({ level: 'silent' }),
    )
    await node.start()
    api = `http://127.0.0.1:${node.apiAddress!.port}`
  })
  afterAll(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const post = (body: unknown) =>
    postJson<{ id?: string; error?: { code: string; message: string } }>(`${api}/v1/stake-moves`, body)
  const move = (over: Partial<StakeMove> = {}): StakeMove => ({
    staker: me,
    fromChainId: 901n,
    toChainId: 903n,
    amount: 100n,
    durationBlocks: 1000n,
    nonce: 1n,
    ...over,
  })

  it('202 then 200, committed: GET /v1/staking and GET /v1/blocks/:height show it', async () => {
    const before = await getJson<StakingBody>(`${api}/v1/staking`)
    expect(before.pools.map((p) => [p.chainId, p.total])).toEqual([
      ['901', '300'],
      ['902', '300'],
      ['903', '300'],
    ])
    expect(before.moves).toEqual([])
    const s = await signStakeMove(validator, networkId, move())
    const first = await post(signedStakeMoveToJson(s))
    expect(first.status).toBe(202)
    const id = first.body.id!
    expect(id).toMatch(/^0x[0-9a-f]{64}$/)
    expect(await post(signedStakeMoveToJson(s))).toEqual({ status: 200, body: { id } })

    const after = await waitFor('the move in force', async () => {
      const b = await getJson<StakingBody>(`${api}/v1/staking`)
      return b.moves.length === 1 ? b : undefined
    })
    expect(after.moves[0]).toMatchObject({
      id,
      staker: me,
      fromChainId: '901',
      toChainId: '903',
      amount: '100',
    })
    expect(after.pools.map((p) => [p.chainId, p.total])).toEqual([
      ['901', '200'],
      ['902', '300'],
      ['903', '400'],
    ])
    expect(after.pools[2]!.validators).toEqual([{ address: me, stake: '400', jailed: false }])
    const height = after.moves[0]!.height
    const block = await getJson<{ stakeMoves: Array<{ id: string; move: { nonce: string } }> }>(
      `${api}/v1/blocks/${height}`,
    )
    expect(block.stakeMoves).toEqual([{ id, ...signedStakeMoveToJson(s) }])
    // Committed: still 200 for the same move; a new move with a used nonce is refused.
    expect(await post(signedStakeMoveToJson(s))).toEqual({ status: 200, body: { id } })
    const reused = await signStakeMove(validator, networkId, move({ amount: 1n }))
    expect((await post(signedStakeMoveToJson(reused))).body.error?.code).toBe('NONCE_USED')
    const validators = await getJson<Array<{ power: string; pools: Record<string, string> }>>(
      `${api}/v1/validators`,
    )
    expect(validators[0]).toMatchObject({ power: '900', pools: { '901': '200', '902': '300', '903': '400' } })
  })

  it('400 with the code of what is wrong', async () => {
    const code = async (body: unknown) => {
      const r = await post(body)
      expect(r.status).toBe(400)
      return r.body.error!.code
    }
    expect(await code({ move: {}, signature: '0x' })).toBe('MALFORMED')
    expect(await code('not an object')).toBe('MALFORMED')
    const good = signedStakeMoveToJson(await signStakeMove(validator, networkId, move({ nonce: 10n })))
    expect(await code({ ...good, move: { ...good.move, amount: 5 } })).toBe('MALFORMED')
    expect(
      await code(signedStakeMoveToJson(await signStakeMove(validator, networkId, move({ toChainId: 901n })))),
    ).toBe('MALFORMED')
    expect(
      await code(signedStakeMoveToJson(await signStakeMove(validator, networkId, move({ toChainId: 7n })))),
    ).toBe('MALFORMED')
    const other = wallet()
    const m = move({ nonce: 11n })
    const forged = { move: m, signature: await other.signTypedData(stakeMoveTypedData(networkId, m)) }
    expect(await code(signedStakeMoveToJson(forged))).toBe('BAD_SIGNATURE')
    const stranger = move({ staker: other.address.toLowerCase() as Address })
    expect(await code(signedStakeMoveToJson(await signStakeMove(other, networkId, stranger)))).toBe(
      'UNKNOWN_STAKER',
    )
    expect(
      await code(
        signedStakeMoveToJson(await signStakeMove(validator, networkId, move({ amount: 301n, nonce: 12n }))),
      ),
    ).toBe('INSUFFICIENT_STAKE')
  })
})
