import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { nodeArgs } from '../../devnet/process.ts'
import { Cluster } from '../helpers/cluster.ts'

// A node's memory settings (docs/reliability.md, rows "Flood from several identities at once" and "Node
// memory settings"; docs/decisions.md): without them RSS stays 25 to 50 % above its baseline a minute after
// a near-1 MiB flood. They are read from the running process itself, as the kernel sees it: its arguments
// and its environment.
const BIN = fileURLToPath(new URL('../../bin/murmur', import.meta.url))
const linux = existsSync('/proc/self/environ')

async function processSettings(pid: number): Promise<{ argv: string[]; env: Map<string, string> }> {
  const split = (b: Buffer) =>
    b
      .toString()
      .split('\0')
      .filter((s) => s !== '')
  const argv = split(await readFile(`/proc/${pid}/cmdline`))
  const env = new Map(
    split(await readFile(`/proc/${pid}/environ`)).map((kv) => {
      const i = kv.indexOf('=')
      return [kv.slice(0, i), kv.slice(i + 1)] as const
    }),
  )
  return { argv, env }
}

describe.skipIf(!linux)('node memory settings', () => {
  let c: Cluster
  beforeAll(async () => {
    c = await Cluster.create(2)
  }, 60_000)
  afterAll(async () => c?.close())

  it('every node a devnet, bench or test starts caps the semi-space, mmaps large buffers and exposes gc', async () => {
    const p = await c.start(0)
    const { argv, env } = await processSettings(p.child.pid!)
    // Node flags come before the script: after it they would be the CLI's arguments.
    const script = argv.findIndex((a) => a.endsWith('src/cli/main.ts'))
    expect(argv.slice(0, script)).toContain('--max-semi-space-size=32')
    expect(argv.slice(0, script)).toContain('--expose-gc')
    expect(env.get('MALLOC_MMAP_THRESHOLD_')).toBe(process.env['MALLOC_MMAP_THRESHOLD_'] ?? '32768')
    await c.stop(0)
  })

  it('bin/murmur gives a node the same settings, and the environment can override the threshold', async () => {
    const { MALLOC_MMAP_THRESHOLD_: _, ...parent } = process.env
    for (const [env, want] of [
      [parent, '32768'],
      [{ ...parent, MALLOC_MMAP_THRESHOLD_: '65536' }, '65536'],
    ] as const) {
      const n = c.net.nodes[1]!
      const child = spawn(BIN, nodeArgs({ dataDir: n.dataDir, genesisPath: c.net.genesisPath }), {
        stdio: ['ignore', 'pipe', 'ignore'],
        env,
      })
      const exited = new Promise((resolve) => child.once('exit', resolve))
      try {
        // Wait for its `started` line: by then the shell has exec'd the node, so the pid is the node's.
        await new Promise<void>((resolve, reject) => {
          let out = ''
          child.stdout!.on('data', (d: Buffer) => {
            out += d.toString()
            if (out.includes('"event":"started"')) resolve()
          })
          child.once('exit', (code) => reject(new Error(`bin/murmur exited ${code} before it started`)))
        })
        const { argv, env: seen } = await processSettings(child.pid!)
        const script = argv.findIndex((a) => a.endsWith('src/cli/main.ts'))
        expect(script).toBeGreaterThan(0)
        expect(argv.slice(0, script)).toContain('--max-semi-space-size=32')
        expect(argv.slice(0, script)).toContain('--expose-gc')
        expect(seen.get('MALLOC_MMAP_THRESHOLD_')).toBe(want)
      } finally {
        child.kill('SIGTERM')
        await exited
      }
    }
  })
})
