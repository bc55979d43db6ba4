/**
 * Settlement end to end (issue 10): four validator processes, three anvil rollups with the settlement
 * contracts and a test token deployed. ERC-20 intents are opened on their origin (the user's input
 * escrowed), filled through the destination settler, and claimed by their executor against the network's
 * own commit certificate: the user is charged exactly inputAmount, the recipient paid exactly outputAmount,
 * the executor repaid exactly inputAmount, and the escrow ends empty. Then an executor killed (kill -9)
 * between open and claim finishes after its restart with nothing paid twice, an order the user opens on
 * chain herself with a native input is picked up from its `Open` event and settles (the executor repaid
 * the native input), and a validator jailed mid-run changes the set: the origin light clients rotate and
 * later claims still verify.
 */
import { readFile, writeFile } from 'node:fs/promises'
import {
  type Address,
  createPublicClient,
  createWalletClient,
  getAddress,
  type Hex,
  http,
  type PublicClient,
  parseEventLogs,
} from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { networkSalt } from '../../src/codec/eip712.ts'
import { buildOrder, signOrder } from '../../src/codec/intent.ts'
import { murmurLightClientAbi, murmurSettlerAbi, testTokenAbi } from '../../src/contracts/abi.ts'
import { deploySettlement, rollupChain, type SettlementDeployment } from '../../src/contracts/deploy.ts'
import { Cluster } from '../helpers/cluster.ts'
import { getJson, waitFor } from '../helpers/wait.ts'

const CHAINS = [901, 902, 903]
const UNIT = 10n ** 18n

