/**
 * Issue 12, item 6: `murmur devnet up` run as a process leaves no process, port or namespace behind on
 * Ctrl-C (SIGINT), SIGTERM, or a failed start (a control port taken on purpose). Loopback always;
 * the same in `--netns` mode where root on Linux is available.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { statSync } from 'node:fs'
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import type { DevnetState } from '../../devnet/devnet.ts'
import { netnsLeftovers, netnsUnavailable } from '../../devnet/netns.ts'
import { CLI, runCli } from '../helpers/cli.ts'
import { accepts, alive, watchChildren } from '../helpers/proc.ts'
import { waitFor } from '../helpers/wait.ts'

const execFileP = promisify(execFile)
const NETNS_SKIP = await netnsUnavailable()
if (NETNS_SKIP !== undefined) console.warn(`devnet-exit: netns variants skipped: ${NETNS_SKIP}`)

interface Run {
  child: ChildProcess
  out: () => string
  exited: Promise<number | NodeJS.Signals>
}

const dirs: string[] = []
const running: Array<{ child: ChildProcess; dir: string }> = []

afterEach(async () => {
  // A failed assertion must not leave the devnet behind. SIGTERM first: the devnet stops its own nodes,
  // anvils and namespaces. A SIGKILL of `devnet up` alone would orphan them (session 10 found three such
  // devnets running hours later), so after it the pids its state file recorded are killed one by one.
  for (const { child, dir } of running.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGTERM')
    const stopped = await Promise.race([exited.then(() => true), delay(20_000).then(() => false)])
    if (stopped) continue
    child.kill('SIGKILL')
    const state = await readState(dir).catch(() => undefined)
    for (const pid of state === undefined ? [] : recorded(state).pids.filter(alive)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone meanwhile
      }
    }
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

function devnetUp(dir: string, extra: string[]): Run {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'devnet',
      'up',
      '--dir',
      dir,
      '--nodes',
      '2',
      '--rollups',
      '1',
      '--rate',
      '0',
      '--native',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  running.push({ child, dir })
  let out = ''
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code ?? 0)),
  )
  return { child, out: () => out, exited }
}

async function readState(dir: string): Promise<DevnetState> {
  return JSON.parse(await readFile(join(dir, 'devnet.json'), 'utf8')) as DevnetState
}

/** Every pid and every host:port the state file records (the delay relays' too, in netns mode without netem). */
function recorded(state: DevnetState): { pids: number[]; ports: Array<[string, number]> } {
  const relays = state.relays ?? []
  const pids = [
    ...state.nodes.map((n) => n.pid),
    ...state.rollups.map((r) => r.pid),
    ...relays.map((r) => r.pid),
  ].filter((p): p is number => p !== null)
  const urls = [
    ...state.nodes.flatMap((n) => (n.api === null ? [] : [n.api])),
    ...state.rollups.map((r) => r.rpcUrl),
    ...(state.control === '' ? [] : [state.control]),
  ].map((u) => new URL(u))
  const ports: Array<[string, number]> = urls.map((u) => [u.hostname, Number(u.port)])
  for (const r of relays) ports.push([r.listen.split(':')[0]!, Number(r.listen.split(':')[1])])
  for (const n of state.nodes)
    for (const m of n.listen) {
      const x = /^\/ip4\/([\d.]+)\/tcp\/(\d+)/.exec(m)
      if (x !== null) ports.push([x[1]!, Number(x[2])])
    }
  return { pids, ports }
}

/**
 * Nothing the devnet recorded is left: no pid, no listening port, no namespace or link of its id. In
 * netns mode, once no namespace and no host interface holds an address of the devnet's subnet, no port
 * on one can accept, and those are not probed: a packet to them would leave the machine by the default
 * route (where something may answer on a well-known port such as the relays' 4001).
 */
async function expectNothingLeft(state: DevnetState): Promise<void> {
  const { pids, ports } = recorded(state)
  expect(pids.filter(alive)).toEqual([])
  const subnet = state.netns?.subnet.replace(/0\/24$/, '')
  if (state.netns) {
    expect(await netnsLeftovers(state.netns.id)).toEqual({ namespaces: [], links: [] })
    const { stdout } = await execFileP('ip', ['-4', '-o', 'addr', 'show'])
    expect(stdout.split('\n').filter((l) => l.includes(` ${subnet}`))).toEqual([])
  }
  const probed = ports.filter(([h]) => subnet === undefined || !h.startsWith(subnet))
  const open = (
    await Promise.all(probed.map(async ([h, p]) => ((await accepts(h, p)) ? `${h}:${p}` : '')))
  ).filter((x) => x !== '')
  expect(open).toEqual([])
}

