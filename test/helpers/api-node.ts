import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { prepareNetwork } from '../../devnet/network.ts'
import { MurmurNode } from '../../src/node/node.ts'
import type { NodeOptions } from '../../src/node/options.ts'

/** A one-validator network and its node in this process, API on 127.0.0.1:0; `stop` removes it all. */
export async function startApiNode(
  opts: Partial<NodeOptions> = {},
  net: Partial<Parameters<typeof prepareNetwork>[0]> = {},
): Promise<{ node: MurmurNode; api: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'murmur-node-'))
  const prepared = await prepareNetwork({ nodes: 1, ...net, dir })
  const node = new MurmurNode(
    {
      dataDir: prepared.nodes[0]!.dataDir,
      genesisPath: prepared.genesisPath,
      api: { host: '127.0.0.1', port: 0 },
      ...opts,
    },
    pino({ level: 'silent' }),
  )
  try {
    await node.start()
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
  return {
    node,
    api: `http://127.0.0.1:${node.apiAddress!.port}`,
    async stop() {
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    },
  }
}
