/**
 * viem's HTTP transport over undici's request API instead of the global `fetch`. A node talks to its
 * rollups all the time (health polls, fills, receipt checks of every fill), and `fetch` builds
 * WHATWG Request, Response, Headers and stream objects for each call: in a CPU profile of a node at 100
 * intents/s, fetch and viem's handling of it were close to a third of the samples. `request` on a
 * keep-alive pool does the same HTTP for well under half the CPU per call (`npm run bench -- rpc`).
 */
import { Pool } from 'undici'
import { type HttpTransport, type HttpTransportConfig, http } from 'viem'

export interface RpcTransport {
  transport: HttpTransport
  /** Closes the connections (in-flight requests fail). */
  close(): Promise<void>
}

/** A minimal Response: what viem's HTTP client reads (status, a header, the body as text). */
function response(statusCode: number, headers: Record<string, string | string[] | undefined>, text: string) {
  return {
    ok: statusCode >= 200 && statusCode < 300,
    status: statusCode,
    statusText: '',
    body: null,
    headers: {
      get(name: string): string | null {
        const v = headers[name.toLowerCase()]
        return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v
      },
    },
    text: async () => text,
  } as unknown as Response
}

/** `http(url, config)` whose requests go over one undici Pool of at most `connections` sockets. */
export function rpcTransport(
  url: string,
  config: Omit<HttpTransportConfig, 'fetchFn'> = {},
  connections = 8,
): RpcTransport {
  const u = new URL(url)
  const pool = new Pool(u.origin, { connections, pipelining: 1 })
  const path = `${u.pathname}${u.search}`
  const fetchFn = async (_input: unknown, init?: RequestInit): Promise<Response> => {
    const res = await pool.request({
      path,
      method: (init?.method ?? 'POST') as 'POST',
      headers: init?.headers as Record<string, string> | undefined,
      body: init?.body as string | undefined,
      signal: init?.signal ?? undefined,
    })
    return response(res.statusCode, res.headers, await res.body.text())
  }
  return {
    transport: http(url, { ...config, fetchFn: fetchFn as typeof fetch }),
    // destroy, not close: a stopping node does not wait for answers from a rollup that stopped answering.
    close: () => pool.destroy(),
  }
}
