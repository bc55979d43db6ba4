/**
 * The stake economy at process level (issue 11, "Tests that must exist"), black-box over the HTTP API of
 * four genesis validator processes, a fifth node process that is not a validator yet, and two real anvil
 * rollups:
 * - the fifth node's validator key signs a CreateValidator (its peer id in the record, its self-stake
 *   from a genesis account); the consensus set changes at the first epoch boundary after the block that
 *   applied it, not before: until that boundary no certificate carries its precommit, no block changes
 *   the set hash and no assignment names it; after it, the set hash is the five validators', its
 *   precommits are in certificates, and intents are assigned to it and filled by it on the rollup;
 * - a delegator delegates to a genesis validator, earns at the next boundary (`rewards` > 0), undelegates
 *   (the pending reward is paid into its balance then) and gets exactly its stake back in its balance at
 *   the boundary that starts `untilEpoch` = its epoch + `unbondingEpochs`, and not at an earlier one.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createPublicClient, type Hex, http } from 'viem'
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { type NodeProcess, spawnNode } from '../../devnet/process.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { loadKeys, type NodeKeys } from '../../src/identity/keys.ts'
import { signDelegate, signUndelegate } from '../../src/staking/delegations.ts'
import { peerIdBytes, signCreateValidator } from '../../src/staking/validators.ts'
import { accountMessageToJson } from '../../src/staking/wire-accounts.ts'
import { validatorSetHash } from '../../src/state/epoch.ts'
import type { validatorsToJson } from '../../src/state/storage.ts'
import { Cluster } from '../helpers/cluster.ts'
import { wallet } from '../helpers/intents.ts'
import { getJson, postJson, waitFor } from '../helpers/wait.ts'

const EPOCH_BLOCKS = 20n
const UNBONDING_EPOCHS = 2n
/** The genesis validators' stake: also the default minSelfStake (the smallest genesis stake). */
const GENESIS_STAKE = 1_000_000n
const JOINER_BALANCE = 3_000_000n
const DELEGATOR_BALANCE = 5_000_000n
const POOLS = [901n, 902n]

interface BlockJson {
  height: string
  validatorsHash: Hex
  nextValidatorsHash: Hex
  assignments: Array<{ intentId: Hex; executor: string }>
  reassignments: Array<{ intentId: Hex; executor: string }>
  fills: Array<{ intentId: Hex; executor: string; chainId: string; txHash: Hex }>
  accountMessages: Array<Record<string, Record<string, unknown>>>
  certificate: { precommits: Array<{ validator: string }> } | null
}
interface AccountJson {
  balance: string
  delegations: Array<{ validator: string; chainId: string; amount: string }>
  unbonding: Array<{ validator: string; chainId: string; amount: string; untilEpoch: string }>
  rewards: string
  nonces: { account: string }
}
/** A row of `GET /v1/validators`. */
type ValidatorJson = ReturnType<typeof validatorsToJson>[number]

