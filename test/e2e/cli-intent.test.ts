import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generatePrivateKey } from 'viem/accounts'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cluster } from '../helpers/cluster.ts'

const CLI = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts')
const run = (...args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 })

describe('murmur intent send / status', () => {
  let c: Cluster
  let keyFile: string
  beforeAll(async () => {
    c = await Cluster.create(1)
    await c.start(0)
    keyFile = join(c.net.dir, 'wallet.json')
    await writeFile(keyFile, JSON.stringify({ privateKey: generatePrivateKey() }), { mode: 0o600 })
  }, 60_000)
  afterAll(async () => c?.close())

  it('signs, submits and reads back an intent', () => {
    const api = c.node(0).api
    const to = '0x' + '12'.repeat(20)
    const sent = run(
      'intent',
      'send',
      '--api',
      api,
      '--key-file',
      keyFile,
      '--to',
      to,
      '--amount',
      '1000',
      '--chains',
      '901,902',
    )
    expect(sent.status).toBe(0)
    const out = JSON.parse(sent.stdout) as { id: string; accepted: boolean }
    expect(out.accepted).toBe(true)
    expect(out.id).toMatch(/^0x[0-9a-f]{64}$/)
    const st = run('intent', 'status', out.id, '--api', api)
    expect(st.status).toBe(0)
    const view = JSON.parse(st.stdout) as { state: string; order: { user: string } }
    expect(view.state).toBe('pending')
  })

  it('refuses a bad key file (exit 1, coded) and a bad amount (exit 2)', async () => {
    const bad = join(c.net.dir, 'bad.json')
    await writeFile(bad, '{"privateKey":"0x1234"}')
    const r = run(
      'intent',
      'send',
      '--api',
      c.node(0).api,
      '--key-file',
      bad,
      '--to',
      '0x' + '12'.repeat(20),
      '--amount',
      '1',
    )
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^murmur: BAD_KEY: /)
    const r2 = run(
      'intent',
      'send',
      '--api',
      c.node(0).api,
      '--key-file',
      keyFile,
      '--to',
      '0x' + '12'.repeat(20),
      '--amount',
      '1.5',
    )
    expect(r2.status).toBe(2)
  })

  it('status of an unknown id exits 1 with NOT_FOUND', () => {
    const r = run('intent', 'status', '0x' + 'ab'.repeat(32), '--api', c.node(0).api)
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^murmur: NOT_FOUND: /)
  })
})
