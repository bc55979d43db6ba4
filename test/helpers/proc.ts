import net from 'node:net'

/** True while a process with this pid exists (signal 0 probes without sending anything). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Resolves true when a TCP connection to host:port is accepted, false when refused, unreachable or silent. */
export function accepts(host: string, port: number, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: timeoutMs })
    s.once('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.once('error', () => resolve(false))
    s.once('timeout', () => {
      s.destroy()
      resolve(false)
    })
  })
}

/** The pids whose parent is `ppid` now (from /proc; Linux). */
export async function childrenOf(ppid: number): Promise<number[]> {
  const { readdir, readFile } = await import('node:fs/promises')
  const out: number[] = []
  for (const e of await readdir('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const stat = await readFile(`/proc/${e}/stat`, 'utf8').catch(() => '')
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
    const ppidField = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]
    if (Number(ppidField) === ppid) out.push(Number(e))
  }
  return out
}

/**
 * Collects every child `ppid` has while it runs (polled), so a test can check afterwards that none
 * outlived it, also the ones started after the last state the parent recorded.
 */
export function watchChildren(ppid: number, everyMs = 100): { stop(): Promise<number[]> } {
  const seen = new Set<number>()
  let on = true
  const loop = (async () => {
    while (on) {
      for (const p of await childrenOf(ppid)) seen.add(p)
      await new Promise((r) => setTimeout(r, everyMs))
    }
  })()
  return {
    async stop() {
      on = false
      await loop
      return [...seen]
    },
  }
}
