/**
 * `murmur stake ...` against a real one-validator node process: the CLI signs with key files, the node
 * checks and commits, and the effects are read back over the node's own API (GET /v1/accounts,
 * GET /v1/staking), never from its memory.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Address } from 'viem'
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadKeys } from '../src/identity/keys.ts'
import { type CliResult, runCli } from './helpers/cli.ts'
import { Cluster } from './helpers/cluster.ts'
import { getJson } from './helpers/wait.ts'

interface AccountBody {
  address: string
  balance: string
  delegations: Array<{ validator: string; chainId: string; amount: string }>
  unbonding: unknown[]
  nonces: { account: string; stakeMove: string; unjail: string }
}

/** The JSON documents a command printed (each `print` starts a top-level `{` at a line start). */
function docs(r: CliResult): Array<Record<string, unknown>> {
  return r.stdout
    .split(/\n(?=\{)/)
    .filter((s) => s.trim() !== '')
    .map((s) => JSON.parse(s) as Record<string, unknown>)
}

const WALLET_BALANCE = 1_000_000n
/** Above the default minSelfStake (the smallest genesis stake, 1,000,000). */
const JOINER_BALANCE = 3_000_000n

describe('murmur stake', () => {
  let c: Cluster
  let api: string
  let walletFile: string
  let wallet: Address
  let validator: Address
  let validatorKeyFile: string
  let joinerDir: string
  let joiner: Address

  beforeAll(async () => {
    c = await Cluster.create(1)
    const walletKey = generatePrivateKey()
    wallet = privateKeyToAccount(walletKey).address.toLowerCase() as Address
    walletFile = join(c.net.dir, 'wallet.json')
    await writeFile(walletFile, JSON.stringify({ privateKey: walletKey }), { mode: 0o600 })
    // A node that is not a validator yet: its keys exist, its validator address has tokens.
    joinerDir = join(c.net.dir, 'joiner')
    joiner = (await loadKeys(joinerDir, { create: true })).validator.address.toLowerCase() as Address
    const g = JSON.parse(await readFile(c.net.genesisPath, 'utf8')) as Record<string, unknown>
    g['accounts'] = [
      { address: wallet, balance: WALLET_BALANCE.toString() },
      { address: joiner, balance: JOINER_BALANCE.toString() },
    ]
    await writeFile(c.net.genesisPath, JSON.stringify(g, null, 2))
    validator = c.net.nodes[0]!.address
    validatorKeyFile = join(c.net.nodes[0]!.dataDir, 'validator-key.json')
    api = (await c.start(0)).api
  }, 60_000)
  afterAll(async () => c?.close())

  /** `murmur stake CMD --api API`; CMD's words are split at spaces (no path here holds one). */
  const stake = (cmd: string) => runCli(['stake', ...cmd.split(' '), '--api', api], {}, 60_000)
  const account = (a: string) => getJson<AccountBody>(`${api}/v1/accounts/${a}`)

  it('transfer --wait moves balance from the key to the receiver', async () => {
    const to = privateKeyToAccount(generatePrivateKey()).address.toLowerCase()
    const r = await stake(`transfer --key-file ${walletFile} --to ${to} --amount 1234 --wait`)
    expect(r.stderr).toMatch(/applied/)
    expect(r.code).toBe(0)
    const [sent, waited] = docs(r)
    expect(sent).toMatchObject({ accepted: true, known: false })
    expect(sent!['id']).toMatch(/^0x[0-9a-f]{64}$/)
    expect(waited).toMatchObject({ id: sent!['id'], applied: true, nonceUsed: sent!['nonce'] })
    expect((await account(wallet)).balance).toBe((WALLET_BALANCE - 1234n).toString())
    expect((await account(to)).balance).toBe('1234')
    expect((await account(wallet)).nonces.account).toBe(sent!['nonce'])
  })

  it('an over-balance transfer and a used nonce exit 1 with the node code', async () => {
    const to = '0x' + '12'.repeat(20)
    const over = await stake(`transfer --key-file ${walletFile} --to ${to} --amount 10000000`)
    expect(over.code).toBe(1)
    expect(over.stderr).toMatch(/^murmur: INSUFFICIENT_BALANCE: /)
    const replay = await stake(`transfer --key-file ${walletFile} --to ${to} --amount 1 --nonce 1`)
    expect(replay.code).toBe(1)
    expect(replay.stderr).toMatch(/^murmur: NONCE_USED: /)
  })

  it('delegate --wait shows in stake account; undelegate puts it in unbonding', async () => {
    const before = BigInt((await account(wallet)).balance)
    const d = await stake(
      `delegate --key-file ${walletFile} --validator ${validator} --chain 901 --amount 500 --wait`,
    )
    expect(d.code).toBe(0)
    const shown = await stake(`account --key-file ${walletFile}`)
    expect(shown.code).toBe(0)
    const view = docs(shown)[0] as unknown as AccountBody
    expect(view.address).toBe(wallet)
    expect(view.delegations).toEqual([{ validator, chainId: '901', amount: '500' }])
    expect(view.balance).toBe((before - 500n).toString())
    const u = await stake(
      `undelegate --key-file ${walletFile} --validator ${validator} --chain 901 --amount 200 --wait`,
    )
    expect(u.code).toBe(0)
    const after = await account(wallet)
    expect(after.delegations).toEqual([{ validator, chainId: '901', amount: '300' }])
    expect(after.unbonding).toMatchObject([{ validator, chainId: '901', amount: '200' }])
  })

  it('create-validator --data-dir makes the node key a validator with its self-stake', async () => {
    const wrongKey = await stake(
      `create-validator --key-file ${walletFile} --data-dir ${joinerDir} --chains 901,902 --self-stake 1000000`,
    )
    expect(wrongKey.code).toBe(1)
    expect(wrongKey.stderr).toMatch(/^murmur: KEY_MISMATCH: /)
    const r = await stake(
      `create-validator --key-file ${join(joinerDir, 'validator-key.json')} --data-dir ${joinerDir} --chains 902,901 --self-stake 2000000 --commission-bps 500 --wait`,
    )
    expect(r.stderr).toMatch(/applied/)
    expect(r.code).toBe(0)
    const view = await account(joiner)
    expect(view.balance).toBe((JOINER_BALANCE - 2_000_000n).toString())
    expect(view.delegations).toEqual([
      { validator: joiner, chainId: '901', amount: '1000000' },
      { validator: joiner, chainId: '902', amount: '1000000' },
    ])
  })

  it('move --wait lends the validator stake (stake show lists it); unjail of a free validator is refused', async () => {
    const r = await stake(
      `move --key-file ${validatorKeyFile} --from 901 --to 903 --amount 100 --blocks 100000 --wait`,
    )
    expect(r.code).toBe(0)
    const id = docs(r)[0]!['id']
    const shown = await stake('show')
    expect(shown.code).toBe(0)
    const moves = docs(shown)[0]!['moves'] as Array<{ id: string; staker: string; amount: string }>
    expect(moves).toContainEqual(expect.objectContaining({ id, staker: validator, amount: '100' }))
    const unjail = await stake(`unjail --key-file ${validatorKeyFile}`)
    expect(unjail.code).toBe(1)
    expect(unjail.stderr).toMatch(/^murmur: NOT_JAILED: /)
  })

  it('bad usage exits 2', async () => {
    const cases = [
      `transfer --key-file ${walletFile} --amount 1`,
      `transfer --key-file ${walletFile} --to ${wallet} --amount 1.5`,
      `delegate --key-file ${walletFile} --validator ${validator} --chain x --amount 1`,
      `create-validator --key-file ${walletFile} --chains 901 --self-stake 1`,
      `create-validator --key-file ${walletFile} --peer-id ${c.net.nodes[0]!.peerId} --chains 901,901 --self-stake 1`,
      `create-validator --key-file ${walletFile} --peer-id nope --chains 901 --self-stake 1`,
      `create-validator --key-file ${walletFile} --peer-id ${c.net.nodes[0]!.peerId} --chains 901 --self-stake 1 --commission-bps 10001`,
      'account',
    ]
    const results = await Promise.all(cases.map(stake))
    expect(results.map((r) => r.code)).toEqual(cases.map(() => 2))
    for (const r of results) expect(r.stderr).toMatch(/^murmur: /)
  })
})
