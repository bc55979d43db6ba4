import { readFile } from 'node:fs/promises'

/** The last `n` lines of a node's log at level warn or above (pino JSON: level >= 40), or its last lines. */
export async function logTail(file: string, n = 12): Promise<string[]> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    return [`(no log at ${file})`]
  }
  const lines = text.split('\n').filter((l) => l !== '')
  const loud = lines.filter((l) => /"level":(4|5|6)\d/.test(l))
  return (loud.length > 0 ? loud : lines).slice(-n).map((l) => l.slice(0, 400))
}

/**
 * What a test prints when a network does not do what it waited for: each node's status (height, round,
 * step, peers, syncing) from its API and the loud end of its log, so a CI failure carries its cause.
 */
export async function diagnoseNodes(
  nodes: ReadonlyArray<{ index: number; api: string | null | undefined; logFile: string }>,
): Promise<string> {
  const parts = await Promise.all(
    nodes.map(async (n) => {
      let status = 'down'
      if (n.api !== null && n.api !== undefined) {
        try {
          const res = await fetch(`${n.api}/v1/status`, { signal: AbortSignal.timeout(3_000) })
          const s = (await res.json()) as Record<string, unknown>
          status = `h${s['height']} r${s['round']} ${s['step']} peers ${s['peers']} syncing ${s['syncing']}`
        } catch (err) {
          status = `no answer (${(err as Error).message})`
        }
      }
      return `node ${n.index}: ${status}\n    ${(await logTail(n.logFile)).join('\n    ')}`
    }),
  )
  return parts.join('\n')
}
