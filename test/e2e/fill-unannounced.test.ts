/**
 * A fill that landed on chain but was never announced still counts (issues 12 and 13; rollups/fill-relay.ts).
 * Four validator processes, three anvil rollups with the settlement contracts. The validator the router
 * picks first (the lowest address: equal stakes, no work yet) runs with the test-only `withhold-fills`
 * mode: it opens the order on 901 and fills it on 902 through the settler, and its announcement is lost
 * (neither gossiped nor made pending on its own node). Its assignment passes its deadline and moves to
 * another executor on 902 (`rerouteOf`), whose fill would revert `AlreadyFilled`: that executor reads
 * the settler's `OutputFilled` and announces the first executor's fill for it. The intent ends filled
 * with the first executor named in the block's fill, the FILL leaf repays it (its claim settles the
 * order on 901 and pays it exactly the input), and no second fill lands.
 */
import { type Address, createPublicClient, getAddress, type Hex, http, type PublicClient } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { type DevnetSettlement, setupDevnetSettlement } from '../../devnet/settlement.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { murmurSettlerAbi, testTokenAbi } from '../../src/contracts/abi.ts'
import { BYZANTINE_ENV } from '../../src/node/byzantine.ts'
import { recoverFillSigner } from '../../src/rollups/fill.ts'
import { Cluster } from '../helpers/cluster.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

const UNIT = 10n ** 18n

interface IntentJson {
  state: string
  assignment: { executor: string; chainId: string } | null
  settlement: { state: string; height: string | null } | null
}
interface BlockJson {
  fills: Array<{
    intentId: Hex
    chainId: string
    txHash: Hex
    blockNumber: string
    blockHash: Hex
    executor: Address
    signature: Hex
  }>
}

