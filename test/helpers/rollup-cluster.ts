import { type Rollups, type RollupsOptions, startRollups } from '../../devnet/anvil.ts'
import type { Cluster } from './cluster.ts'

/**
 * Starts anvil rollups with every validator of `c` funded, then every node of `c` watching them (node 0
 * first, the others bootstrapped to it), and waits until each node is connected to all the others.
 * The caller stops both: `c.close()`, then `rollups.stop()`.
 */
export async function startClusterOnRollups(
  c: Cluster,
  options: Omit<RollupsOptions, 'accounts'>,
): Promise<Rollups> {
  const rollups = await startRollups({ ...options, accounts: c.net.nodes.map((n) => n.validatorPrivateKey) })
  const flags = new Map(rollups.rollups.map((r) => [r.chainId, r.rpcUrl]))
  const all = c.net.nodes.map((_, i) => i)
  const boot = await c.start(0, { rollups: flags })
  await Promise.all(all.slice(1).map((i) => c.start(i, { rollups: flags, bootstrap: [boot.listen[0]!] })))
  await c.waitConnected(all, all.length - 1)
  return rollups
}
