import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import {
  type Address,
  createPublicClient,
  type Hex,
  http,
  keccak256,
  type PublicClient,
  stringToHex,
} from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollup, startRollup } from '../devnet/anvil.ts'
import { type Block, blockHash, blockToJson, decodeBlock, encodeBlock } from '../src/consensus/block.ts'
import { Executor } from '../src/rollups/executor.ts'
import {
  type ExpectedOutput,
  FILL_TYPES,
  type Fill,
  FillBlocks,
  fillCall,
  NATIVE_TOKEN,
  signFill,
  verifyFillReceipt,
} from '../src/rollups/fill.ts'
import { Store } from '../src/state/store.ts'
import { waitFor } from './helpers/wait.ts'

const CHAIN = 941
const NETWORK = 'fill-test'

describe('the Fill type', () => {
  it('names its block hash in blocks (signed, hashed, on the wire) and in the block JSON', async () => {
    const executor = privateKeyToAccount(generatePrivateKey())
    const signed = await signFill(executor, NETWORK, {
      intentId: keccak256(stringToHex('an intent')),
      chainId: 901n,
      txHash: keccak256(stringToHex('a tx')),
      blockNumber: 77n,
      blockHash: keccak256(stringToHex('block 77')),
      executor: executor.address.toLowerCase() as Address,
    })
    const block: Block = {
      height: 3n,
      round: 0,
      proposer: executor.address.toLowerCase() as Address,
      time: 1_900_000_000_000,
      parentHash: `0x${'00'.repeat(32)}`,
      assignments: [],
      intents: [],
      reassignments: [],
      fills: [{ ...signed.fill, signature: signed.signature }],
      stakeMoves: [],
      evidence: [],
      lastCommit: null,
      unjails: [],
      validatorsHash: `0x${'11'.repeat(32)}`,
      nextValidatorsHash: `0x${'22'.repeat(32)}`,
      settlementRoot: `0x${'33'.repeat(32)}`,
    }
    expect(decodeBlock(encodeBlock(block))).toEqual(block)
    const moved = { ...block, fills: [{ ...block.fills[0]!, blockHash: keccak256(stringToHex('block 78')) }] }
    expect(blockHash(moved)).not.toBe(blockHash(block))
    const json = blockToJson(block, blockHash(block), null, NETWORK)
    expect(json.fills[0]).toMatchObject({ blockNumber: '77', blockHash: signed.fill.blockHash })
  })

  it('is pinned: changing it changes every fill signature and the wire', () => {
    const encoded = `Fill(${FILL_TYPES.Fill.map((f) => `${f.type} ${f.name}`).join(',')})`
    expect(encoded).toBe(
      'Fill(bytes32 intentId,uint256 chainId,bytes32 txHash,uint64 blockNumber,bytes32 blockHash,address executor)',
    )
  })
})