// CI time: each mode is stopped by one signal (Ctrl-C on loopback, SIGTERM in netns: both take the same
// handler), and the Ctrl-C during the start runs where it found a bug (netns: a node still starting
// outlived the devnet). `MURMUR_EXIT_ALL=1` runs every combination.
const ALL = process.env['MURMUR_EXIT_ALL'] === '1'
const modes = [
  {
    name: 'loopback',
    flags: [] as string[],
    skip: undefined as string | undefined,
    signals: ALL ? (['SIGINT', 'SIGTERM'] as const) : (['SIGINT'] as const),
    whileStarting: ALL,
  },
  {
    name: 'netns',
    flags: ['--netns'],
    skip: NETNS_SKIP,
    signals: ALL ? (['SIGINT', 'SIGTERM'] as const) : (['SIGTERM'] as const),
    whileStarting: true,
  },
]

for (const mode of modes) {
  describe.skipIf(mode.skip !== undefined)(`devnet up exits clean, ${mode.name}`, () => {
    for (const signal of mode.signals) {
      it(`${signal} stops every process, closes every port${mode.name === 'netns' ? ', removes every namespace' : ''}`, async () => {
        const dir = await mkdtemp(join(tmpdir(), 'murmur-exit-'))
        dirs.push(dir)
        const run = devnetUp(dir, mode.flags)
        await waitFor('devnet: up', () => run.out().includes('devnet: up'), { timeoutMs: 90_000 })
        const state = await readState(dir)
        const { pids, ports } = recorded(state)
        // 2 nodes + 1 anvil (+ 2 delay relays in netns mode without netem); ports: 2 APIs, 1 rpc,
        // control, 2 listen addresses.
        const relays = mode.name === 'netns' && state.netns?.netem === false ? 2 : 0
        expect(state.relays ?? []).toHaveLength(relays)
        expect(pids).toHaveLength(3 + relays)
        expect(ports.length).toBeGreaterThanOrEqual(6)
        expect(pids.every(alive)).toBe(true)
        expect(await accepts(...ports[0]!)).toBe(true)
        if (mode.name === 'netns') {
          expect(state.netns?.namespaces).toHaveLength(3)
          expect((await netnsLeftovers(state.netns!.id)).namespaces).toHaveLength(3)
          expect(new URL(state.nodes[0]!.api!).hostname).not.toBe('127.0.0.1')
        } else {
          expect(state.netns).toBeNull()
          if (signal === 'SIGINT') {
            // The packet faults need --netns: one line that says so, nothing else happens.
            const r = await runCli(['devnet', 'delay', '100', '--dir', dir])
            expect(r.code).toBe(1)
            expect(r.stderr.trim().split('\n')).toHaveLength(1)
            expect(r.stderr).toMatch(/^murmur: CONTROL_FAILED: delay needs a devnet started with --netns/)
            // A restarted node binds its old p2p and API ports again (peers hold that address) ...
            const before = state.nodes[1]!
            expect((await runCli(['devnet', 'restart', '1', '--dir', dir])).code).toBe(0)
            const again = (await readState(dir)).nodes[1]!
            expect(again.pid).not.toBe(before.pid)
            expect([again.api, again.listen]).toEqual([before.api, before.listen])
            // ... and new ones when another process took them meanwhile.
            expect((await runCli(['devnet', 'kill', '1', '--dir', dir])).code).toBe(0)
            const squatter = net.createServer()
            await new Promise<void>((r) => squatter.listen(Number(new URL(before.api!).port), '127.0.0.1', r))
            try {
              const r2 = await runCli(['devnet', 'restart', '1', '--dir', dir])
              expect(r2.code, r2.stderr).toBe(0)
            } finally {
              await new Promise((r) => squatter.close(r))
            }
            const moved = (await readState(dir)).nodes[1]!
            expect(moved.api).not.toBe(before.api)
            expect(run.out()).toContain("node 1's ports")
            state.nodes.push({ ...moved, index: 2 })
          }
        }
        run.child.kill(signal)
        const code = await Promise.race([
          run.exited,
          new Promise((r) => setTimeout(() => r('still running after 30 s'), 30_000)),
        ])
        expect(code, run.out()).toBe(0)
        expect(run.out()).toContain('devnet: stopping...')
        await expectNothingLeft(state)
      }, 150_000)
    }

    it.runIf(mode.whileStarting)(
      'Ctrl-C while the nodes start: up() starts nothing more, every child it had is gone',
      async () => {
        const dir = await mkdtemp(join(tmpdir(), 'murmur-exit-'))
        dirs.push(dir)
        const run = devnetUp(dir, mode.flags)
        const children = watchChildren(run.child.pid!)
        await waitFor('devnet: starting 2 nodes', () => run.out().includes('starting 2 nodes'), {
          timeoutMs: 90_000,
        })
        run.child.kill('SIGINT')
        const code = await Promise.race([
          run.exited,
          new Promise((r) => setTimeout(() => r('still running after 60 s'), 60_000)),
        ])
        const seen = await children.stop()
        expect(code, run.out()).toBe(0)
        expect(run.out()).not.toContain('devnet: up')
        // The anvil at least had started; none of the children outlived the devnet.
        expect(seen.length, run.out()).toBeGreaterThanOrEqual(1)
        expect(seen.filter(alive)).toEqual([])
        await expectNothingLeft(await readState(dir))
      },
      150_000,
    )

    it('a failed start (control port taken) exits 1 with one clear line and leaves nothing behind', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'murmur-exit-'))
      dirs.push(dir)
      const taken = net.createServer()
      await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r))
      const port = (taken.address() as net.AddressInfo).port
      try {
        const run = devnetUp(dir, [...mode.flags, '--control-port', String(port)])
        const code = await Promise.race([
          run.exited,
          new Promise((r) => setTimeout(() => r('still running after 120 s'), 120_000)),
        ])
        expect(code, run.out()).toBe(1)
        const errors = run
          .out()
          .split('\n')
          .filter((l) => l.startsWith('murmur: '))
        expect(errors).toEqual([
          `murmur: BAD_ARGS: control port ${port} on 127.0.0.1: EADDRINUSE (pick another --control-port, or 0)`,
        ])
        // Everything else had started before the control server failed: the nodes, the anvil, the namespaces.
        const state = await readState(dir)
        expect(recorded(state).pids).toHaveLength(3 + (state.relays?.length ?? 0))
        if (mode.name === 'netns') expect(state.netns?.namespaces).toHaveLength(3)
        await expectNothingLeft(state)
        // The taken port is still ours, untouched.
        expect(await accepts('127.0.0.1', port)).toBe(true)
      } finally {
        await new Promise<void>((r) => taken.close(() => r()))
      }
    }, 150_000)
  })
}

