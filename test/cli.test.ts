import { spawnSync } from 'node:child_process'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'

const CLI = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts')
const run = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 })

/** A valid `intent send` up to its optional flags. */
const SEND = [
  'intent',
  'send',
  '--api',
  'http://x',
  '--key-file',
  'k',
  '--to',
  `0x${'1'.repeat(40)}`,
  '--amount',
  '1',
]

describe('murmur CLI', () => {
  it.each([
    [['node', 'start', '--bogus']],
    [['node', 'start', '--data-dir', 'x', '--genesis', 'g', '--api', 'nope']],
    [['node', 'start', '--data-dir', 'x', '--genesis', 'g', '--rollup', '901']],
    [['keys', 'generate']],
    [['nosuchcommand']],
    [['contracts', 'deploy', '--genesis', 'g', '--key-file', 'k']],
    [[...SEND, '--origin', '90x']],
    [[...SEND, '--approve']],
    [
      [
        'token',
        'mint',
        '--rpc',
        'http://x',
        '--token',
        '0x12',
        '--to',
        '0x' + '1'.repeat(40),
        '--amount',
        '1',
        '--key-file',
        'k',
      ],
    ],
  ])('bad usage %j gives one line on stderr and exit code 2', (args) => {
    const r = run(...args)
    expect(r.status).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/^murmur: error: /)
  })

  it('--help exits 0 for every command', () => {
    for (const args of [
      ['--help'],
      ['node', 'start', '--help'],
      ['keys', 'generate', '--help'],
      ['status', '--help'],
      ['contracts', 'deploy', '--help'],
      ['intent', 'approve', '--help'],
      ['token', 'mint', '--help'],
      ['token', 'balance', '--help'],
    ]) {
      const r = run(...args)
      expect(r.status).toBe(0)
      expect(r.stdout).toContain('Usage: murmur')
    }
  })

  it('keys generate writes both keys with mode 0600 and prints their ids', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-keys-'))
    try {
      const r = run('keys', 'generate', '--data-dir', dir)
      expect(r.status).toBe(0)
      const out = JSON.parse(r.stdout) as { peerId: string; address: string }
      expect(out.peerId).toMatch(/^12D3KooW/)
      expect(out.address).toMatch(/^0x[0-9a-f]{40}$/)
      for (const f of ['node-key.json', 'validator-key.json']) {
        expect((await stat(join(dir, f))).mode & 0o777).toBe(0o600)
      }
      // Running it again keeps the same identity.
      expect(JSON.parse(run('keys', 'generate', '--data-dir', dir).stdout)).toEqual(out)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('token balance against an unreachable RPC fails with a coded one-line error', () => {
    const r = run(
      'token',
      'balance',
      '--rpc',
      'http://127.0.0.1:9',
      '--token',
      '0x' + '2'.repeat(40),
      '--address',
      '0x' + '3'.repeat(40),
    )
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^murmur: UNREACHABLE: /)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
  })

  it('status against an unreachable API fails with a coded one-line error', () => {
    const r = run('status', '--api', 'http://127.0.0.1:9')
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^murmur: UNREACHABLE: /)
  })

  it('a bad genesis names the field and exits 1', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-gen-'))
    try {
      const { writeFile } = await import('node:fs/promises')
      await writeFile(
        join(dir, 'g.json'),
        JSON.stringify({ networkId: 'x', genesisTime: 0, validators: [], rollups: [] }),
      )
      const r = run(
        'node',
        'start',
        '--data-dir',
        join(dir, 'd'),
        '--genesis',
        join(dir, 'g.json'),
        '--no-api',
      )
      expect(r.status).toBe(1)
      expect(r.stderr).toMatch(/BAD_GENESIS: .*g\.json: validators: at least one validator/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