describe('fill finality on an anvil rollup (confirmations: 2)', () => {
  let rollup: Rollup
  let client: PublicClient
  const key = generatePrivateKey()
  const sender = privateKeyToAccount(key)
  const me = sender.address.toLowerCase() as Address

  const rpc = async (method: string, params: unknown[]) => {
    const res = await fetch(rollup.rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      signal: AbortSignal.timeout(5_000),
    })
    const json = (await res.json()) as { result?: unknown; error?: { message: string } }
    if (json.error) throw new Error(json.error.message)
    return json.result
  }
  const head = () => client.getBlockNumber({ cacheTime: 0 })
  /** Mines one block and waits until the RPC shows it. */
  const mine = async () => {
    const before = await head()
    await rpc('evm_mine', [])
    await waitFor('a block mined', async () => (await head()) > before)
  }

  beforeAll(async () => {
    rollup = await startRollup({ chainId: CHAIN, blockTimeSec: 1, accounts: [key] })
    client = createPublicClient({ transport: http(rollup.rpcUrl, { retryCount: 0 }) }) as PublicClient
  })

  afterAll(async () => {
    await rollup?.close()
  })

  /** A real fill transaction of a fresh intent, mined in a block of its own; mining stopped meanwhile. */
  async function minedFill(): Promise<{ fill: Fill; expected: ExpectedOutput }> {
    const intentId = keccak256(stringToHex(`fill-test/${Math.random()}`))
    const expected: ExpectedOutput = {
      recipient: privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address,
      outputToken: NATIVE_TOKEN,
      outputAmount: 1_000_000n,
    }
    const call = fillCall(intentId, expected)
    const block = await client.getBlock()
    const raw = await sender.signTransaction({
      type: 'eip1559',
      chainId: CHAIN,
      nonce: await client.getTransactionCount({ address: me, blockTag: 'pending' }),
      ...call,
      gas: 50_000n,
      maxFeePerGas: 2n * (block.baseFeePerGas ?? 0n) + 1_000_000_000n,
      maxPriorityFeePerGas: 1_000_000_000n,
    })
    const txHash = await client.sendRawTransaction({ serializedTransaction: raw })
    await mine()
    const receipt = await client.getTransactionReceipt({ hash: txHash })
    const fill: Fill = {
      intentId,
      chainId: BigInt(CHAIN),
      txHash,
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash.toLowerCase() as Hex,
      executor: me,
    }
    return { fill, expected }
  }

  it("is 'pending' until two more blocks are mined, then 'valid'; a wrong block hash is 'invalid'", async () => {
    await rpc('evm_setIntervalMining', [0])
    try {
      const { fill, expected } = await minedFill()
      const blocks = new FillBlocks(client, { confirmations: 2n })
      const wrongHash = { ...fill, blockHash: keccak256(stringToHex('not the block')) }
      expect(await head()).toBe(fill.blockNumber)
      expect(await blocks.verify(fill, expected)).toBe('pending')
      expect(await verifyFillReceipt(client, fill, expected, 2n)).toBe('pending')
      // Not final yet: a hash this RPC does not show is not judged either (its view may still change).
      expect(await blocks.verify(wrongHash, expected)).toBe('pending')
      await mine()
      expect(await blocks.verify(fill, expected)).toBe('pending')
      await mine()
      expect(await head()).toBe(fill.blockNumber + 2n)
      expect(await blocks.verify(fill, expected)).toBe('valid')
      expect(await verifyFillReceipt(client, fill, expected, 2n)).toBe('valid')
      expect(await blocks.verify(wrongHash, expected)).toBe('invalid')
      expect(await verifyFillReceipt(client, wrongHash, expected, 2n)).toBe('invalid')
      // The same fill with no confirmations required was final as soon as it was mined.
      expect(await verifyFillReceipt(client, fill, expected, 0n)).toBe('valid')
    } finally {
      await rpc('evm_setIntervalMining', [1])
    }
  })

  it('a reorg that drops the block makes the fill invalid where it was pending', async () => {
    await rpc('evm_setIntervalMining', [0])
    try {
      const snapshot = await rpc('evm_snapshot', [])
      const { fill, expected } = await minedFill()
      const blocks = new FillBlocks(client, { confirmations: 2n })
      expect(await blocks.verify(fill, expected)).toBe('pending')
      // The chain goes back and grows another way: other blocks at that number, without the fill.
      await rpc('evm_revert', [snapshot])
      await rpc('anvil_setNextBlockTimestamp', [Number((await client.getBlock()).timestamp) + 7])
      for (let i = 0; i < 3; i++) await mine()
      const there = await client.getBlock({ blockNumber: fill.blockNumber })
      expect(there.hash).not.toBe(fill.blockHash)
      expect(await blocks.verify(fill, expected)).toBe('invalid')
    } finally {
      await rpc('evm_setIntervalMining', [1])
    }
  })

  it('the executor signs the hash of its receipt block and announces it only once final', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-fill-'))
    const store = new Store(join(dir, 'db'))
    await store.open()
    const ex = new Executor(
      {
        rollups: new Map([[CHAIN, rollup.rpcUrl]]),
        rollupConfirmations: new Map([[CHAIN, 2]]),
        receiptPollMs: 100,
      },
      {
        store,
        account: sender,
        log: pino({ level: 'silent' }),
        registry: new Registry(),
        networkId: NETWORK,
        publishFill: () => {},
      },
    )
    try {
      const a = {
        intentId: keccak256(stringToHex(`fill-test/exec/${Math.random()}`)),
        chainId: BigInt(CHAIN),
        recipient: privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address,
        outputToken: NATIVE_TOKEN,
        outputAmount: 7_000_000n,
        deadline: Math.floor(Date.now() / 1000) + 120,
      }
      const res = await ex.execute(a)
      expect(await head()).toBeGreaterThanOrEqual(res.blockNumber + 2n)
      const receipt = await client.getTransactionReceipt({ hash: res.txHash })
      expect(res.fill.fill.blockHash).toBe(receipt.blockHash.toLowerCase())
      // Announced when validators with the same rule count it: the first check is already 'valid'.
      expect(await new FillBlocks(client, { confirmations: 2n }).verify(res.fill.fill, a)).toBe('valid')
    } finally {
      await ex.stop()
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
