/**
 * Issue 13, item 5: a node whose data dir fills up, or is read-only, stops with one clear line (the
 * data dir, the cause, exit code 1, no stack) and its store opens cleanly afterwards: started again
 * with room (or read-write) it has every block and intent it had acknowledged. Real filesystems: a
 * 12 MiB tmpfs filled to the brim gives ENOSPC, a read-only bind mount gives EROFS (chmod does not stop
 * root). Needs root (mount); skipped otherwise.
 */
import { execFileSync } from 'node:child_process'
import { mkdir, mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { prepareNetwork } from '../devnet/network.ts'
import { type NodeProcess, spawnNode } from '../devnet/process.ts'
import { makeIntent, wallet } from './helpers/intents.ts'
import { postJson, waitFor } from './helpers/wait.ts'

const isRoot = process.getuid?.() === 0
if (!isRoot) console.warn('data-dir-faults: skipped, mounting a tmpfs and a read-only bind needs root')

/** Every line of the node's stderr (its log file: `spawnNode` appends stderr there). */
async function stderrLines(file: string): Promise<string[]> {
  return (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '')
}

/** What must hold of a node that stopped on its data dir: exit 1, one `murmur: CODE: ...` line, no stack. */
async function expectOneLine(file: string, code: string, dataDir: string, cause: RegExp): Promise<void> {
  const lines = await stderrLines(file)
  const mine = lines.filter((l) => l.startsWith('murmur: '))
  expect(mine, lines.slice(-5).join('\n')).toHaveLength(1)
  expect(mine[0]).toContain(`murmur: ${code}: data dir ${dataDir}: `)
  expect(mine[0]).toMatch(cause)
  // No stack trace anywhere in what the node printed (neither plain nor inside a JSON log line).
  expect(lines.filter((l) => /\n?\s+at .+:\d+:\d+|"stack"/.test(l))).toEqual([])
}

describe.skipIf(!isRoot)('a data dir that cannot be written', () => {
  const mounts: string[] = []
  const procs: NodeProcess[] = []
  let root: string
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'murmur-datadir-'))
  })
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill9()))
    for (const m of mounts.reverse()) execFileSync('umount', [m])
    await rm(root, { recursive: true, force: true })
  })

  /** A one-validator network in `dir`: its genesis and its node's data dir `dir/node-0`. */
  async function network(dir: string) {
    const net = await prepareNetwork({ dir, nodes: 1 })
    return { genesisPath: net.genesisPath, dataDir: net.nodes[0]!.dataDir }
  }

  async function start(dataDir: string, genesisPath: string, logFile: string) {
    const p = await spawnNode({ dataDir, genesisPath, logFile })
    procs.push(p)
    return p
  }

  /** Heights 1..`to` and their hashes, as the node serves them. */
  async function hashes(api: string, to: number): Promise<string[]> {
    const out: string[] = []
    for (let h = 1; h <= to; h++)
      out.push(((await (await fetch(`${api}/v1/blocks/${h}`)).json()) as { hash: string }).hash)
    return out
  }

  const statusOf = async (api: string) =>
    (await (await fetch(`${api}/v1/status`)).json()) as { height: number; blockHash: string }

  /** Acknowledged data: an intent answered 202 and the blocks committed so far. */
  async function acknowledge(api: string) {
    const { id, body } = await makeIntent(wallet())
    const r = await postJson<{ id: string }>(`${api}/v1/intents`, body)
    expect(r.status).toBe(202)
    await waitFor('a few blocks', async () => (await statusOf(api)).height >= 3, { timeoutMs: 30_000 })
    const top = (await statusOf(api)).height
    return { id, top, blocks: await hashes(api, top) }
  }

  async function expectKept(api: string, acked: { id: string; top: number; blocks: string[] }) {
    expect(await hashes(api, acked.top)).toEqual(acked.blocks)
    expect((await fetch(`${api}/v1/intents/${acked.id}`)).status).toBe(200)
    // And it goes on committing.
    await waitFor('commits after the restart', async () => (await statusOf(api)).height > acked.top, {
      timeoutMs: 30_000,
    })
  }

  it('disk full: stops with DISK_FULL in one line, exit 1; again at start; with room it has everything', async () => {
    const disk = join(root, 'disk')
    await mkdir(disk)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', disk])
    mounts.push(disk)
    const net = await network(disk)
    const dataDir = net.dataDir
    const log = join(root, 'full.log')
    const node = await start(dataDir, net.genesisPath, log)
    const acked = await acknowledge(node.api)
    // Fill the disk to the brim: the node's next write (a WAL record, a block) fails.
    const filler = await open(join(disk, 'filler'), 'w')
    const chunk = Buffer.alloc(64 * 1024, 1)
    try {
      for (;;) await filler.write(chunk)
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC')
    }
    for (const size of [4096, 512, 1]) {
      try {
        for (;;) await filler.write(chunk.subarray(0, size))
      } catch {
        // full at this grain
      }
    }
    await filler.close()
    expect(await node.exited).toBe(1)
    await expectOneLine(log, 'DISK_FULL', dataDir, /no space left on device \(ENOSPC\)/)
    // Started on the full disk: the same line, at start, exit 1 (no crash loop, no half-open store).
    const log2 = join(root, 'full-again.log')
    await expect(start(dataDir, net.genesisPath, log2)).rejects.toThrow(/exited \(1\) before start/)
    await expectOneLine(log2, 'DISK_FULL', dataDir, /at start/)
    // Room again: the store opens with every block and the intent it acknowledged.
    await rm(join(disk, 'filler'))
    const back = await start(dataDir, net.genesisPath, join(root, 'full-back.log'))
    await expectKept(back.api, acked)
    await back.stop()
  }, 120_000)

  it('read-only data dir: refuses to start with READ_ONLY in one line, exit 1; read-write it has everything', async () => {
    const net = await network(join(root, 'rw'))
    const dataDir = net.dataDir
    const node = await start(dataDir, net.genesisPath, join(root, 'rw.log'))
    const acked = await acknowledge(node.api)
    // A crash, so the lock file and LevelDB's LOCK are left behind as they would be.
    await node.kill9()
    const ro = join(root, 'ro')
    await mkdir(ro)
    execFileSync('mount', ['--bind', join(root, 'rw'), ro])
    mounts.push(ro)
    execFileSync('mount', ['-o', 'remount,ro,bind', ro])
    const roDir = join(ro, 'node-0')
    const log = join(root, 'ro.log')
    await expect(start(roDir, join(ro, 'genesis.json'), log)).rejects.toThrow(/exited \(1\) before start/)
    await expectOneLine(log, 'READ_ONLY', roDir, /read-only file system \(EROFS\) at start/)
    const back = await start(dataDir, net.genesisPath, join(root, 'rw-back.log'))
    await expectKept(back.api, acked)
    await back.stop()
  }, 120_000)
})
