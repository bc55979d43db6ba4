/**
 * Access (issue 13, item 7): the admin routes answer only with `--admin` and only to loopback clients;
 * and no API route moves stake, tokens or intents on a user's behalf without that user's signature.
 * The state-changing routes are the POST routes: `/v1/intents`, `/v1/stake-moves`, `/v1/unjail`,
 * `/v1/transfers`, `/v1/delegations`, `/v1/undelegations`, `/v1/validators` (public) and
 * `/admin/v1/partition`, `/admin/v1/probe` (admin: no user's funds, loopback only). Each public one is
 * sent the victim's message signed by another key, without a signature, with 65 zero bytes, and with the
 * victim's real signature over a different message: every one is a 4xx, and what the API shows of the
 * victim's and the attacker's accounts, the pools and the moves is the same two blocks later.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { type Address, bytesToHex, type Hex } from 'viem'
import type { PrivateKeyAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { type ApiNode, ApiServer } from '../src/api/server.ts'
import { signedIntentToJson, signOrder } from '../src/codec/intent.ts'
import { fastAccount } from '../src/crypto/sign.ts'
import { ConfigError } from '../src/errors.ts'
import { MurmurNode } from '../src/node/node.ts'
import { signedMessageToJson, signTransfer, TRANSFER_KIND } from '../src/staking/accounts.ts'
import { DELEGATE_KIND, signDelegate, signUndelegate, UNDELEGATE_KIND } from '../src/staking/delegations.ts'
import { signStakeMove } from '../src/staking/moves.ts'
import { signedStakeMoveToJson } from '../src/staking/service.ts'
import { signedUnjailToJson, signUnjail } from '../src/staking/unjail.ts'
import { CREATE_VALIDATOR_KIND, signCreateValidator } from '../src/staking/validators.ts'
import { startApiNode } from './helpers/api-node.ts'
import { makeIntent, wallet } from './helpers/intents.ts'
import { getJson, postJson, waitFor } from './helpers/wait.ts'

const log = pino({ level: 'silent' })

/** A node stub for the API server alone: records what the admin routes would have done. */
function stubNode() {
  const partition = vi.fn(async (deny: string[]) => deny)
  const publish = vi.fn(async () => 0)
  const node: ApiNode = {
    status: () => ({ ok: true }),
    registry: new Registry(),
    p2p: { peers: () => [], bans: () => [], partition, peerId: 'peer-self', publish } as never,
    probes: {
      next: (origin, size) => ({ seq: 1, origin, sentAtMs: 0, padding: new Uint8Array(size) }),
      recent: () => [],
    },
  }
  return { node, partition, publish }
}

const ADMIN: ReadonlyArray<[string, string, unknown]> = [
  ['POST', '/admin/v1/partition', { deny: ['12D3KooWpeer'] }],
  ['POST', '/admin/v1/probe', { size: 10 }],
  ['GET', '/admin/v1/probes', undefined],
]

describe('admin routes', () => {
  it('do not exist without --admin', async () => {
    const s = stubNode()
    const api = new ApiServer({ host: '127.0.0.1', port: 0, admin: false }, { node: s.node, log })
    for (const [method, url, payload] of ADMIN) {
      const r = await api.app.inject({ method: method as 'GET', url, ...(payload ? { payload } : {}) })
      expect(r.statusCode, url).toBe(404)
    }
    expect(s.partition).not.toHaveBeenCalled()
    expect(s.publish).not.toHaveBeenCalled()
    await api.stop()
  })

  it('answer loopback clients only, whatever address the client comes from', async () => {
    const s = stubNode()
    const api = new ApiServer({ host: '127.0.0.1', port: 0, admin: true }, { node: s.node, log })
    const call = (remoteAddress: string, [method, url, payload]: (typeof ADMIN)[number]) =>
      api.app.inject({ method: method as 'GET', url, remoteAddress, ...(payload ? { payload } : {}) })
    for (const from of [
      '10.0.0.7',
      '192.168.1.2',
      '172.16.0.1',
      '::ffff:10.0.0.1',
      '2001:db8::1',
      '0.0.0.0',
      '::',
    ]) {
      for (const route of ADMIN) {
        const r = await call(from, route)
        expect(r.statusCode, `${route[1]} from ${from}`).toBe(403)
        expect(r.json(), `${route[1]} from ${from}`).toMatchObject({ error: { code: 'FORBIDDEN' } })
      }
    }
    expect(s.partition).not.toHaveBeenCalled()
    expect(s.publish).not.toHaveBeenCalled()
    for (const from of ['127.0.0.1', '127.8.9.10', '::1', '::ffff:127.0.0.1']) {
      for (const route of ADMIN)
        expect((await call(from, route)).statusCode, `${route[1]} from ${from}`).toBe(200)
    }
    expect(s.partition).toHaveBeenCalledTimes(4)
    await api.stop()
  })

  it('--admin with a non-loopback API address does not start', async () => {
    for (const host of ['0.0.0.0', '::', '192.168.1.2']) {
      const node = new MurmurNode(
        {
          dataDir: '/nonexistent/murmur-access',
          genesisPath: '/nonexistent/g.json',
          api: { host, port: 0 },
          admin: true,
        },
        log,
      )
      await expect(node.start()).rejects.toMatchObject({ constructor: ConfigError, code: 'BAD_OPTION' })
    }
  })
})