describe('validators who join and delegators who earn, across node processes', () => {
  let c: Cluster
  let chains: Rollups
  let joinerKeys: NodeKeys
  let joiner: `0x${string}`
  let joinerProc: NodeProcess | undefined
  const delegatorKey = generatePrivateKey()
  const delegator = privateKeyToAccount(delegatorKey)
  const delegatorAddr = delegator.address.toLowerCase() as `0x${string}`
  const api = (i: number) => c.node(i).api
  const height = async (base = api(0)) =>
    BigInt((await getJson<{ height: number }>(`${base}/v1/status`)).height)
  const block = (h: bigint) => getJson<BlockJson>(`${api(0)}/v1/blocks/${h}`)
  const account = (a: string) => getJson<AccountJson>(`${api(1)}/v1/accounts/${a}`)
  const epoch = async () => BigInt((await getJson<{ epoch: string }>(`${api(1)}/v1/staking`)).epoch)

  /** Posts a signed account message to node 0's route; it must be accepted (202). */
  async function post(route: string, body: unknown): Promise<Hex> {
    const r = await postJson<{ id: Hex }>(`${api(0)}${route}`, body)
    expect(r.status, JSON.stringify(r.body)).toBe(202)
    return r.body.id
  }

  /**
   * The height of the block that carried `signer`'s account message `key` with `nonce`, searched from
   * `from` up as blocks commit (the accounts' nonces tell that it applied, not where).
   */
  async function appliedAt(from: bigint, key: string, signerField: string, signer: string, nonce: bigint) {
    const at = await blockOf(from, key, signerField, signer, nonce)
    // Accounts are read from node 1: wait until it has committed that block too.
    await waitFor(`node 1 at height ${at}`, async () => ((await height(api(1))) >= at ? true : undefined), {
      timeoutMs: 30_000,
    })
    return at
  }

  /** The height of node 0's block that applied the message. */
  async function blockOf(from: bigint, key: string, signerField: string, signer: string, nonce: bigint) {
    let h = from
    return waitFor(
      `${key} of ${signer} in a block`,
      async () => {
        const top = await height()
        for (; h <= top; h++) {
          const b = await block(h)
          const hit = b.accountMessages.some(
            (m) => m[key]?.[signerField] === signer && m[key]?.['nonce'] === nonce.toString(),
          )
          if (hit) return h
        }
        return undefined
      },
      { timeoutMs: 30_000 },
    )
  }

  /** Waits until node 0 is at height >= `h`. */
  const reach = (h: bigint, timeoutMs = 60_000) =>
    waitFor(`height ${h}`, async () => (await height()) >= h, { timeoutMs })

  /** The first height after which an epoch boundary starts: the next multiple of EPOCH_BLOCKS above h. */
  const nextBoundary = (h: bigint) => (h / EPOCH_BLOCKS + 1n) * EPOCH_BLOCKS

  const networkId = () => c.net.genesis.networkId

  beforeAll(async () => {
    c = await Cluster.create(4, {
      epochBlocks: Number(EPOCH_BLOCKS),
      unbondingEpochs: Number(UNBONDING_EPOCHS),
    } as never)
    // The fifth node: its own keys, not in the genesis set; its validator address holds tokens.
    const joinerDir = join(c.net.dir, 'node-4')
    await mkdir(joinerDir, { recursive: true })
    joinerKeys = await loadKeys(joinerDir, { create: true })
    joiner = joinerKeys.validator.address.toLowerCase() as `0x${string}`
    const g = JSON.parse(await readFile(c.net.genesisPath, 'utf8')) as Record<string, unknown>
    g['accounts'] = [
      { address: joiner, balance: JOINER_BALANCE.toString() },
      { address: delegatorAddr, balance: DELEGATOR_BALANCE.toString() },
    ]
    await writeFile(c.net.genesisPath, JSON.stringify(g, null, 2))
    chains = await startRollups({
      count: POOLS.length,
      blockTimeSec: 1,
      accounts: [...c.net.nodes.map((n) => n.validatorPrivateKey), joinerKeys.validatorPrivateKey],
    })
    const flags = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
    const boot = (await c.start(0, { rollups: flags })).listen[0]!
    await Promise.all([1, 2, 3].map((i) => c.start(i, { rollups: flags, bootstrap: [boot] })))
    joinerProc = await spawnNode({
      dataDir: joinerDir,
      genesisPath: c.net.genesisPath,
      logFile: join(c.net.dir, 'node-4.log'),
      rollups: flags,
      bootstrap: [boot],
    })
    await c.waitConnected([0, 1, 2, 3], 3)
  }, 120_000)
  afterAll(async () => {
    await joinerProc?.stop(5_000)
    await c?.close()
    await chains?.stop()
  })

  it('a fifth validator created by a signed CreateValidator joins at the next epoch boundary and is assigned intents', async () => {
    // Post just after a boundary, so that the epoch has room for assignments made before the next one.
    await waitFor('a height just past a boundary', async () => (await height()) % EPOCH_BLOCKS === 1n, {
      timeoutMs: 30_000,
      intervalMs: 50,
    })
    const from = await height()
    const nonce = BigInt(Date.now())
    const joinerAccount = privateKeyToAccount(joinerKeys.validatorPrivateKey)
    await post(
      '/v1/validators',
      accountMessageToJson(
        await signCreateValidator(joinerAccount, networkId(), {
          validator: joiner,
          peerId: peerIdBytes(joinerKeys.peerId),
          chainIds: POOLS,
          selfStake: GENESIS_STAKE,
          commissionBps: 0,
          nonce,
        }),
      ),
    )
    const at = await appliedAt(from, 'createValidator', 'validator', joiner, nonce)
    const boundary = nextBoundary(at)
    expect(at % EPOCH_BLOCKS, 'applied in a boundary block: the test wanted room before the next').not.toBe(
      0n,
    )
    // The record is committed (its peer id bound to its address), the stake left the account.
    const record = (await getJson<ValidatorJson[]>(`${api(2)}/v1/validators`)).find(
      (v) => v.address === joiner,
    )
    expect(record?.peerId).toBe(joinerKeys.peerId)
    expect((await account(joiner)).balance).toBe((JOINER_BALANCE - GENESIS_STAKE).toString())

    // Intents sent in the rest of the epoch are assigned, and never to the candidate.
    const client = new MurmurClient(api(0))
    const early: Hex[] = []
    for (let k = 0; k < 4; k++)
      early.push(
        (await client.send(wallet(), { to: wallet().address, amount: 1_000_000_000n, chains: POOLS })).id,
      )
    for (const id of early)
      await waitFor(`${id} assigned`, async () => (await client.get(id)).assignment !== null, {
        timeoutMs: 20_000,
      })

    await reach(boundary + 3n)
    const setBefore = (await block(at)).validatorsHash
    let assignedBefore = 0
    for (let h = at; h <= boundary; h++) {
      const b = await block(h)
      expect(b.validatorsHash, `height ${h}`).toBe(setBefore)
      if (h < boundary) expect(b.nextValidatorsHash, `height ${h}`).toBe(setBefore)
      expect(b.certificate!.precommits.map((p) => p.validator)).not.toContain(joiner)
      for (const a of [...b.assignments, ...b.reassignments]) {
        expect(a.executor, `height ${h}`).not.toBe(joiner)
        assignedBefore++
      }
    }
    expect(assignedBefore).toBeGreaterThanOrEqual(early.length)

    // From the boundary on, the set is the five validators with their powers as GET /v1/validators shows.
    const validators = await getJson<ValidatorJson[]>(`${api(1)}/v1/validators`)
    const five = new Map(
      validators.filter((v) => !v.jailed && !v.tombstoned).map((v) => [v.address, BigInt(v.power)] as const),
    )
    expect(five.size).toBe(5)
    expect(five.get(joiner)).toBe(GENESIS_STAKE)
    const after = await block(boundary + 1n)
    expect((await block(boundary)).nextValidatorsHash).toBe(after.validatorsHash)
    expect(after.validatorsHash).not.toBe(setBefore)
    expect(after.validatorsHash).toBe(validatorSetHash(five))

    // It signs: its precommits are in the certificates of the new epoch.
    let h = boundary + 1n
    const signedAt = await waitFor(
      'a certificate with the new validator',
      async () => {
        for (const top = await height(); h <= top; h++)
          if ((await block(h)).certificate?.precommits.some((p) => p.validator === joiner)) return h
        return undefined
      },
      { timeoutMs: 30_000 },
    )
    expect(signedAt).toBeGreaterThan(boundary)
    // Its own node follows the chain and says which validator it runs.
    const own = await getJson<{ validator: string; height: number }>(`${joinerProc!.api}/v1/status`)
    expect(own.validator).toBe(joiner)
    expect(BigInt(own.height)).toBeGreaterThanOrEqual(boundary)

    // Intents are assigned to it, and it fills them on the rollup with its own key.
    const later: Hex[] = []
    const mine = await waitFor(
      'an intent assigned to the new validator',
      async () => {
        for (let k = 0; k < 4; k++)
          later.push(
            (await client.send(wallet(), { to: wallet().address, amount: 1_000_000_000n, chains: POOLS })).id,
          )
        const views = await Promise.all(later.map((id) => client.get(id)))
        return views.find((v) => v.assignment?.executor === joiner)
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    )
    expect(BigInt(mine.assignment!.height)).toBeGreaterThan(boundary)
    const filled = await client.waitFor(mine.id, { timeoutMs: 60_000 })
    expect(filled.state).toBe('filled')
    const rpc = chains.get(Number(filled.fill!.chainId)).rpcUrl
    const tx = await createPublicClient({ transport: http(rpc) }).getTransaction({
      hash: filled.fill!.txHash,
    })
    expect(tx.from.toLowerCase()).toBe(joiner)
  }, 240_000)

  it('a delegator delegates, earns at the boundary, undelegates and gets its stake back after unbondingEpochs', async () => {
    const validator = c.net.nodes[0]!.address
    const amount = 2_000_000n
    const sign = async (
      f: typeof signDelegate | typeof signUndelegate,
      a: PrivateKeyAccount,
      nonce: bigint,
    ) =>
      accountMessageToJson(
        await f(a, networkId(), { delegator: delegatorAddr, validator, chainId: 901n, amount, nonce }),
      )

    // Delegate, away from a boundary so that the block cannot itself be the one that pays the epoch.
    await waitFor('a height just past a boundary', async () => (await height()) % EPOCH_BLOCKS === 1n, {
      timeoutMs: 30_000,
      intervalMs: 50,
    })
    let from = await height()
    const dNonce = BigInt(Date.now())
    await post('/v1/delegations', await sign(signDelegate, delegator, dNonce))
    const delegatedAt = await appliedAt(from, 'delegate', 'delegator', delegatorAddr, dNonce)
    expect(delegatedAt % EPOCH_BLOCKS).not.toBe(0n)
    const delegatedEpoch = delegatedAt / EPOCH_BLOCKS
    // Read between two epoch reads: an account view seen while the epoch was still the delegation's
    // has earned nothing yet.
    const e1 = await epoch()
    const early = await account(delegatorAddr)
    const e2 = await epoch()
    expect(early.delegations).toEqual([{ validator, chainId: '901', amount: amount.toString() }])
    expect(early.balance).toBe((DELEGATOR_BALANCE - amount).toString())
    if (e1 === delegatedEpoch && e2 === delegatedEpoch) expect(early.rewards).toBe('0')

    // The boundary pays: the delegation has a pending reward.
    const earned = await waitFor(
      'rewards after the boundary',
      async () => {
        const a = await account(delegatorAddr)
        return BigInt(a.rewards) > 0n ? BigInt(a.rewards) : undefined
      },
      { timeoutMs: 60_000 },
    )
    expect(await epoch()).toBeGreaterThan(delegatedEpoch)
    expect((await account(delegatorAddr)).balance).toBe((DELEGATOR_BALANCE - amount).toString())

    // Undelegate all of it: the pending reward is withdrawn into the balance, the stake starts unbonding.
    await waitFor('a height just past a boundary', async () => (await height()) % EPOCH_BLOCKS === 1n, {
      timeoutMs: 30_000,
      intervalMs: 50,
    })
    from = await height()
    const uNonce = BigInt(Date.now())
    await post('/v1/undelegations', await sign(signUndelegate, delegator, uNonce))
    const undelegatedAt = await appliedAt(from, 'undelegate', 'delegator', delegatorAddr, uNonce)
    const undelegatedEpoch = undelegatedAt / EPOCH_BLOCKS
    const untilEpoch = undelegatedEpoch + UNBONDING_EPOCHS
    const unbonding = await account(delegatorAddr)
    expect(unbonding.delegations).toEqual([])
    expect(unbonding.unbonding).toEqual([
      { validator, chainId: '901', amount: amount.toString(), untilEpoch: untilEpoch.toString() },
    ])
    expect(unbonding.rewards).toBe('0')
    const withdrawn = BigInt(unbonding.balance) - (DELEGATOR_BALANCE - amount)
    expect(withdrawn).toBeGreaterThanOrEqual(earned)

    // Until the boundary that starts untilEpoch the stake stays out of the balance; from it, it is back.
    // Each account view is read between two epoch reads, so the epoch it was taken at is bounded; what
    // it showed is judged after the wait (an expect inside waitFor would only be retried).
    const without = BigInt(unbonding.balance)
    const views: Array<{ before: bigint; after: bigint; a: AccountJson }> = []
    await waitFor(
      `epoch ${untilEpoch}`,
      async () => {
        const before = await epoch()
        const a = await account(delegatorAddr)
        views.push({ before, after: await epoch(), a })
        return before >= untilEpoch
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    )
    for (const v of views.filter((x) => x.after < untilEpoch)) {
      expect(v.a.balance, `in epoch ${v.after}`).toBe(without.toString())
      expect(v.a.unbonding, `in epoch ${v.after}`).toHaveLength(1)
    }
    // Seen still unbonding after a boundary had passed (not paid at the first one).
    expect(views.some((v) => v.before > undelegatedEpoch && v.after < untilEpoch)).toBe(true)
    const last = views.at(-1)!
    expect(last.a.balance).toBe((without + amount).toString())
    expect(last.a.unbonding).toEqual([])
  }, 240_000)
})
