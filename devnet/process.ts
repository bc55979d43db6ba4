import { type ChildProcess, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url))

/**
 * Memory settings every node process runs with (bin/murmur sets the same): after a flood of near-1 MiB
 * messages, V8's young generation stayed doubled (64 -> 128 MB: a semi-space grows to 64 MB on a 4 GB
 * heap limit and never shrinks) and glibc's main arena kept ~80 MB of freed 64 KB stream buffers
 * it could not trim. With a 32 MB semi-space cap and buffers of 32 KB and more mmapped, RSS a minute
 * after the flood was 105-108 % of its baseline (was 125-152 %). `--expose-gc` lets the node compact its
 * heap once after bans stop (src/node/reclaim.ts): V8 leaves the old-space limit a flood raised in place
 * while honest traffic goes on. docs/reliability.md, docs/decisions.md.
 */
const NODE_MEMORY_FLAGS = ['--max-semi-space-size=32', '--expose-gc']
const NODE_MEMORY_ENV = { MALLOC_MMAP_THRESHOLD_: '32768' }

export interface NodeProcessOptions {
  dataDir: string
  genesisPath: string
  bootstrap?: string[]
  /** Listen multiaddr; default an ephemeral TCP port on 127.0.0.1. */
  listen?: string
  /** Multiaddrs announced to peers instead of the listen ones (`--announce`), e.g. a relay's. */
  announce?: string[]
  /** API address; default 127.0.0.1:0. */
  api?: string
  admin?: boolean
  /**
   * `--rate-limit` of the node's API; default `off`: a devnet's and a bench's clients (traffic, scenario
   * checks, dashboards) all come from 127.0.0.1, one client to the limit, and post faster than a wallet.
   */
  rateLimit?: string
  rollups?: Map<number, string>
  logLevel?: string
  /** File for the node's output (its stderr logs and its stdout); default discarded. */
  logFile?: string
  extraArgs?: string[]
  /** Command prefix the node runs under, e.g. `ip netns exec NS` (which execs: the pid is the node's). */
  exec?: string[]
}

/** A running `murmur node start` process. */
export interface NodeProcess {
  pid: number
  peerId: string
  validator: string
  listen: string[]
  api: string
  child: ChildProcess
  /** Resolves with the exit code (or signal) when the process ends. */
  exited: Promise<number | NodeJS.Signals>
  /** SIGTERM, wait for exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number | NodeJS.Signals>
  /** SIGKILL, no cleanup: what a crash looks like. */
  kill9(): Promise<number | NodeJS.Signals>
}

export function nodeArgs(o: NodeProcessOptions): string[] {
  const args = ['node', 'start', '--data-dir', o.dataDir, '--genesis', o.genesisPath]
  args.push('--listen', o.listen ?? '/ip4/127.0.0.1/tcp/0')
  for (const a of o.announce ?? []) args.push('--announce', a)
  args.push('--api', o.api ?? '127.0.0.1:0')
  for (const b of o.bootstrap ?? []) args.push('--bootstrap', b)
  for (const [id, url] of o.rollups ?? []) args.push('--rollup', `${id}=${url}`)
  if (o.admin ?? true) args.push('--admin')
  args.push('--rate-limit', o.rateLimit ?? 'off')
  // MURMUR_NODE_LOG_LEVEL (e.g. debug) for every node a devnet, a scenario or a test starts: for diagnosis.
  args.push('--log-level', o.logLevel ?? process.env['MURMUR_NODE_LOG_LEVEL'] ?? 'info')
  args.push(...(o.extraArgs ?? []))
  return args
}

/** Starts a node process and waits for its `started` line (or its failure). */
export async function spawnNode(
  o: NodeProcessOptions,
  opts: { startTimeoutMs?: number } = {},
): Promise<NodeProcess> {
  // MURMUR_NODE_FLAGS: extra Node flags for every node process (e.g. `--cpu-prof --cpu-prof-dir=/tmp/p`,
  // which Node refuses in NODE_OPTIONS).
  const flags = process.env['MURMUR_NODE_FLAGS']?.split(' ').filter((f) => f !== '') ?? []
  const [cmd, ...pre] = [...(o.exec ?? []), process.execPath]
  const child = spawn(cmd!, [...pre, ...NODE_MEMORY_FLAGS, ...flags, CLI, ...nodeArgs(o)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...NODE_MEMORY_ENV, ...process.env },
  })
  const exited = new Promise<number | NodeJS.Signals>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code ?? 0)),
  )
  let stderrTail = ''
  const logStream = o.logFile === undefined ? undefined : createWriteStream(o.logFile, { flags: 'a' })
  child.stderr!.on('data', (d: Buffer) => {
    logStream?.write(d)
    stderrTail = (stderrTail + d.toString()).slice(-4000)
  })
  // Its stdout too (the `started` line, anything else it prints): every output of a node is in one file.
  child.stdout!.on('data', (d: Buffer) => logStream?.write(d))
  child.once('exit', () => logStream?.end())
  const started = await new Promise<{ peerId: string; validator: string; listen: string[]; api: string }>(
    (resolve, reject) => {
      let buf = ''
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        reject(new Error(`node did not start within ${opts.startTimeoutMs ?? 30_000} ms: ${stderrTail}`))
      }, opts.startTimeoutMs ?? 30_000)
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString()
        for (const line of buf.split('\n').slice(0, -1)) {
          try {
            const ev = JSON.parse(line) as { event?: string }
            if (ev.event === 'started') {
              clearTimeout(timer)
              resolve(ev as never)
            }
          } catch {
            // not our line
          }
        }
        buf = buf.slice(buf.lastIndexOf('\n') + 1)
      })
      exited.then((code) => {
        clearTimeout(timer)
        reject(
          Object.assign(
            new Error(
              `node exited (${code}) before start: ${stderrTail.trim().split('\n').slice(-3).join('\n')}`,
            ),
            { output: stderrTail },
          ),
        )
      })
    },
  )
  const stop = async (graceMs = 10_000) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM')
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs)
      const code = await exited
      clearTimeout(t)
      return code
    }
    return exited
  }
  const kill9 = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    return exited
  }
  return { pid: child.pid!, ...started, child, exited, stop, kill9 }
}
