// Entry point of the `murmur` command. Kept tiny so that the compile cache is on before
// the heavy modules (libp2p, viem, fastify) load: it roughly halves start-up time.
import module from 'node:module'

module.enableCompileCache?.()
const { main } = await import('./cli.ts')
const code = await main(process.argv.slice(2))
// A running node keeps the event loop alive; every other command ends here.
if (code !== 0) process.exit(code)