describe('no state change without the user’s signature', () => {
  let api: string
  let networkId: string
  let me: PrivateKeyAccount
  let stop: () => Promise<void>
  const attacker = wallet()
  // A funded account that is not a validator: the victim of the transfer, delegation and CreateValidator
  // (the validator `me` is the victim of the stake move and the undelegation).
  const victim = wallet()
  const lower = (a: { address: string }) => a.address.toLowerCase() as Address

  beforeAll(async () => {
    let node: MurmurNode
    ;({ node, api, stop } = await startApiNode(
      { apiLimits: { rateLimit: undefined } },
      {
        accounts: [{ address: victim.address, balance: '1000000' }],
        stake: 900n,
        params: { minSelfStake: '10' },
      },
    ))
    networkId = node.status().networkId as string
    me = fastAccount(node.keys.validatorPrivateKey)
  }, 60_000)
  afterAll(async () => {
    await stop?.()
  })

  /** What the API shows of the victim, the attacker, the pools and the moves (not rewards, which accrue). */
  async function view() {
    const account = async (a: Address) => {
      const { rewards: _r, ...rest } = await getJson<Record<string, unknown>>(`${api}/v1/accounts/${a}`)
      return rest
    }
    const staking = await getJson<{ pools: unknown; moves: unknown }>(`${api}/v1/staking`)
    return {
      validator: await account(lower(me)),
      victim: await account(lower(victim)),
      attacker: await account(lower(attacker)),
      pools: staking.pools,
      moves: staking.moves,
    }
  }
  const height = async () => Number((await getJson<{ height: number | string }>(`${api}/v1/status`)).height)
  const ZERO_SIG: Hex = `0x${'00'.repeat(65)}`

  it('every forged, missing, zero or borrowed signature is a 4xx and changes nothing', async () => {
    const before = await view()
    const move = {
      staker: lower(me),
      fromChainId: 901n,
      toChainId: 902n,
      amount: 100n,
      durationBlocks: 100n,
      nonce: 1n,
    }
    const transfer = { from: lower(victim), to: lower(attacker), amount: 5n, nonce: 1n }
    const delegation = {
      delegator: lower(victim),
      validator: lower(me),
      chainId: 901n,
      amount: 5n,
      nonce: 1n,
    }
    const undelegation = { ...delegation, delegator: lower(me) }
    // A CreateValidator for a victim who is not one yet (the validator's own would be ALREADY_VALIDATOR).
    const create = {
      validator: lower(victim),
      peerId: bytesToHex(peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toMultihash().bytes),
      chainIds: [901n],
      selfStake: 10n,
      commissionBps: 100,
      nonce: 1n,
    }
    const intent = await makeIntent(victim)
    const forgedIntent = { order: intent.order, signature: await signOrder(attacker, intent.order) }
    const otherIntent = await makeIntent(victim)

    // Each route: bodies [forged by the attacker, real signature of another message]; missing and zero
    // signatures are derived from the first.
    const routes: Array<[string, unknown, unknown]> = [
      [
        '/v1/intents',
        signedIntentToJson(forgedIntent),
        { ...(intent.body as object), signature: otherIntent.intent.signature },
      ],
      [
        '/v1/stake-moves',
        signedStakeMoveToJson({
          move,
          signature: (await signStakeMove(attacker, networkId, { ...move, staker: lower(attacker) }))
            .signature,
        }),
        signedStakeMoveToJson({
          move,
          signature: (await signStakeMove(me, networkId, { ...move, amount: 1n })).signature,
        }),
      ],
      [
        '/v1/unjail',
        signedUnjailToJson({
          unjail: { validator: lower(me), nonce: 1n },
          signature: (await signUnjail(attacker, networkId, { validator: lower(attacker), nonce: 1n }))
            .signature,
        }),
        signedUnjailToJson({
          unjail: { validator: lower(me), nonce: 2n },
          signature: (await signUnjail(me, networkId, { validator: lower(me), nonce: 1n })).signature,
        }),
      ],
      [
        '/v1/transfers',
        signedMessageToJson(TRANSFER_KIND, {
          transfer,
          signature: (await signTransfer(attacker, networkId, { ...transfer, from: lower(attacker) }))
            .signature,
        }),
        signedMessageToJson(TRANSFER_KIND, {
          transfer,
          signature: (await signTransfer(victim, networkId, { ...transfer, amount: 1n })).signature,
        }),
      ],
      [
        '/v1/delegations',
        signedMessageToJson(DELEGATE_KIND, {
          delegate: delegation,
          signature: (await signDelegate(attacker, networkId, { ...delegation, delegator: lower(attacker) }))
            .signature,
        }),
        signedMessageToJson(DELEGATE_KIND, {
          delegate: delegation,
          signature: (await signDelegate(victim, networkId, { ...delegation, amount: 1n })).signature,
        }),
      ],
      [
        '/v1/undelegations',
        signedMessageToJson(UNDELEGATE_KIND, {
          undelegate: undelegation,
          signature: (
            await signUndelegate(attacker, networkId, { ...undelegation, delegator: lower(attacker) })
          ).signature,
        }),
        signedMessageToJson(UNDELEGATE_KIND, {
          undelegate: undelegation,
          signature: (await signUndelegate(me, networkId, { ...undelegation, amount: 1n })).signature,
        }),
      ],
      [
        '/v1/validators',
        signedMessageToJson(CREATE_VALIDATOR_KIND, {
          createValidator: create,
          signature: (
            await signCreateValidator(attacker, networkId, { ...create, validator: lower(attacker) })
          ).signature,
        }),
        signedMessageToJson(CREATE_VALIDATOR_KIND, {
          createValidator: create,
          signature: (await signCreateValidator(victim, networkId, { ...create, selfStake: 11n })).signature,
        }),
      ],
    ]
    const codes: Record<string, string[]> = {}
    for (const [path, forged, borrowed] of routes) {
      const { signature: _s, ...unsigned } = forged as Record<string, unknown>
      for (const body of [
        forged,
        borrowed,
        unsigned,
        { ...(forged as object), signature: ZERO_SIG },
        { ...(forged as object), signature: '0x' },
      ]) {
        const r = await postJson<{ error?: { code: string } }>(`${api}${path}`, body)
        expect(r.status, `${path} ${JSON.stringify(body)}`).toBeGreaterThanOrEqual(400)
        expect(r.status, `${path} ${JSON.stringify(body)}`).toBeLessThan(500)
        const list = codes[path] ?? []
        list.push(r.body.error?.code ?? '?')
        codes[path] = list
      }
    }
    if (process.env['MURMUR_TEST_LOG'] !== undefined) console.log(codes)
    // Where only the signature is wrong, the refusal says so (not a balance or nonce check by luck).
    for (const path of [
      '/v1/intents',
      '/v1/stake-moves',
      '/v1/transfers',
      '/v1/delegations',
      '/v1/undelegations',
      '/v1/validators',
    ]) {
      expect(codes[path]!.slice(0, 2), path).toEqual(['BAD_SIGNATURE', 'BAD_SIGNATURE'])
    }
    expect((await fetch(`${api}/v1/intents/${intent.id}`)).status).toBe(404)

    const h = await height()
    await waitFor('two more blocks', async () => (await height()) >= h + 2, { timeoutMs: 30_000 })
    expect(await view()).toEqual(before)

    // The control: the victim's own signature moves its tokens, and the view shows it.
    const real = await signTransfer(victim, networkId, transfer)
    expect((await postJson(`${api}/v1/transfers`, signedMessageToJson(TRANSFER_KIND, real))).status).toBe(202)
    await waitFor(
      'the signed transfer applied',
      async () => JSON.stringify((await view()).attacker) !== JSON.stringify(before.attacker),
      { timeoutMs: 30_000 },
    )
  })
})
