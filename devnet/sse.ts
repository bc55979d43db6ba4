/** A Server-Sent Events follower of a node's `/v1/events` (the devnet's status line, the benchmarks). */

/**
 * Follows a node's `/v1/events` stream in the background, calling `onEvent(type, data)` for each
 * Server-Sent Event; stops when `signal` aborts. Resolves once the stream is open; rejects when it cannot be.
 */
export async function followEvents(
  api: string,
  signal: AbortSignal,
  onEvent: (type: string, data: unknown) => void,
  /** Called once when the stream ends for any reason (the node stopped, the signal aborted). */
  onEnd?: () => void,
  /** Another stream of the same framing (the dashboard's `/api/stream`). */
  path = '/v1/events',
): Promise<void> {
  const res = await fetch(`${api}${path}`, { signal })
  void (async () => {
    const reader = res.body!.getReader()
    const dec = new TextDecoder()
    let buf = ''
    try {
      for (;;) {
        const { value, done } = await reader.read()
        if (done) return
        buf += dec.decode(value, { stream: true })
        let i = buf.indexOf('\n\n')
        while (i >= 0) {
          const lines = buf.slice(0, i).split('\n')
          buf = buf.slice(i + 2)
          const type = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message'
          const data = lines.find((l) => l.startsWith('data: '))
          if (data !== undefined) onEvent(type, JSON.parse(data.slice(6)))
          i = buf.indexOf('\n\n')
        }
      }
    } catch {
      // aborted, or the node went away
    } finally {
      onEnd?.()
    }
  })()
}
