/**
 * The settlement sweep in a real node (rollups/settlement-sweep.ts, wired in node/node.ts): one validator
 * in process, two anvil rollups with the settlement contracts, and the test-only `no-fast-settlement`
 * mode, which drops the claims and refund relays made as blocks commit (and the claim rescan at start).
 * An ERC-20 intent is opened, filled and committed as usual; only the sweep can then claim the escrow on
 * its origin, so the order ending settled to the executor is the sweep's doing.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { type Address, createPublicClient, type Hex, http } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { prepareNetwork } from '../../devnet/network.ts'
import { type DevnetSettlement, setupDevnetSettlement } from '../../devnet/settlement.ts'
import { MurmurClient } from '../../src/client/index.ts'
import { murmurSettlerAbi } from '../../src/contracts/abi.ts'
import { BYZANTINE_ENV } from '../../src/node/byzantine.ts'
import { MurmurNode } from '../../src/node/node.ts'
import { ORDER_STATUS } from '../../src/rollups/settlement.ts'
import { waitFor } from '../helpers/wait.ts'

const UNIT = 10n ** 18n

describe('the settlement sweep in a node whose fast paths are off', () => {
  let dir: string
  let chains: Rollups
  let node: MurmurNode
  let api: string
  let s: DevnetSettlement
  const userKey = generatePrivateKey()
  const user = privateKeyToAccount(userKey)

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-sweep-e2e-'))
    const net = await prepareNetwork({
      dir,
      nodes: 1,
      rollups: [
        { chainId: 901, name: 'rollup-901', type: 'optimistic', securityBps: 8000 },
        { chainId: 902, name: 'rollup-902', type: 'optimistic', securityBps: 8000 },
      ],
    })
    const deployer = generatePrivateKey()
    chains = await startRollups({
      count: 2,
      blockTimeSec: 1,
      accounts: [net.nodes[0]!.validatorPrivateKey, deployer, userKey],
    })
    const rpcUrls = new Map(chains.rollups.map((r) => [r.chainId, r.rpcUrl]))
    s = (
      await setupDevnetSettlement({
        genesisPath: net.genesisPath,
        genesis: net.genesis,
        rpcUrls,
        deployerKey: deployer,
        wallets: [user],
        walletKeys: [userKey],
        executors: [net.nodes[0]!.address],
        out: () => {},
      })
    ).record
    process.env[BYZANTINE_ENV] = '1'
    try {
      node = new MurmurNode(
        {
          dataDir: net.nodes[0]!.dataDir,
          genesisPath: net.genesisPath,
          api: { host: '127.0.0.1', port: 0 },
          rollups: rpcUrls,
          byzantine: new Set(['no-fast-settlement']),
          sweep: { intervalMs: 500, settleAfterMs: 1_000 },
        },
        pino({ level: 'silent' }),
      )
      await node.start()
    } finally {
      delete process.env[BYZANTINE_ENV]
    }
    api = `http://127.0.0.1:${node.apiAddress!.port}`
  }, 120_000)
  afterAll(async () => {
    await node?.stop()
    await chains?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('a filled order nobody claimed as its block committed is claimed by the sweep', async () => {
    const client = new MurmurClient(api)
    const to = privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address
    const input = 5n * UNIT
    const { id } = await client.send(user, {
      to,
      chains: [902n],
      originChainId: 901n,
      originSettler: s.contracts['901']!.settler,
      inputToken: s.token,
      inputAmount: input,
      outputToken: s.token,
      amount: (input * 997n) / 1000n,
      fillInSec: 300,
    })
    expect((await client.waitFor(id, { timeoutMs: 60_000 })).state).toBe('filled')
    const origin = createPublicClient({ transport: http(chains.get(901).rpcUrl) })
    const status = async () =>
      Number(
        await origin.readContract({
          address: s.contracts['901']!.settler as Address,
          abi: murmurSettlerAbi,
          functionName: 'orderStatus',
          args: [id as Hex],
        }),
      )
    await waitFor(
      `${id} settled on 901 by the sweep`,
      async () => (await status()) === ORDER_STATUS.settled,
      {
        timeoutMs: 30_000,
      },
    )
    // The node's own view follows the settler's event.
    await waitFor('settlement.state settled in the API', async () => {
      const r = (await (await fetch(`${api}/v1/intents/${id}`)).json()) as { settlement?: { state: string } }
      return r.settlement?.state === 'settled'
    })
  }, 120_000)
})