describe('settlement across four validator processes and three rollups', () => {
  let c: Cluster
  let rollups: Rollups
  let flags: Map<number, string>
  let boot: string
  const deployer = generatePrivateKey()
  const userKey = generatePrivateKey()
  const user = privateKeyToAccount(userKey)
  const deployments = new Map<number, SettlementDeployment>()
  const clients = new Map<number, PublicClient>()

  const tokenBalance = (chainId: number, who: Address) =>
    clients.get(chainId)!.readContract({
      address: deployments.get(chainId)!.token!,
      abi: testTokenAbi,
      functionName: 'balanceOf',
      args: [who],
    })
  const orderStatus = (chainId: number, id: Hex) =>
    clients.get(chainId)!.readContract({
      address: deployments.get(chainId)!.settler,
      abi: murmurSettlerAbi,
      functionName: 'orderStatus',
      args: [id],
    })
  async function send(
    chainId: number,
    key: Hex,
    call: Parameters<ReturnType<typeof createWalletClient>['writeContract']>[0],
  ) {
    const wallet = createWalletClient({
      account: privateKeyToAccount(key),
      chain: rollupChain(chainId, rollups.get(chainId).rpcUrl),
      transport: http(rollups.get(chainId).rpcUrl),
    })
    const hash = await wallet.writeContract(call as never)
    const r = await clients.get(chainId)!.waitForTransactionReceipt({ hash })
    if (r.status !== 'success') throw new Error(`${call.functionName} reverted on ${chainId}`)
  }

  const filledBy = (chainId: number, id: Hex) =>
    clients.get(chainId)!.readContract({
      address: deployments.get(chainId)!.settler,
      abi: murmurSettlerAbi,
      functionName: 'filledBy',
      args: [id],
    })
  const lightClient = (chainId: number, functionName: 'latestHeight' | 'currentValidatorsHash') =>
    clients.get(chainId)!.readContract({
      address: deployments.get(chainId)!.lightClient,
      abi: murmurLightClientAbi,
      functionName,
    } as never) as Promise<bigint | Hex>
  let seq = 0
  /** Signs and submits an ERC-20 intent from 901 with a 0.3 % spread (above the asset's 10 bps). */
  async function sendIntent(destinations: bigint[], node = seq % 4, fillInSec = 600) {
    const k = seq++
    const token = deployments.get(901)!.token!
    const now = Math.floor(Date.now() / 1000)
    const to = privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address
    const input = 10n * UNIT + BigInt(k)
    const output = (input * 997n) / 1000n
    const order = buildOrder({
      originSettler: deployments.get(901)!.settler,
      user: user.address,
      nonce: BigInt(Date.now()) * 100n + BigInt(k),
      originChainId: 901n,
      openDeadline: now + Math.min(120, fillInSec - 10),
      fillDeadline: now + fillInSec,
      inputToken: token,
      inputAmount: input,
      outputToken: token,
      outputAmount: output,
      recipient: to,
      destinationChainIds: destinations,
    })
    const { id } = await new MurmurClient(c.node(node).api).submit(order, await signOrder(user, order))
    return { id, to, input, output }
  }

  beforeAll(async () => {
    // Short windows and epochs, so a stopped validator is jailed and leaves the set within the test.
    c = await Cluster.create(4, {
      epochBlocks: 10,
      signedBlocksWindow: 40,
      minSignedPerWindowBps: 2500,
      downtimeJailSec: 3600,
    } as never)
    rollups = await startRollups({
      count: 3,
      blockTimeSec: 1,
      accounts: [...c.net.nodes.map((n) => n.validatorPrivateKey), deployer, userKey],
    })
    for (const id of CHAINS) clients.set(id, createPublicClient({ transport: http(rollups.get(id).rpcUrl) }))
    const g = c.net.genesis
    await Promise.all(
      CHAINS.map(async (id) =>
        deployments.set(
          id,
          await deploySettlement(
            { rpcUrl: rollups.get(id).rpcUrl, privateKey: deployer },
            {
              networkSalt: networkSalt(g.networkId),
              validators: g.validators.map((v) => v.address),
              powers: g.validators.map((v) => v.stake),
              refundGraceSec: 120,
              testToken: true,
            },
          ),
        ),
      ),
    )
    // One deployer, fresh chains, same nonces: the same addresses everywhere.
    const token = deployments.get(901)!.token!
    for (const id of CHAINS) expect(deployments.get(id)!.token).toBe(token)
    const json = JSON.parse(await readFile(c.net.genesisPath, 'utf8'))
    for (const r of json.rollups) {
      const d = deployments.get(r.chainId)!
      r.settlement = { settler: d.settler, lightClient: d.lightClient }
    }
    json.assets = [
      {
        symbol: 'MUSD',
        minSpreadBps: 10,
        tokens: Object.fromEntries(CHAINS.map((id) => [String(id), token])),
      },
    ]
    await writeFile(c.net.genesisPath, `${JSON.stringify(json, null, 2)}\n`)
    // The user holds tokens and lets the origin settler pull them; every executor holds output inventory.
    // TestToken's mint is open: each account mints its own, all chains and accounts at once.
    await Promise.all(
      CHAINS.flatMap((id) => {
        const t = deployments.get(id)!.token!
        const mint = (key: Hex, to: Address) =>
          send(id, key, {
            address: t,
            abi: testTokenAbi,
            functionName: 'mint',
            args: [to, 1_000n * UNIT],
          } as never)
        return [
          ...c.net.nodes.map((n) => mint(n.validatorPrivateKey, n.address)),
          (async () => {
            await mint(userKey, user.address)
            await send(id, userKey, {
              address: t,
              abi: testTokenAbi,
              functionName: 'approve',
              args: [deployments.get(id)!.settler, 2n ** 256n - 1n],
            } as never)
          })(),
        ]
      }),
    )
    flags = new Map(rollups.rollups.map((r) => [r.chainId, r.rpcUrl]))
    boot = (await c.start(0, { rollups: flags })).listen[0]!
    await Promise.all([1, 2, 3].map((i) => c.start(i, { rollups: flags, bootstrap: [boot] })))
    await c.waitConnected([0, 1, 2, 3], 3)
  }, 180_000)
  afterAll(async () => {
    await c?.close()
    await rollups?.stop()
  })

  it('ERC-20 intents end settled: user charged, recipient paid, executor repaid exactly, escrow empty', async () => {
    const settler = deployments.get(901)!.settler
    const userBefore = await tokenBalance(901, user.address)
    const executorsBefore = new Map(
      await Promise.all(
        c.net.nodes.map(async (n) => [n.address, await tokenBalance(901, n.address)] as const),
      ),
    )
    const sent = []
    for (let k = 0; k < 4; k++) sent.push(await sendIntent(k % 2 === 0 ? [902n] : [902n, 903n]))
    for (const s of sent) {
      const v = await new MurmurClient(c.node(0).api).waitFor(s.id, { timeoutMs: 60_000 })
      expect(v.state).toBe('filled')
      await waitFor(`${s.id} settled on its origin`, async () => (await orderStatus(901, s.id)) === 2, {
        timeoutMs: 60_000,
      })
      const fillChain = Number(v.fill!.chainId)
      expect(await tokenBalance(fillChain, s.to)).toBe(s.output)
      for (const other of CHAINS.filter((x) => x !== fillChain))
        expect(await tokenBalance(other, s.to)).toBe(0n)
    }
    // The user paid exactly the inputs; the escrow holds nothing; each executor got back exactly the
    // inputs of the orders it filled.
    const total = sent.reduce((a, s) => a + s.input, 0n)
    expect(userBefore - (await tokenBalance(901, user.address))).toBe(total)
    expect(await tokenBalance(901, settler)).toBe(0n)
    const repaid = new Map<string, bigint>()
    for (const s of sent) {
      const v = await getJson<{ assignment: { executor: string } }>(`${c.node(1).api}/v1/intents/${s.id}`)
      repaid.set(v.assignment.executor, (repaid.get(v.assignment.executor) ?? 0n) + s.input)
    }
    for (const n of c.net.nodes) {
      const gained = (await tokenBalance(901, n.address)) - executorsBefore.get(n.address)!
      expect(gained).toBe(repaid.get(n.address) ?? 0n)
    }
    // Every node tells the same story from its own RPC: opened, filled, settled, with the transactions.
    for (const s of sent) {
      for (const i of [0, 1, 2, 3]) {
        const v = await waitFor(`node ${i} to show ${s.id} settled`, async () => {
          const r = await getJson<{ settlement: Record<string, string | null> | null }>(
            `${c.node(i).api}/v1/intents/${s.id}`,
          )
          return r.settlement?.state === 'settled' ? r.settlement : undefined
        })
        expect(v.openTx).toMatch(/^0x[0-9a-f]{64}$/)
        expect(v.fillTx).toMatch(/^0x[0-9a-f]{64}$/)
        expect(v.claimTx).toMatch(/^0x[0-9a-f]{64}$/)
        expect(v.refundTx).toBeNull()
        expect(Number(v.height)).toBeGreaterThan(0)
      }
    }
  }, 180_000)

  it('kill -9 of an executor between open and claim: it finishes after its restart, nothing paid twice', async () => {
    const settler = deployments.get(901)!.settler
    const userBefore = await tokenBalance(901, user.address)
    const escrowBefore = await tokenBalance(901, settler)
    const s = await sendIntent([903n], 1)
    const executor = await waitFor(`${s.id} assigned`, async () => {
      const v = await getJson<{ assignment: { executor: string } | null }>(
        `${c.node(1).api}/v1/intents/${s.id}`,
      )
      return v.assignment?.executor
    })
    const idx = c.net.nodes.findIndex((n) => n.address === executor)
    const before = await tokenBalance(901, executor as Address)
    await waitFor(`${s.id} opened`, async () => (await orderStatus(901, s.id)) === 1, { intervalMs: 20 })
    await c.node(idx).kill9()
    c.procs[idx] = undefined
    await c.start(idx, { rollups: flags, bootstrap: [idx === 0 ? c.node(1).listen[0]! : boot] })
    await waitFor(`${s.id} settled after the restart`, async () => (await orderStatus(901, s.id)) === 2, {
      timeoutMs: 90_000,
    })
    // Whoever filled it (the restarted executor, or the one the assignment moved to) was repaid once.
    const filler = (await filledBy(903, s.id)).toLowerCase() as Address
    expect(c.net.nodes.map((n) => n.address)).toContain(filler)
    expect(await tokenBalance(903, s.to)).toBe(s.output)
    expect(userBefore - (await tokenBalance(901, user.address))).toBe(s.input)
    expect(await tokenBalance(901, settler)).toBe(escrowBefore)
    if (filler === executor) expect((await tokenBalance(901, filler)) - before).toBe(s.input)
  }, 180_000)

  it('an opened order whose only destination stalls is refunded: the user gets her input back', async () => {
    const settler = deployments.get(901)!.settler
    const userBefore = await tokenBalance(901, user.address)
    const escrowBefore = await tokenBalance(901, settler)
    const mining = (seconds: number) =>
      fetch(rollups.get(903).rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'evm_setIntervalMining', params: [seconds] }),
      })
    // 903 stops mining: the intent is still routed there (its head is fresh), opened on 901, and its fill
    // waits in 903's pool until 903 counts as down, the assignment finds no other route, and the fill
    // deadline passes with the input in escrow.
    await mining(0)
    try {
      const s = await sendIntent([903n], 2, 45)
      await waitFor(`${s.id} opened`, async () => (await orderStatus(901, s.id)) === 1, { timeoutMs: 30_000 })
      await waitFor(`${s.id} refunded`, async () => (await orderStatus(901, s.id)) === 3, {
        timeoutMs: 120_000,
      })
      expect(await tokenBalance(901, user.address)).toBe(userBefore)
      expect(await tokenBalance(901, settler)).toBe(escrowBefore)
      const v = await waitFor(`${s.id} shown refunded`, async () => {
        const r = await getJson<{ state: string; settlement: Record<string, string | null> | null }>(
          `${c.node(0).api}/v1/intents/${s.id}`,
        )
        return r.settlement?.state === 'refunded' ? r : undefined
      })
      expect(v.state).toBe('refunded')
      expect(v.settlement!.refundTx).toMatch(/^0x[0-9a-f]{64}$/)
      expect(v.settlement!.claimTx).toBeNull()
    } finally {
      await mining(1)
    }
    // Mining again, the stale fill (if it was sent) is refused after its deadline: nobody is paid twice.
  }, 180_000)

  it('an order the user opens on chain with a native input is picked up from its Open event and settles', async () => {
    const settler = deployments.get(901)!.settler
    const c901 = clients.get(901)!
    const to = privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address
    const input = 5n * 10n ** 17n
    const output = 7n * UNIT
    const now = Math.floor(Date.now() / 1000)
    // What `open` takes: the deadline and the payload; the settler builds the rest (nonce 2^255 | counter).
    const template = buildOrder({
      originSettler: settler,
      user: user.address,
      nonce: 0n,
      originChainId: 901n,
      openDeadline: now,
      fillDeadline: now + 600,
      inputToken: '0x0000000000000000000000000000000000000000',
      inputAmount: input,
      outputToken: deployments.get(902)!.token!,
      outputAmount: output,
      recipient: to,
      destinationChainIds: [902n],
    })
    const wallet = createWalletClient({
      account: user,
      chain: rollupChain(901, rollups.get(901).rpcUrl),
      transport: http(rollups.get(901).rpcUrl),
    })
    const hash = await wallet.writeContract({
      address: settler,
      abi: murmurSettlerAbi,
      functionName: 'open',
      args: [
        {
          fillDeadline: template.fillDeadline,
          orderDataType: template.orderDataType,
          orderData: template.orderData,
        },
      ],
      value: input,
    })
    const receipt = await c901.waitForTransactionReceipt({ hash })
    expect(receipt.status).toBe('success')
    const [open] = parseEventLogs({ abi: murmurSettlerAbi, eventName: 'Open', logs: receipt.logs })
    const id = open!.args.orderId.toLowerCase() as Hex
    // Across the open's block (the order may be settled by the time the receipt is seen): the user paid
    // the input and her gas, the settler escrowed the input.
    const balance = (address: Address, blockNumber: bigint) => c901.getBalance({ address, blockNumber })
    const [userBefore, userAfter, escrowBefore, escrowAfter] = await Promise.all([
      balance(user.address, receipt.blockNumber - 1n),
      balance(user.address, receipt.blockNumber),
      balance(settler, receipt.blockNumber - 1n),
      balance(settler, receipt.blockNumber),
    ])
    expect(userBefore - userAfter).toBe(input + receipt.gasUsed * receipt.effectiveGasPrice)
    expect(escrowAfter - escrowBefore).toBe(input)

    // Nobody submitted it: the nodes found it in the Open event, and it ends filled on 902 and settled.
    const v = await new MurmurClient(c.node(2).api).waitFor(id, { timeoutMs: 60_000 })
    expect(v.state).toBe('filled')
    expect(v.fill!.chainId).toBe('902')
    await waitFor(`${id} settled on its origin`, async () => (await orderStatus(901, id)) === 2, {
      timeoutMs: 60_000,
    })
    expect(await tokenBalance(902, to)).toBe(output)
    expect(await c901.getBalance({ address: settler })).toBe(escrowBefore)
    // The executor that filled it was repaid exactly the native input: its balance across the claim's
    // block, its own gas in that block added back.
    const filler = (await filledBy(902, id)).toLowerCase() as Address
    expect(c.net.nodes.map((n) => n.address)).toContain(filler)
    const [settled] = await c901.getContractEvents({
      address: settler,
      abi: murmurSettlerAbi,
      eventName: 'Settled',
      args: { orderId: id },
      fromBlock: receipt.blockNumber,
    })
    expect(settled!.args).toMatchObject({
      executor: getAddress(filler),
      token: '0x0000000000000000000000000000000000000000',
      amount: input,
    })
    const at = settled!.blockNumber
    const block = await c901.getBlock({ blockNumber: at, includeTransactions: true })
    let gas = 0n
    for (const tx of block.transactions)
      if (tx.from.toLowerCase() === filler) {
        const r = await c901.getTransactionReceipt({ hash: tx.hash })
        gas += r.gasUsed * r.effectiveGasPrice
      }
    const gained = (await balance(filler, at)) - (await balance(filler, at - 1n))
    expect(gained + gas).toBe(input)
    // Every node holds it as an unsigned intent and tells the same settlement story from its own RPC.
    for (const i of [0, 1, 2, 3]) {
      const r = await waitFor(`node ${i} to show ${id} settled`, async () => {
        const x = await getJson<{ signature: string; settlement: Record<string, string | null> | null }>(
          `${c.node(i).api}/v1/intents/${id}`,
        )
        return x.settlement?.state === 'settled' ? x : undefined
      })
      expect(r.signature).toBe('0x')
      expect(r.settlement!.openTx).toBe(hash)
    }
  })

  it('a validator jailed mid-run: the light client rotates and later claims still verify', async () => {
    const genesisSet = (await lightClient(901, 'currentValidatorsHash')) as Hex
    const gone = c.net.nodes[3]!.address
    await c.node(3).kill9()
    c.procs[3] = undefined
    await waitFor(
      'validator 3 jailed for downtime',
      async () =>
        (await getJson<Array<{ address: string; jailed: boolean }>>(`${c.node(0).api}/v1/validators`)).find(
          (v) => v.address === gone,
        )?.jailed === true,
      { timeoutMs: 90_000 },
    )
    // Past the next epoch boundary, blocks are signed by the set without it.
    await waitFor(
      'a block signed by the new set',
      async () => {
        const st = await getJson<{ height: number }>(`${c.node(0).api}/v1/status`)
        const b = await getJson<{ validatorsHash: string }>(`${c.node(0).api}/v1/blocks/${st.height}`)
        return b.validatorsHash !== genesisSet
      },
      { timeoutMs: 60_000 },
    )
    const sent = [await sendIntent([902n], 0), await sendIntent([903n], 1)]
    for (const s of sent)
      await waitFor(`${s.id} settled`, async () => (await orderStatus(901, s.id)) === 2, {
        timeoutMs: 60_000,
      })
    expect((await lightClient(901, 'latestHeight')) as bigint).toBeGreaterThan(0n)
    expect(await lightClient(901, 'currentValidatorsHash')).not.toBe(genesisSet)
  }, 180_000)
})
