// RPC client cost: CPU per JSON-RPC call from viem over the global fetch vs over undici's request API
// (src/rollups/rpc.ts, what the node uses), against one anvil chain. Calls are sequential, so CPU per
// call is the process's CPU time over the run divided by the calls.
//
//   npm run bench -- rpc [--calls 3000] [--rounds 3]
import { parseArgs } from 'node:util'
import { createPublicClient, http, type Transport } from 'viem'
import { startRollups } from '../devnet/anvil.ts'
import { rpcTransport } from '../src/rollups/rpc.ts'
import { median } from './lib.ts'

const { values } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== 'rpc'),
  options: { calls: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '3' } },
})
const CALLS = Number(values.calls)
const ROUNDS = Number(values.rounds)

const chains = await startRollups({ count: 1, blockTimeSec: 1 })
try {
  const url = chains.rollups[0]!.rpcUrl
  const perCall = async (transport: Transport): Promise<number> => {
    const client = createPublicClient({ transport })
    for (let i = 0; i < 200; i++) await client.getBlock({ blockTag: 'latest' }) // warm up
    const cpu0 = process.cpuUsage()
    for (let i = 0; i < CALLS; i++) await client.getBlock({ blockTag: 'latest' })
    const cpu = process.cpuUsage(cpu0)
    return (cpu.user + cpu.system) / CALLS
  }
  const fetchUs: number[] = []
  const undiciUs: number[] = []
  for (let r = 1; r <= ROUNDS; r++) {
    process.stderr.write(`  round ${r}/${ROUNDS}: ${CALLS} eth_getBlockByNumber each way...\n`)
    fetchUs.push(await perCall(http(url, { retryCount: 0 })))
    const t = rpcTransport(url, { retryCount: 0 })
    undiciUs.push(await perCall(t.transport))
    await t.close()
  }
  console.log(`rpc benchmark: viem getBlock('latest') against one anvil, ${CALLS} calls x ${ROUNDS} rounds`)
  console.log(`  over fetch:           median ${median(fetchUs).toFixed(0)} us CPU per call`)
  console.log(`  over undici request:  median ${median(undiciUs).toFixed(0)} us CPU per call`)
} finally {
  await chains.stop()
}
