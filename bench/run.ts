// `npm run bench -- <name> [flags]`: runs bench/<name>.ts (names below).
const name = process.argv[2]
const known = [
  'gossip',
  'recover',
  'mempool',
  'pool',
  'hotpath',
  'rollups',
  'rollup-down',
  'consensus',
  'rpc',
  'wal',
  'healing',
  'catchup',
  'gas',
  'settlement',
  'rewards',
  'epoch',
  'devnet-start',
  'api-limits',
  'dashboard',
  'devnet-profiles',
  'attack',
]
if (name === undefined || !known.includes(name)) {
  console.error(`usage: npm run bench -- <${known.join('|')}> [flags]`)
  process.exit(2)
}
await import(`./${name}.ts`)