/**
 * Whether uid 65534 (nobody) can run `file`: every directory above it searchable by others and the file
 * readable by them. A checkout under a 0700 directory (mktemp -d) is not, and the child then never starts.
 */
function othersCanRead(file: string): boolean {
  let p = resolve(file)
  if ((statSync(p).mode & 0o004) === 0) return false
  for (p = dirname(p); ; p = dirname(p)) {
    if ((statSync(p).mode & 0o001) === 0) return false
    if (p === dirname(p)) return true
  }
}

const AS_NOBODY_SKIP =
  process.getuid?.() !== 0
    ? undefined
    : othersCanRead(CLI) && othersCanRead(process.execPath)
      ? undefined
      : 'the checkout or node is not readable by uid 65534 (a 0700 directory above it)'

describe('devnet up --netns where it cannot run', () => {
  it.skipIf(AS_NOBODY_SKIP !== undefined)(
    `refuses in one line (NETNS_UNAVAILABLE) and writes or starts nothing${AS_NOBODY_SKIP === undefined ? '' : ` (skipped: ${AS_NOBODY_SKIP})`}`,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'murmur-exit-'))
      dirs.push(dir)
      await chmod(dir, 0o777)
      // As root, the refusal is seen as an unprivileged user (nobody); otherwise as this user.
      const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI, 'devnet', 'up', '--netns', '--dir', join(dir, 'd')], {
          stdio: ['ignore', 'ignore', 'pipe'],
          ...asNobody,
        })
        running.push({ child, dir: join(dir, 'd') })
        child.once('error', (err) => resolve({ code: null, stderr: String(err) }))
        let stderr = ''
        child.stderr!.on('data', (d: Buffer) => {
          stderr += d.toString()
        })
        child.once('exit', (code) => resolve({ code, stderr }))
      })
      expect(r.code).toBe(1)
      expect(r.stderr.trim().split('\n')).toHaveLength(1)
      expect(r.stderr).toMatch(/^murmur: NETNS_UNAVAILABLE: --netns needs (root|Linux|iproute2)/)
      expect(await readdir(dir)).toEqual([])
    },
    60_000,
  )
})
