/**
 * Settlement transactions (open, claim, refund, rotate, approve) go through the executor's fill machinery:
 * persisted before they are sent, one nonce each, the chain checked before any resend. On a real anvil.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { type Address, createPublicClient, type Hex, http, type PublicClient } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollup, startRollup } from '../devnet/anvil.ts'
import { Executor, type ExecutorFaults, type TxJob } from '../src/rollups/executor.ts'
import { Store } from '../src/state/store.ts'
import { waitFor } from './helpers/wait.ts'

const CHAIN = 941
const silent = pino({ level: 'silent' })

describe('executor settlement jobs on anvil', () => {
  let rollup: Rollup
  let client: PublicClient
  let dir: string
  let store: Store
  const key = generatePrivateKey()
  const account = privateKeyToAccount(key)
  const executors: Executor[] = []

  beforeAll(async () => {
    rollup = await startRollup({ chainId: CHAIN, blockTimeSec: 1, accounts: [key] })
    client = createPublicClient({ transport: http(rollup.rpcUrl) })
    dir = await mkdtemp(join(tmpdir(), 'murmur-jobs-'))
    store = new Store(join(dir, 'db'))
    await store.open()
  })
  afterAll(async () => {
    for (const e of executors) await e.stop()
    await store?.close()
    await rollup?.close()
    await rm(dir, { recursive: true, force: true })
  })

  function newExecutor(faults?: ExecutorFaults): Executor {
    const ex = new Executor(
      { rollups: new Map([[CHAIN, rollup.rpcUrl]]), confirmations: 1, receiptPollMs: 100 },
      {
        store,
        account,
        log: silent,
        registry: new Registry(),
        networkId: 'jobs',
        publishFill: () => {},
        faults,
      },
    )
    executors.push(ex)
    return ex
  }

  let seq = 0
  function job(kind: TxJob['kind'] = 'claim'): { job: TxJob; to: Address } {
    seq++
    const to = privateKeyToAccount(generatePrivateKey()).address.toLowerCase() as Address
    const id = `0x${seq.toString(16).padStart(64, '0')}` as Hex
    return {
      job: { kind, id, chainId: BigInt(CHAIN), call: { to, value: 1_000n + BigInt(seq), data: id } },
      to,
    }
  }
  const nonce = async () => BigInt(await client.getTransactionCount({ address: account.address }))

  it('sends a job once, resolves when it is mined, and answers the same job with the same transaction', async () => {
    const ex = newExecutor()
    const { job: j, to } = job()
    const before = await nonce()
    const [a, b] = await Promise.all([ex.transact(j), ex.transact(j)])
    expect(a.txHash).toBe(b.txHash)
    expect(a.kind).toBe('claim')
    const receipt = await client.getTransactionReceipt({ hash: a.txHash })
    expect(receipt.status).toBe('success')
    expect(receipt.blockHash.toLowerCase()).toBe(a.blockHash)
    expect(await client.getBalance({ address: to })).toBe(j.call.value)
    // Later, the record answers: nothing is sent again.
    expect((await ex.transact(j)).txHash).toBe(a.txHash)
    expect(await nonce()).toBe(before + 1n)
    expect((await ex.jobRecord('claim', BigInt(CHAIN), j.id))?.state).toBe('confirmed')
  })

  it('killed after persisting but before sending: recovery sends it, once, at its nonce', async () => {
    const crashing = newExecutor({
      beforeSend: () => {
        throw new Error('power cut')
      },
    })
    const { job: j, to } = job('open')
    const before = await nonce()
    await expect(crashing.transact(j)).rejects.toMatchObject({ code: 'CRASHED' })
    const stored = (await crashing.jobRecord('open', BigInt(CHAIN), j.id))!
    expect(stored.state).toBe('sending')
    expect(await client.getBalance({ address: to })).toBe(0n)

    const revived = newExecutor()
    await revived.recover()
    await waitFor(
      'the recovered job to be confirmed',
      async () => (await revived.jobRecord('open', BigInt(CHAIN), j.id))?.state === 'confirmed',
    )
    const again = await revived.transact(j)
    expect(again.txHash).toBe((await revived.jobRecord('open', BigInt(CHAIN), j.id))!.minedTxHash)
    expect((await revived.jobRecord('open', BigInt(CHAIN), j.id))!.nonce).toBe(stored.nonce)
    expect(await client.getBalance({ address: to })).toBe(j.call.value)
    expect(await nonce()).toBe(before + 1n)
  })

  it('a job that would revert is refused before it takes a nonce or a record', async () => {
    const ex = newExecutor()
    // A contract that always reverts (PUSH0 PUSH0 REVERT): estimateGas refuses it before any nonce is
    // taken, so the job fails without holding a nonce.
    const reverter: Address = `0x${'6e'.repeat(20)}`
    await fetch(rollup.rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'anvil_setCode',
        params: [reverter, '0x5f5ffd'],
      }),
    })
    const before = await nonce()
    const j: TxJob = {
      kind: 'refund',
      id: `0x${'ee'.repeat(32)}`,
      chainId: BigInt(CHAIN),
      call: { to: reverter, value: 0n, data: '0x' },
    }
    await expect(ex.transact(j)).rejects.toThrow()
    expect(await ex.jobRecord('refund', BigInt(CHAIN), j.id)).toBeUndefined()
    expect(await nonce()).toBe(before)
  })
})
