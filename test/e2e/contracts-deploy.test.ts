/**
 * `murmur contracts deploy` as a process against two real anvil rollups: the genesis file gains
 * `rollups[i].settlement` (nothing else changes), the printed addresses hold code, a fresh key gets the same
 * addresses on both chains, and the light client starts with the genesis validator set.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type Address, createPublicClient, encodeAbiParameters, type Hex, http, keccak256 } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type Rollups, startRollups } from '../../devnet/anvil.ts'
import { prepareNetwork } from '../../devnet/network.ts'
import { murmurLightClientAbi, murmurSettlerAbi, testTokenAbi } from '../../src/contracts/abi.ts'
import { runCli } from '../helpers/cli.ts'

const murmur = (args: string[]) => runCli(args, {}, 60_000)

describe('murmur contracts deploy', () => {
  let dir: string
  let rollups: Rollups
  let genesisPath: string
  let keyFile: string
  const key: Hex = generatePrivateKey()
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'murmur-deploy-'))
    rollups = await startRollups({ count: 2, blockTimeSec: 0.2, accounts: [key] })
    const net = await prepareNetwork({
      dir,
      nodes: 4,
      rollups: [
        { chainId: 901, name: 'a', type: 'optimistic', securityBps: 8000 },
        { chainId: 902, name: 'b', type: 'zk', securityBps: 9500 },
      ],
      params: { refundGraceSec: 77 } as never,
    })
    genesisPath = net.genesisPath
    keyFile = join(dir, 'deployer.json')
    await writeFile(keyFile, JSON.stringify({ privateKey: key }), { mode: 0o600 })
  }, 60_000)
  afterAll(async () => {
    await rollups?.stop()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('deploys on both rollups, writes the genesis, prints the addresses', async () => {
    const before = JSON.parse(await readFile(genesisPath, 'utf8')) as {
      validators: Array<{ address: Address; stake: string }>
      rollups: Array<Record<string, unknown>>
    }
    const flags = rollups.rollups.flatMap((r) => ['--rollup', `${r.chainId}=${r.rpcUrl}`])
    const r = await murmur([
      'contracts',
      'deploy',
      '--genesis',
      genesisPath,
      ...flags,
      '--key-file',
      keyFile,
      '--test-token',
    ])
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout) as Record<
      string,
      { settler: Address; lightClient: Address; token: Address }
    >
    expect(Object.keys(out).sort()).toEqual(['901', '902'])
    // A fresh key has nonce 0 on both chains: the same three addresses on each.
    expect(out['902']).toEqual(out['901'])
    expect(new Set([out['901']!.settler, out['901']!.lightClient, out['901']!.token]).size).toBe(3)
    // One progress line per rollup when it is done.
    for (const id of ['901', '902']) expect(r.stderr).toMatch(new RegExp(`^rollup ${id}: settler 0x`, 'm'))

    const after = JSON.parse(await readFile(genesisPath, 'utf8')) as typeof before
    for (const row of after.rollups) {
      const d = out[String(row['chainId'])]!
      expect(row['settlement']).toEqual({ settler: d.settler, lightClient: d.lightClient })
      delete row['settlement']
    }
    expect(after).toEqual(before)

    const validators = [...before.validators].sort((a, b) => (BigInt(a.address) < BigInt(b.address) ? -1 : 1))
    const expectedHash = keccak256(
      encodeAbiParameters(
        [{ type: 'address[]' }, { type: 'uint256[]' }],
        [validators.map((v) => v.address), validators.map((v) => BigInt(v.stake))],
      ),
    )
    for (const rollup of rollups.rollups) {
      const pub = createPublicClient({ transport: http(rollup.rpcUrl) })
      const d = out[String(rollup.chainId)]!
      for (const a of [d.settler, d.lightClient, d.token])
        expect((await pub.getCode({ address: a }))?.length).toBeGreaterThan(2)
      expect(
        await pub.readContract({
          address: d.lightClient,
          abi: murmurLightClientAbi,
          functionName: 'currentValidatorsHash',
        }),
      ).toBe(expectedHash)
      expect(
        await pub.readContract({ address: d.settler, abi: murmurSettlerAbi, functionName: 'refundGraceSec' }),
      ).toBe(77n)
      expect(
        (
          (await pub.readContract({
            address: d.settler,
            abi: murmurSettlerAbi,
            functionName: 'lightClient',
          })) as string
        ).toLowerCase(),
      ).toBe(d.lightClient)
      expect(
        await pub.readContract({ address: d.token, abi: testTokenAbi, functionName: 'totalSupply' }),
      ).toBe(0n)
    }
  }, 60_000)

  it('bad usage exits 2 with one line', async () => {
    const cases = [
      ['contracts', 'deploy', '--genesis', genesisPath, '--key-file', keyFile],
      ['contracts', 'deploy', '--genesis', genesisPath, '--key-file', keyFile, '--rollup', '901'],
      ['contracts', 'deploy', '--rollup', '901=http://127.0.0.1:9', '--key-file', keyFile],
    ]
    for (const args of cases) {
      const r = await murmur(args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(/^murmur: error: /)
    }
  }, 60_000)

  it('an unreachable RPC, an unknown rollup and a wrong chain exit 1 with a coded line', async () => {
    const text = await readFile(genesisPath, 'utf8')
    const deployOn = (rollup: string) =>
      murmur(['contracts', 'deploy', '--genesis', genesisPath, '--rollup', rollup, '--key-file', keyFile])
    const url = rollups.rollups[0]!.rpcUrl
    const [down, unknown, wrong] = await Promise.all([
      deployOn('901=http://127.0.0.1:9'),
      deployOn(`999=${url}`),
      deployOn(`902=${url}`),
    ])
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/^murmur: UNREACHABLE: rollup 901: /)
    expect(down.stderr.trim().split('\n')).toHaveLength(1)
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^murmur: UNKNOWN_ROLLUP: /)
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/^murmur: WRONG_CHAIN: rollup 902: /)
    // Nothing was deployed, so the genesis file is untouched.
    expect(await readFile(genesisPath, 'utf8')).toBe(text)
  }, 60_000)

  it('--help describes the command', async () => {
    const r = await murmur(['contracts', 'deploy', '--help'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('Usage: murmur contracts deploy')
    expect(r.stdout).toMatch(/same\s+addresses\s+on\s+every\s+chain/)
  }, 30_000)
})
