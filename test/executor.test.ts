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
  parseAbi,
  stringToHex,
  toHex,
} from 'viem'
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollup, type Rollups, startRollups } from '../devnet/anvil.ts'
import { P2PError } from '../src/errors.ts'
import {
  type Assignment,
  Executor,
  ExecutorError,
  type ExecutorFaults,
  type ExecutorOptions,
  type FillRecord,
} from '../src/rollups/executor.ts'
import {
  type ExpectedOutput,
  type Fill,
  FillBlocks,
  fillBatchCodec,
  fillCodec,
  fillTypedData,
  MAX_FILL_BATCH,
  NATIVE_TOKEN,
  type SignedFill,
  signFill,
  signRelayedFill,
  validateFill,
  validateFillBatch,
  verifyFillReceipt,
} from '../src/rollups/fill.ts'
import { Store } from '../src/state/store.ts'
import { waitFor } from './helpers/wait.ts'

const NETWORK = 'executor-test'
const CHAIN = 911
const silent = pino({ level: 'silent' })

// A minimal ERC-20 in raw EVM code (no compiler needed): balanceOf(address) and transfer(address,uint256)
// emitting Transfer; the balance of an address lives in the storage slot numbered by the address.
const TRANSFER_TOPIC = keccak256(stringToHex('Transfer(address,address,uint256)'))
type Op = string | { push: Hex } | { label: string } | { ref: string }
const OPCODES: Record<string, number> = {
  STOP: 0x00,
  ADD: 0x01,
  SUB: 0x03,
  LT: 0x10,
  EQ: 0x14,
  SHR: 0x1c,
  CALLER: 0x33,
  CALLDATALOAD: 0x35,
  MSTORE: 0x52,
  SLOAD: 0x54,
  SSTORE: 0x55,
  JUMPI: 0x57,
  JUMPDEST: 0x5b,
  DUP1: 0x80,
  DUP2: 0x81,
  DUP3: 0x82,
  SWAP1: 0x90,
  LOG3: 0xa3,
  RETURN: 0xf3,
  REVERT: 0xfd,
}
function assemble(program: Op[]): Hex {
  const size = (op: Op) =>
    typeof op === 'string' ? 1 : 'push' in op ? 1 + (op.push.length - 2) / 2 : 'ref' in op ? 2 : 1
  const labels = new Map<string, number>()
  let pc = 0
  for (const op of program) {
    if (typeof op === 'object' && 'label' in op) labels.set(op.label, pc)
    pc += size(op)
  }
  const out: number[] = []
  for (const op of program) {
    if (typeof op === 'string') out.push(OPCODES[op]!)
    else if ('label' in op) out.push(OPCODES['JUMPDEST']!)
    else if ('ref' in op) out.push(0x60, labels.get(op.ref)!)
    else {
      const bytes = Buffer.from(op.push.slice(2), 'hex')
      out.push(0x5f + bytes.length, ...bytes)
    }
  }
  return `0x${Buffer.from(out).toString('hex')}`
}
const p = (hex: Hex) => ({ push: hex })
// biome-ignore format: a few steps per line read better
const TOKEN_RUNTIME = assemble([
  p('0x00'), 'CALLDATALOAD', p('0xe0'), 'SHR',
  'DUP1', p('0xa9059cbb'), 'EQ', { ref: 'transfer' }, 'JUMPI',
  'DUP1', p('0x70a08231'), 'EQ', { ref: 'balanceOf' }, 'JUMPI',
  { label: 'fail' }, p('0x00'), 'DUP1', 'REVERT',
  { label: 'balanceOf' }, p('0x04'), 'CALLDATALOAD', 'SLOAD', p('0x00'), 'MSTORE', p('0x20'), p('0x00'), 'RETURN',
  { label: 'transfer' },
  p('0x24'), 'CALLDATALOAD', 'CALLER', 'SLOAD', // amount, balance of caller
  'DUP2', 'DUP2', 'LT', { ref: 'fail' }, 'JUMPI',
  'DUP2', 'SWAP1', 'SUB', 'CALLER', 'SSTORE',
  p('0x04'), 'CALLDATALOAD', 'DUP1', 'SLOAD', 'DUP3', 'ADD', 'SWAP1', 'SSTORE',
  p('0x00'), 'MSTORE', p('0x04'), 'CALLDATALOAD', 'CALLER', p(TRANSFER_TOPIC), p('0x20'), p('0x00'), 'LOG3',
  p('0x01'), p('0x00'), 'MSTORE', p('0x20'), p('0x00'), 'RETURN',
])
const TOKEN_ABI = parseAbi(['function balanceOf(address) view returns (uint256)'])