describe('a fill that landed but was never announced', () => {
  let c: Cluster
  let rollups: Rollups
  let s: DevnetSettlement
  let withholder: Address
  const userKey = generatePrivateKey()
  const user = privateKeyToAccount(userKey)
  const clients = new Map<number, PublicClient>()
  const read = (chainId: number, functionName: string, args: unknown[], address?: Address) =>
    clients.get(chainId)!.readContract({
      address: address ?? s.contracts[String(chainId)]!.settler,
      abi: functionName === 'balanceOf' ? testTokenAbi : murmurSettlerAbi,
      functionName,
      args,
    } as never) as Promise<unknown>
  const tokenBalance = (chainId: number, who: Address) =>
    read(chainId, 'balanceOf', [who], s.token) as Promise<bigint>

  beforeAll(async () => {
    // A short fill timeout: the withheld fill's assignment moves within seconds (long enough for the
    // first executor to open and fill on a loaded machine: with 8 s its deadline passed before it filled).
    c = await Cluster.create(4, { fillTimeoutSec: 20 } as never)
    const deployer = generatePrivateKey()
    rollups = await startRollups({
      count: 3,
      blockTimeSec: 1,
      accounts: [...c.net.nodes.map((n) => n.validatorPrivateKey), deployer, userKey],
    })
    const rpcUrls = new Map(rollups.rollups.map((r) => [r.chainId, r.rpcUrl]))
    for (const [id, url] of rpcUrls) clients.set(id, createPublicClient({ transport: http(url) }))
    const setup = await setupDevnetSettlement({
      genesisPath: c.net.genesisPath,
      genesis: c.net.genesis,
      rpcUrls,
      deployerKey: deployer,
      wallets: [user],
      walletKeys: [userKey],
      executors: c.net.nodes.map((n) => n.address),
      out: () => {},
    })
    s = setup.record
    withholder = [...c.net.nodes].map((n) => n.address).sort()[0]!
    const idx = c.net.nodes.findIndex((n) => n.address === withholder)
    const order = [idx, ...[0, 1, 2, 3].filter((i) => i !== idx)]
    // The test-only flag is refused without the variable; only the withholder's process is started with it.
    process.env[BYZANTINE_ENV] = '1'
    let boot: string
    try {
      boot = (await c.start(order[0]!, { rollups: rpcUrls, extraArgs: ['--byzantine', 'withhold-fills'] }))
        .listen[0]!
    } finally {
      delete process.env[BYZANTINE_ENV]
    }
    await Promise.all(order.slice(1).map((i) => c.start(i, { rollups: rpcUrls, bootstrap: [boot] })))
    await c.waitConnected([0, 1, 2, 3], 3)
  }, 180_000)

  afterAll(async () => {
    await c?.close()
    await rollups?.stop()
  })

  it('is relayed by the next assignee: filled once, the first executor named and repaid', async () => {
    const api = c.node(0).api
    const mc = new MurmurClient(api)
    const to = privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address
    const input = 10n * UNIT
    const output = (input * 997n) / 1000n
    const before = await tokenBalance(901, withholder)
    const { id } = await mc.send(user, {
      to,
      chains: [902n],
      originChainId: 901n,
      originSettler: s.contracts['901']!.settler,
      inputToken: s.token,
      inputAmount: input,
      outputToken: s.token,
      amount: output,
      fillInSec: 300,
    })
    const first = await waitFor(
      `${id} assigned`,
      async () => (await getJson<IntentJson>(`${api}/v1/intents/${id}`)).assignment,
    )
    expect(first.executor).toBe(withholder)
    // The withholder fills on chain (its announcement is dropped).
    await waitFor(
      `${id} filled on 902 by the withholder`,
      async () => ((await read(902, 'filledBy', [id])) as string).toLowerCase() === withholder,
      { timeoutMs: 60_000 },
    )

    const v = await waitFor(
      `${id} filled in the network`,
      async () => {
        const r = await getJson<IntentJson>(`${api}/v1/intents/${id}`)
        return r.state === 'filled' && r.settlement?.height != null ? r : undefined
      },
      { timeoutMs: 120_000 },
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${await c.diagnose()}`)
    })
    // The assignment had moved: another executor relayed the withholder's fill, and the block names the
    // withholder as the executor (its FILL leaf), signed by the relayer.
    const relayer = v.assignment!.executor.toLowerCase()
    expect(relayer).not.toBe(withholder)
    const block = await getJson<BlockJson>(`${api}/v1/blocks/${v.settlement!.height}`)
    const f = block.fills.find((x) => x.intentId === id)!
    expect(f.executor).toBe(withholder)
    expect(f.chainId).toBe('902')
    const signer = await recoverFillSigner(c.net.genesis.networkId, {
      fill: { ...f, chainId: BigInt(f.chainId), blockNumber: BigInt(f.blockNumber) },
      signature: f.signature,
    })
    expect(signer).toBe(relayer)

    // The FILL leaf repays the withholder: its claim settles the order and pays it exactly the input.
    await waitFor(`${id} settled on 901`, async () => Number(await read(901, 'orderStatus', [id])) === 2, {
      timeoutMs: 60_000,
    })
    const [settled] = await clients.get(901)!.getContractEvents({
      address: s.contracts['901']!.settler,
      abi: murmurSettlerAbi,
      eventName: 'Settled',
      args: { orderId: id },
      fromBlock: 0n,
    })
    expect(settled!.args).toMatchObject({ executor: getAddress(withholder), amount: input })
    expect((await tokenBalance(901, withholder)) - before).toBe(input)
    // One fill landed: one OutputFilled, the recipient paid once.
    const fills = await clients.get(902)!.getContractEvents({
      address: s.contracts['902']!.settler,
      abi: murmurSettlerAbi,
      eventName: 'OutputFilled',
      args: { orderId: id },
      fromBlock: 0n,
    })
    expect(fills).toHaveLength(1)
    expect(await tokenBalance(902, to)).toBe(output)
  }, 240_000)
})
