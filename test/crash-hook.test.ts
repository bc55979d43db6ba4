import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { prepareNetwork } from '../devnet/network.ts'
import { type NodeProcess, spawnNode } from '../devnet/process.ts'
import { CRASH_ENV, parseCrashSpec } from '../src/state/crash-hook.ts'
import { waitFor } from './helpers/wait.ts'

describe('MURMUR_TEST_CRASH_AT', () => {
  it('parses point:probability items and refuses unknown points and bad probabilities', () => {
    expect([...parseCrashSpec('commit:0.05, fill:1,wal:0')]).toEqual([
      ['commit', 0.05],
      ['fill', 1],
      ['wal', 0],
    ])
    expect(parseCrashSpec('').size).toBe(0)
    expect(() => parseCrashSpec('comit:0.1')).toThrow(/bad item "comit:0.1"/)
    expect(() => parseCrashSpec('commit:1.5')).toThrow(/bad item/)
    expect(() => parseCrashSpec('commit')).toThrow(/bad item/)
  })
})

// One validator as a real process: armed with probability 1 it dies by its own SIGKILL at the named
// point; started again unarmed on the same data dir it commits on from there.
describe('crash points in a real node', () => {
  const procs: NodeProcess[] = []
  const dirs: string[] = []
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill9()))
    await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
  })

  async function oneNode() {
    const dir = await mkdtemp(join(tmpdir(), 'murmur-crash-hook-'))
    dirs.push(dir)
    const net = await prepareNetwork({ dir, nodes: 1 })
    const n = net.nodes[0]!
    const logFile = join(dir, 'node.log')
    const start = async (crashAt: string | undefined) => {
      const saved = process.env[CRASH_ENV]
      if (crashAt === undefined) delete process.env[CRASH_ENV]
      else process.env[CRASH_ENV] = crashAt
      try {
        const p = await spawnNode({ dataDir: n.dataDir, genesisPath: net.genesisPath, logFile })
        procs.push(p)
        return p
      } finally {
        if (saved === undefined) delete process.env[CRASH_ENV]
        else process.env[CRASH_ENV] = saved
      }
    }
    return { start, logFile }
  }

  const height = async (api: string) =>
    ((await (await fetch(`${api}/v1/status`)).json()) as { height: number }).height

  for (const point of ['wal', 'commit', 'committed'] as const)
    it(`${point}:1 kills the node there, and it restarts and commits on`, async () => {
      const { start, logFile } = await oneNode()
      // It may die before it says it started: its first WAL append comes right at start, and with the
      // journal nothing between start and that append waits for I/O.
      const died = await start(`${point}:1`).then(
        (p) => p.exited,
        (err: Error) => {
          if (/node exited \(SIGKILL\) before start/.test(err.message)) return 'SIGKILL'
          throw err
        },
      )
      expect(died).toBe('SIGKILL')
      const lines = (await readFile(logFile, 'utf8')).split('\n').filter((l) => l.includes('"crash point"'))
      expect(lines.map((l) => (JSON.parse(l) as { point: string }).point)).toEqual([point])
      // Before the kill no block was acknowledged at `commit` (its batch never ran); at `committed` it
      // was written: either way the restarted node serves height 1 and goes on.
      const again = await start(undefined)
      await waitFor('height 3 after the restart', async () => (await height(again.api)) >= 3, {
        timeoutMs: 30_000,
      })
      const b1 = (await (await fetch(`${again.api}/v1/blocks/1`)).json()) as { hash: string }
      expect(b1.hash).toMatch(/^0x[0-9a-f]{64}$/)
      await again.stop()
    }, 60_000)
})