let intentCounter = 0
function newIntentId(): Hex {
  return keccak256(stringToHex(`executor-test/${process.pid}/${Date.now()}/${intentCounter++}`))
}
function randomAddress(): Address {
  return privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address
}

describe('executor on an anvil rollup', () => {
  let net: Rollups
  let rollup: Rollup
  let client: PublicClient
  let executorKey: PrivateKeyAccount
  let otherKey: PrivateKeyAccount
  let dir: string
  let store: Store
  const executors: Executor[] = []
  const published: SignedFill[] = []
  const token: Address = '0x00000000000000000000000000000000000c0ffe'

  /** Sends, from otherKey, `value` to the assignment's recipient with its intent id as data (a fill's shape). */
  const sendMarkedTransfer = async (a: Assignment, value: bigint): Promise<Hex> => {
    const block = await client.getBlock()
    const nonce = await client.getTransactionCount({ address: otherKey.address, blockTag: 'pending' })
    const raw = await otherKey.signTransaction({
      type: 'eip1559',
      chainId: CHAIN,
      nonce,
      to: a.recipient,
      value,
      data: a.intentId,
      gas: 30_000n,
      maxFeePerGas: 2n * (block.baseFeePerGas ?? 0n) + 1_000_000_000n,
      maxPriorityFeePerGas: 1_000_000_000n,
    })
    return client.sendRawTransaction({ serializedTransaction: raw })
  }

  /** The fill otherKey claims for its transfer of `receipt`. */
  const otherKeyFill = (
    a: Assignment,
    receipt: { transactionHash: Hex; blockNumber: bigint; blockHash: Hex },
  ): Fill => ({
    intentId: a.intentId,
    chainId: BigInt(CHAIN),
    txHash: receipt.transactionHash,
    blockNumber: receipt.blockNumber,
    blockHash: receipt.blockHash.toLowerCase() as Hex,
    executor: otherKey.address.toLowerCase() as Address,
  })

  const rpc = async (method: string, params: unknown[]) => {
    const post = () =>
      fetch(rollup.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
        signal: AbortSignal.timeout(5_000),
      })
    // A kept-alive connection may have been cut by an earlier setUnreachable(): one retry on a new one.
    const res = await post().catch(post)
    const json = (await res.json()) as { result?: unknown; error?: { message: string } }
    if (json.error) throw new Error(json.error.message)
    return json.result
  }
  const balance = (a: Address) => client.getBalance({ address: a })
  const tokenBalance = (a: Address) =>
    client.readContract({ address: token, abi: TOKEN_ABI, functionName: 'balanceOf', args: [a] })
  const minedNonce = async () => BigInt(await client.getTransactionCount({ address: executorKey.address }))

  function newExecutor(faults?: ExecutorFaults, options: Partial<ExecutorOptions> = {}): Executor {
    const ex = new Executor(
      { rollups: new Map([[CHAIN, rollup.rpcUrl]]), confirmations: 1, receiptPollMs: 100, ...options },
      {
        store,
        account: executorKey,
        log: silent,
        registry: new Registry(),
        networkId: NETWORK,
        publishFill: (f) => {
          published.push(f)
        },
        faults,
      },
    )
    executors.push(ex)
    return ex
  }

  function assignment(over: Partial<Assignment> = {}): Assignment {
    return {
      intentId: newIntentId(),
      chainId: BigInt(CHAIN),
      recipient: randomAddress(),
      outputToken: NATIVE_TOKEN,
      outputAmount: 123_456_789_000n + BigInt(intentCounter),
      deadline: Math.floor(Date.now() / 1000) + 120,
      ...over,
    }
  }

  /** Waits until `n` blocks past the current head are mined: long enough for a stray duplicate to land. */
  async function blocksPass(n: bigint): Promise<void> {
    const start = await client.getBlockNumber({ cacheTime: 0 })
    await waitFor(
      `${n} more blocks`,
      async () => (await client.getBlockNumber({ cacheTime: 0 })) >= start + n,
    )
  }

  beforeAll(async () => {
    net = await startRollups({
      count: 2,
      firstChainId: CHAIN,
      blockTimeSec: 1,
      accounts: 2,
      accountSeed: 'exec-test',
    })
    rollup = net.get(CHAIN)
    executorKey = privateKeyToAccount(net.accounts[0]!.privateKey)
    otherKey = privateKeyToAccount(net.accounts[1]!.privateKey)
    client = createPublicClient({ transport: http(rollup.rpcUrl, { retryCount: 0 }) })
    dir = await mkdtemp(join(tmpdir(), 'murmur-executor-'))
    store = new Store(join(dir, 'db'))
    await store.open()
    // The token, and 10^24 units of it for the executor.
    await rpc('anvil_setCode', [token, TOKEN_RUNTIME])
    await rpc('anvil_setStorageAt', [
      token,
      toHex(BigInt(executorKey.address), { size: 32 }),
      toHex(10n ** 24n, { size: 32 }),
    ])
  })

  afterAll(async () => {
    await Promise.allSettled(executors.map((e) => e.stop()))
    await store?.close()
    await net?.stop()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('fills an assignment exactly once: the recipient gets outputAmount; executing again sends nothing', async () => {
    const ex = newExecutor()
    const a = assignment()
    const nonceBefore = await minedNonce()
    const t0 = Date.now()
    const res = await ex.execute(a)
    const ms = Date.now() - t0
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    expect(res.announced).toBe(true)
    expect(res.fill.fill).toEqual({
      intentId: a.intentId,
      chainId: a.chainId,
      txHash: res.txHash,
      blockNumber: res.blockNumber,
      blockHash: res.blockHash,
      executor: ex.address,
    })
    // The block hash signed is the one of the block the receipt is in.
    const receipt = await client.getTransactionReceipt({ hash: res.txHash })
    expect(res.blockHash).toBe(receipt.blockHash.toLowerCase())
    expect((await client.getBlock({ blockNumber: res.blockNumber })).hash).toBe(res.blockHash)
    expect(published.at(-1)).toEqual(res.fill)
    // Value to an EOA with the intent id as calldata: a plain transfer that carries its marker.
    const tx = await client.getTransaction({ hash: res.txHash })
    expect(tx.input).toBe(a.intentId)
    expect(tx.maxFeePerGas).toBeGreaterThan(0n)
    expect(await verifyFillReceipt(client, res.fill.fill, a)).toBe('valid')

    // Again, concurrently, and from a fresh executor on the same store: the same fill, no new transaction.
    const [r2, r3] = await Promise.all([ex.execute(a), ex.execute(a)])
    expect(r2.txHash).toBe(res.txHash)
    expect(r3.txHash).toBe(res.txHash)
    expect((await newExecutor().execute(a)).txHash).toBe(res.txHash)
    // Two different assignments at once share the account's nonces without a clash.
    const [b1, b2] = [assignment(), assignment()]
    const [f1, f2] = await Promise.all([ex.execute(b1), ex.execute(b2)])
    expect(f1.txHash).not.toBe(f2.txHash)
    expect(await balance(b1.recipient)).toBe(b1.outputAmount)
    expect(await balance(b2.recipient)).toBe(b2.outputAmount)
    await blocksPass(2n)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    expect(await minedNonce()).toBe(nonceBefore + 3n)
    const rec = (await ex.record(a.intentId))!
    expect(rec.state).toBe('confirmed')
    expect(rec.txHashes).toEqual([res.txHash])
    console.log(`native fill: execute -> confirmed and announced in ${ms} ms (1 s blocks, 1 confirmation)`)
  })

  it('killed right after sendRawTransaction: a new executor finds the transaction, pays once', async () => {
    const crashing = newExecutor({
      afterSend: () => {
        throw new Error('power cut')
      },
    })
    const a = assignment()
    const nonceBefore = await minedNonce()
    await expect(crashing.execute(a)).rejects.toMatchObject({ code: 'CRASHED' })
    const stored = (await crashing.record(a.intentId))!
    expect(stored.state).toBe('sending')
    expect(stored.txHashes).toHaveLength(1)
    // The dead executor does nothing more.
    await expect(crashing.execute(assignment())).rejects.toMatchObject({ code: 'CRASHED' })

    const revived = newExecutor()
    const outcome = await revived.recover()
    const got = outcome.get(a.intentId)
    expect(got?.status).toBe('fulfilled')
    const res = (got as PromiseFulfilledResult<Awaited<ReturnType<Executor['execute']>>>).value
    expect(res.txHash).toBe(stored.txHash)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    // Executing it again (the assignment is still open in the node's eyes) sends nothing either.
    expect((await revived.execute(a)).txHash).toBe(stored.txHash)
    await blocksPass(2n)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    expect(await minedNonce()).toBe(nonceBefore + 1n)
    expect((await revived.record(a.intentId))!.state).toBe('confirmed')
    expect(published.filter((f) => f.fill.intentId === a.intentId).length).toBeGreaterThanOrEqual(1)
  })

  it('killed after persisting but before sending: recovery sends it, once', async () => {
    const crashing = newExecutor({
      beforeSend: () => {
        throw new Error('power cut')
      },
    })
    const a = assignment()
    const nonceBefore = await minedNonce()
    await expect(crashing.execute(a)).rejects.toMatchObject({ code: 'CRASHED' })
    const stored = (await crashing.record(a.intentId))!
    expect(stored.state).toBe('sending')
    await expect(client.getTransaction({ hash: stored.txHash })).rejects.toThrow()

    const revived = newExecutor()
    const res = await revived.execute(a)
    // Recovery keeps the fill's nonce (the same transaction unless the fees had to be raised).
    const rec = (await revived.record(a.intentId))!
    expect(rec.nonce).toBe(stored.nonce)
    expect(rec.txHashes[0]).toBe(stored.txHash)
    expect(rec.txHashes).toContain(res.txHash)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    await blocksPass(2n)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    expect(await minedNonce()).toBe(nonceBefore + 1n)
  })

  it('killed after sending with the hash lost: the nonce scan finds the transaction by its marker', async () => {
    const crashing = newExecutor({
      afterSend: () => {
        throw new Error('power cut')
      },
    })
    const a = assignment()
    const nonceBefore = await minedNonce()
    await expect(crashing.execute(a)).rejects.toMatchObject({ code: 'CRASHED' })
    const stored = (await crashing.record(a.intentId))!
    await waitFor('the orphan transaction mined', () =>
      client.getTransactionReceipt({ hash: stored.txHash }).then(
        () => true,
        () => false,
      ),
    )
    // Forget every hash: only the nonce and the marker are left to find it by.
    const bogus = keccak256(stringToHex('not a real transaction'))
    const damaged: FillRecord = { ...stored, txHash: bogus, txHashes: [bogus] }
    await store.put('fills', `r/${a.intentId}`, damaged)

    const revived = newExecutor()
    const outcome = await revived.recover()
    expect(outcome.get(a.intentId)?.status).toBe('fulfilled')
    const rec = (await revived.record(a.intentId))!
    expect(rec.state).toBe('confirmed')
    expect(rec.minedTxHash).toBe(stored.txHash)
    expect(rec.txHashes).toContain(stored.txHash)
    await blocksPass(2n)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    expect(await minedNonce()).toBe(nonceBefore + 1n)
  })

  it('a nonce used behind its back (same key elsewhere): resyncs and fills once', async () => {
    const ex = newExecutor()
    await ex.execute(assignment()) // syncs the executor's nonce
    const nonce = await minedNonce()
    // Someone else spends the next nonce with the same key.
    const block = await client.getBlock()
    const raw = await executorKey.signTransaction({
      type: 'eip1559',
      chainId: CHAIN,
      nonce: Number(nonce),
      to: otherKey.address,
      value: 1n,
      gas: 21_000n,
      maxFeePerGas: 2n * (block.baseFeePerGas ?? 0n) + 1_000_000_000n,
      maxPriorityFeePerGas: 1_000_000_000n,
    })
    const foreign = await client.sendRawTransaction({ serializedTransaction: raw })
    await waitFor('the foreign tx mined', () =>
      client.getTransactionReceipt({ hash: foreign }).then(
        () => true,
        () => false,
      ),
    )
    const a = assignment()
    const res = await ex.execute(a)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    const rec = (await ex.record(a.intentId))!
    expect(BigInt(rec.nonce)).toBeGreaterThan(nonce)
    await blocksPass(2n)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    expect(await verifyFillReceipt(client, res.fill.fill, a)).toBe('valid')
  })

  it('a fill stuck in the pool is replaced at the same nonce with higher fees; only one is mined', async () => {
    const ex = newExecutor(undefined, { stuckAfterMs: 400 })
    const a = assignment()
    const nonceBefore = await minedNonce()
    await rpc('evm_setIntervalMining', [0])
    let pending: Promise<unknown> | undefined
    try {
      pending = ex.execute(a)
      const rec = await waitFor('two versions of the fill signed', async () => {
        const r = await ex.record(a.intentId)
        return r !== undefined && r.txHashes.length >= 2 ? r : undefined
      })
      expect(BigInt(rec.maxFeePerGas)).toBeGreaterThan(0n)
    } finally {
      await rpc('evm_setIntervalMining', [1])
    }
    await pending
    const rec = (await ex.record(a.intentId))!
    expect(rec.state).toBe('confirmed')
    expect(rec.txHashes.length).toBeGreaterThanOrEqual(2)
    // Every version used the one nonce, so the account moved by one and the recipient was paid once.
    await blocksPass(2n)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    expect(await minedNonce()).toBe(nonceBefore + 1n)
    const mined = await Promise.all(
      rec.txHashes.map((h) =>
        client.getTransactionReceipt({ hash: h }).then(
          () => h,
          () => undefined,
        ),
      ),
    )
    expect(mined.filter((h) => h !== undefined)).toEqual([rec.minedTxHash])
  })

  it('a fill whose publication failed is published again by recover()', async () => {
    let fail = true
    const seen: SignedFill[] = []
    const modules = {
      store,
      account: executorKey,
      log: silent,
      registry: new Registry(),
      networkId: NETWORK,
      publishFill: (f: SignedFill) => {
        if (fail) throw new Error('no peers')
        seen.push(f)
      },
    }
    const ex = new Executor({ rollups: new Map([[CHAIN, rollup.rpcUrl]]), receiptPollMs: 100 }, modules)
    executors.push(ex)
    const a = assignment()
    const res = await ex.execute(a)
    expect(res.announced).toBe(false)
    expect(seen).toEqual([])
    fail = false
    const outcome = await ex.recover()
    const again = outcome.get(a.intentId)
    expect(again?.status).toBe('fulfilled')
    expect(seen.map((f) => f.fill.txHash)).toEqual([res.txHash])
    expect((await ex.recover()).has(a.intentId)).toBe(false)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
  })

  it('fills an ERC-20 output; the Transfer log is what verification checks', async () => {
    const ex = newExecutor()
    const a = assignment({ outputToken: token, outputAmount: 5_000_000n })
    const res = await ex.execute(a)
    expect(await tokenBalance(a.recipient)).toBe(5_000_000n)
    const tx = await client.getTransaction({ hash: res.txHash })
    expect(tx.to).toBe(token)
    expect(tx.input.endsWith(a.intentId.slice(2))).toBe(true)
    expect(await verifyFillReceipt(client, res.fill.fill, a)).toBe('valid')
    expect(await verifyFillReceipt(client, res.fill.fill, { ...a, outputAmount: 5_000_001n })).toBe('invalid')
    expect(await verifyFillReceipt(client, res.fill.fill, { ...a, outputToken: NATIVE_TOKEN })).toBe(
      'invalid',
    )
    expect(await verifyFillReceipt(client, res.fill.fill, { ...a, recipient: randomAddress() })).toBe(
      'invalid',
    )
  })

  it('verifies a wrong amount, a made-up transaction or block hash as invalid; an unreached block pending, an RPC down unknown', async () => {
    // A transfer carrying the intent's marker but one wei short.
    const a = assignment()
    const hash = await sendMarkedTransfer(a, a.outputAmount - 1n)
    const receipt = await waitFor('the short transfer mined', () =>
      client.getTransactionReceipt({ hash }).catch(() => undefined),
    )
    const fill = otherKeyFill(a, receipt)
    const next = await waitFor('the block after it', () =>
      client.getBlock({ blockNumber: receipt.blockNumber + 1n }).catch(() => undefined),
    )
    // The same verdicts with nothing kept (verifyFillReceipt) and through one FillBlocks.
    const calls = new Map<string, number>()
    const counted = new Proxy(client, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver)
        if (typeof v !== 'function') return v
        return (...args: unknown[]) => {
          calls.set(String(prop), (calls.get(String(prop)) ?? 0) + 1)
          return v.apply(target, args)
        }
      },
    }) as PublicClient
    const blocks = new FillBlocks(counted)
    for (const via of ['once', 'blocks'] as const) {
      const verify = (f: Fill, e: ExpectedOutput) =>
        via === 'once' ? verifyFillReceipt(client, f, e) : blocks.verify(f, e)
      const short = { ...a, outputAmount: a.outputAmount - 1n }
      expect(await verify(fill, a)).toBe('invalid')
      expect(await verify(fill, short)).toBe('valid')
      // Claimed by someone who did not send it, in another block, or for another intent: invalid.
      expect(await verify({ ...fill, executor: randomAddress() }, short)).toBe('invalid')
      const inNext = { ...fill, blockNumber: next.number, blockHash: next.hash }
      expect(await verify(inNext, short)).toBe('invalid')
      expect(await verify({ ...fill, intentId: newIntentId() }, short)).toBe('invalid')
      // A made-up transaction in a real block, or a made-up hash for the real block: invalid too.
      expect(await verify({ ...fill, txHash: newIntentId() }, a)).toBe('invalid')
      expect(await verify({ ...fill, blockHash: newIntentId() }, short)).toBe('invalid')
      // A block this RPC has not reached: pending, not evidence against the fill.
      expect(await verify({ ...fill, blockNumber: next.number + 1000n }, short)).toBe('pending')
    }
    // Fills named in one block: the block's transactions and receipts were asked once, and once more for
    // the made-up block hash (a kept block is read again before a fill is called invalid for its hash).
    expect(calls.get('getBlock')).toBe(3) // the fill's block (twice) and the block after it
    expect(calls.get('getBlockReceipts')).toBe(3)
    calls.clear()
    expect(await blocks.verify(fill, a)).toBe('invalid')
    expect(calls.size).toBe(0) // a final block and its head are not asked again
    // RPC unreachable: unknown.
    rollup.setUnreachable(true)
    try {
      expect(await verifyFillReceipt(client, fill, a)).toBe('unknown')
      const far = { ...fill, blockNumber: next.number + 1000n }
      expect(await new FillBlocks(client).verify(far, a)).toBe('unknown')
    } finally {
      rollup.setUnreachable(false)
    }
  })

  it('a kept block re-mined at its number with another hash is read again, not held against a fill', async () => {
    // A devnet's anvil restarted from a state dumped one block earlier re-mines that block: validators
    // that kept the old one called every fill of the new one invalid, and those intents stayed assigned.
    const transfer = async (a: Assignment): Promise<Fill> => {
      const hash = await sendMarkedTransfer(a, a.outputAmount)
      await rpc('evm_mine', [])
      return otherKeyFill(a, await client.getTransactionReceipt({ hash }))
    }
    await rpc('evm_setIntervalMining', [0])
    try {
      const blocks = new FillBlocks(client)
      const snap = await rpc('evm_snapshot', [])
      const a1 = assignment()
      const f1 = await transfer(a1)
      expect(await blocks.verify(f1, a1)).toBe('valid') // its block is kept now
      await rpc('evm_revert', [snap])
      const a2 = assignment()
      const f2 = await transfer(a2)
      expect(f2.blockNumber).toBe(f1.blockNumber)
      expect(f2.blockHash).not.toBe(f1.blockHash)
      expect(await blocks.verify(f2, a2)).toBe('valid')
      expect(await blocks.verify(f1, a1)).toBe('invalid') // its block is gone
    } finally {
      await rpc('evm_setIntervalMining', [1])
    }
  })

  it('re-assigned to another rollup while its fill is pending: fills there, once; the old loop stops', async () => {
    const to = net.get(CHAIN + 1)
    const toClient = createPublicClient({ transport: http(to.rpcUrl, { retryCount: 0 }) })
    const ex = newExecutor(undefined, {
      rollups: new Map([
        [CHAIN, rollup.rpcUrl],
        [CHAIN + 1, to.rpcUrl],
      ]),
    })
    const a = assignment()
    // The first rollup stops mining: the fill there stays in its pool, as on a rollup that went down.
    await rpc('evm_setIntervalMining', [0])
    try {
      const first = ex.execute(a).catch((e: unknown) => e)
      await waitFor("the fill in the first rollup's pool", async () => {
        const rec = await ex.record(a.intentId)
        if (rec === undefined) return false
        return (await client.getTransaction({ hash: rec.txHash }).catch(() => undefined)) !== undefined
      })
      const res = await ex.execute({ ...a, chainId: BigInt(CHAIN + 1) })
      expect(res.fill.fill.chainId).toBe(BigInt(CHAIN + 1))
      expect(await toClient.getBalance({ address: a.recipient })).toBe(a.outputAmount)
      expect(await first).toMatchObject({ code: 'SUPERSEDED' })
      const rec = (await ex.record(a.intentId))!
      expect(rec).toMatchObject({ chainId: String(CHAIN + 1), state: 'confirmed', txHash: res.txHash })
      // Executing the new assignment again sends nothing new.
      expect((await ex.execute({ ...a, chainId: BigInt(CHAIN + 1) })).txHash).toBe(res.txHash)
    } finally {
      // The abandoned transaction is still in the first rollup's pool and is mined now: the executor pays
      // twice, which the network's record (one fill per intent) tolerates.
      await rpc('evm_setIntervalMining', [1])
    }
  })

  it('refuses what it must not do', async () => {
    const ex = newExecutor()
    await expect(ex.execute(assignment({ chainId: 999n }))).rejects.toMatchObject({ code: 'UNKNOWN_CHAIN' })
    await expect(ex.execute(assignment({ deadline: Math.floor(Date.now() / 1000) }))).rejects.toMatchObject({
      code: 'DEADLINE_PASSED',
    })
    // More than the executor has: refused before any nonce is taken, so later fills are not stuck behind it.
    const tooMuch = assignment({ outputAmount: 10n ** 30n })
    await expect(ex.execute(tooMuch)).rejects.toMatchObject({ code: 'SEND_FAILED' })
    expect(await ex.record(tooMuch.intentId)).toBeUndefined()
    const a = assignment()
    await ex.execute(a)
    expect(await balance(a.recipient)).toBe(a.outputAmount)
    // The same intent re-routed to another chain is not filled a second time.
    const other = new Executor(
      {
        rollups: new Map([
          [CHAIN, rollup.rpcUrl],
          [999, rollup.rpcUrl],
        ]),
      },
      {
        store,
        account: executorKey,
        log: silent,
        registry: new Registry(),
        networkId: NETWORK,
        publishFill: () => {},
      },
    )
    executors.push(other)
    const err = await other.execute({ ...a, chainId: 999n }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ExecutorError)
    expect((err as ExecutorError).code).toBe('CONFLICT')
    await ex.stop()
    await expect(ex.execute(assignment())).rejects.toMatchObject({ code: 'STOPPED' })
  })
})

describe('fill messages', () => {
  const executor = privateKeyToAccount(generatePrivateKey())
  const stranger = privateKeyToAccount(generatePrivateKey())
  const intentId = keccak256(stringToHex('an intent'))
  const fill: Fill = {
    intentId,
    chainId: 901n,
    txHash: keccak256(stringToHex('a tx')),
    blockNumber: 1234n,
    blockHash: keccak256(stringToHex('a block')),
    executor: executor.address.toLowerCase() as Address,
  }
  const ctx = {
    networkId: NETWORK,
    assignment: (id: Hex) =>
      id === intentId ? { chainId: 901n, executor: executor.address.toLowerCase() as Address } : undefined,
  }

  it('a fill signed by its assigned executor is ACCEPTed and survives the wire', async () => {
    const signed = await signFill(executor, NETWORK, fill)
    expect(await validateFill(signed, ctx)).toEqual({ result: 'ACCEPT' })
    const back = fillCodec.decode(fillCodec.encode(signed))
    expect(back).toEqual(signed)
    expect(fillCodec.encode(signed).length).toBeLessThanOrEqual(fillCodec.maxBytes)
  })

  const signerOf = (a: { address: Address }) => a.address.toLowerCase() as Address

  it('forged fills are REJECTed, fills of unknown intents IGNOREd', async () => {
    const forged: SignedFill = {
      fill,
      signature: (await stranger.signTypedData(fillTypedData(NETWORK, fill))).toLowerCase() as Hex,
    }
    expect(await validateFill(forged, ctx)).toEqual({ result: 'REJECT', code: 'BAD_SIGNATURE' })
    const byStranger = await signFill(stranger, NETWORK, {
      ...fill,
      executor: stranger.address.toLowerCase() as Address,
    })
    expect(await validateFill(byStranger, ctx)).toEqual({ result: 'REJECT', code: 'NOT_ASSIGNED' })
    const wrongChain = await signFill(executor, NETWORK, { ...fill, chainId: 902n })
    // This node's view of the assignment may lag a re-route: no penalty for the sender.
    expect(await validateFill(wrongChain, ctx)).toEqual({ result: 'IGNORE', code: 'WRONG_CHAIN' })
    // Relayed by a validator this node does not know as the assignee (yet): IGNORE; by a stranger: REJECT.
    const relayed = await signRelayedFill(stranger, NETWORK, fill)
    expect(
      await validateFill(relayed, { ...ctx, isValidator: (a: Address) => a === signerOf(stranger) }),
    ).toEqual({
      result: 'IGNORE',
      code: 'NOT_ASSIGNED',
    })
    expect(await validateFill(relayed, ctx)).toEqual({ result: 'REJECT', code: 'BAD_SIGNATURE' })
    const otherNet = await signFill(executor, 'other-net', fill)
    expect(await validateFill(otherNet, ctx)).toEqual({ result: 'REJECT', code: 'BAD_SIGNATURE' })
    const signed = await signFill(executor, NETWORK, fill)
    expect(await validateFill({ ...signed, fill: { ...fill, blockNumber: 1235n } }, ctx)).toEqual({
      result: 'REJECT',
      code: 'BAD_SIGNATURE',
    })
    // The block hash is signed too: a relay cannot move a fill to another block.
    const moved = { ...signed, fill: { ...fill, blockHash: keccak256(stringToHex('another block')) } }
    expect(await validateFill(moved, ctx)).toEqual({ result: 'REJECT', code: 'BAD_SIGNATURE' })
    const unknown = await signFill(executor, NETWORK, { ...fill, intentId: keccak256(stringToHex('other')) })
    expect(await validateFill(unknown, ctx)).toEqual({ result: 'IGNORE', code: 'UNKNOWN_INTENT' })
    expect(await validateFill(signed, { ...ctx, isKnown: () => true })).toEqual({
      result: 'IGNORE',
      code: 'DUPLICATE',
    })
  })

  it('the codec refuses what is not a fill', async () => {
    const bytes = fillCodec.encode(await signFill(executor, NETWORK, fill))
    for (let i = 0; i < bytes.length; i++) {
      expect(() => fillCodec.decode(bytes.subarray(0, i))).toThrow(P2PError)
    }
    expect(() => fillCodec.decode(new Uint8Array(fillCodec.maxBytes + 1).fill(1))).toThrow(P2PError)
  })

  it('a batch: survives the wire; one forged fill REJECTs it; ACCEPTed with the new valid fills only', async () => {
    const signed = await signFill(executor, NETWORK, fill)
    const unknown = await signFill(executor, NETWORK, { ...fill, intentId: keccak256(stringToHex('other')) })
    const full = Array.from({ length: MAX_FILL_BATCH }, () => signed)
    expect(fillBatchCodec.decode(fillBatchCodec.encode(full))).toEqual(full)
    expect(fillBatchCodec.encode(full).length).toBeLessThanOrEqual(fillBatchCodec.maxBytes)
    expect(() => fillBatchCodec.encode([...full, signed])).toThrow()
    expect(() => fillBatchCodec.encode([])).toThrow()
    const bytes = fillBatchCodec.encode([signed, unknown])
    for (let i = 0; i < bytes.length; i++) {
      expect(() => fillBatchCodec.decode(bytes.subarray(0, i))).toThrow(P2PError)
    }

    let accepted: SignedFill[] | undefined
    const take = (fills: SignedFill[]) => {
      accepted = fills
    }
    expect(await validateFillBatch([unknown, signed], ctx, take)).toEqual({ result: 'ACCEPT' })
    expect(accepted).toEqual([signed])
    accepted = undefined
    expect(await validateFillBatch([unknown], ctx, take)).toEqual({
      result: 'IGNORE',
      code: 'UNKNOWN_INTENT',
    })
    const known = { ...ctx, isKnown: () => true }
    expect(await validateFillBatch([signed, unknown], known, take)).toEqual({
      result: 'IGNORE',
      code: 'DUPLICATE',
    })
    expect(accepted).toBeUndefined()
    const forged: SignedFill = { ...signed, fill: { ...fill, blockNumber: 1235n } }
    expect(await validateFillBatch([signed, forged], ctx, take)).toEqual({
      result: 'REJECT',
      code: 'BAD_SIGNATURE',
    })
    expect(accepted).toBeUndefined()
  })
})
