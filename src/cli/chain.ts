/**
 * Commands that talk to the rollups themselves rather than to a node: `murmur contracts deploy`
 * (INTERFACES.md, "Settlement contracts") and the test-token helpers `murmur token mint | balance`.
 */
import type { Command } from 'commander'
import type { Address } from 'viem'
import { addressArg, bigintArg, parseRollup, print, readKeyFile } from './args.ts'

/** Adds `contracts deploy` and `token mint | balance` to `program`. */
export function addChainCommands(program: Command): void {
  const contracts = program
    .command('contracts')
    .description('the settlement contracts on the rollups')
    .exitOverride()
  contracts
    .command('deploy')
    .description(
      'deploy MurmurLightClient (the genesis validator set) and MurmurSettler on each rollup, write rollups[i].settlement into the genesis file and print {chainId: {settler, lightClient, token?}}. CREATE addresses depend only on the key and its nonce: a key whose nonce is the same on every rollup (a fresh key) gets the same addresses on every chain',
    )
    .requiredOption('--genesis <file>', 'genesis JSON file; its rollups[i].settlement is set in place')
    .requiredOption(
      '--rollup <chainId=url>',
      'RPC endpoint of a rollup to deploy on (repeatable)',
      (v: string, p?: Map<number, string>) => parseRollup(v, p ?? new Map()),
    )
    .requiredOption(
      '--key-file <file>',
      'deployer key (JSON with "privateKey", or the hex key); pays the gas',
    )
    .option('--test-token', 'also deploy TestToken, an ERC-20 anyone may mint (test networks only)', false)
    .exitOverride()
    .action(
      async (o: { genesis: string; rollup: Map<number, string>; keyFile: string; testToken: boolean }) => {
        const { loadGenesis } = await import('../node/genesis.ts')
        const { deployNetworkSettlement, deploymentsJson, writeGenesisSettlement } = await import(
          '../node/settlement-deploy.ts'
        )
        const genesis = await loadGenesis(o.genesis)
        const deployments = await deployNetworkSettlement({
          genesis,
          rpcUrls: o.rollup,
          privateKey: await readKeyFile(o.keyFile),
          testToken: o.testToken,
          onProgress: (line) => process.stderr.write(`${line}\n`),
        })
        await writeGenesisSettlement(o.genesis, deployments)
        print(deploymentsJson(deployments))
      },
    )

  const token = program
    .command('token')
    .description('ERC-20 helpers for test networks (TestToken: anyone may mint)')
    .exitOverride()
  token
    .command('mint')
    .description('mint TestToken to an address (test networks only: anyone may call mint)')
    .requiredOption('--rpc <url>', 'RPC URL of the rollup')
    .requiredOption('--token <address>', 'the TestToken', addressArg)
    .requiredOption('--to <address>', 'who receives the tokens', addressArg)
    .requiredOption('--amount <units>', 'token units (18 decimals)', bigintArg)
    .requiredOption('--key-file <file>', 'the key that pays the gas')
    .exitOverride()
    .action(async (o: { rpc: string; token: Address; to: Address; amount: bigint; keyFile: string }) => {
      const { sendTokenCalls, tokenBalance, tokenClients } = await import('../client/index.ts')
      const c = await tokenClients(o.rpc, await readKeyFile(o.keyFile))
      const [tx] = await sendTokenCalls(c, [{ fn: 'mint', token: o.token, to: o.to, amount: o.amount }])
      print({ token: o.token, to: o.to, balance: String(await tokenBalance(c, o.token, o.to)), tx })
    })
  token
    .command('balance')
    .description('print the token balance of addresses, and their allowance to a settler when given')
    .requiredOption('--rpc <url>', 'RPC URL of the rollup')
    .requiredOption('--token <address>', 'the ERC-20', addressArg)
    .requiredOption('--address <address...>', 'owners to read', (v: string, p: Address[] = []) => [
      ...p,
      addressArg(v),
    ])
    .option('--settler <address>', 'also read allowance(owner, settler)', addressArg)
    .exitOverride()
    .action(async (o: { rpc: string; token: Address; address: Address[]; settler?: Address }) => {
      const { createPublicClient, http } = await import('viem')
      const { tokenAllowance, tokenBalance } = await import('../client/index.ts')
      const c = { public: createPublicClient({ transport: http(o.rpc) }) }
      const { MurmurError } = await import('../errors.ts')
      const rows: Record<string, { balance: string; allowance?: string }> = {}
      try {
        for (const a of o.address) {
          rows[a] = { balance: String(await tokenBalance(c, o.token, a)) }
          if (o.settler !== undefined)
            rows[a]!.allowance = String(await tokenAllowance(c, o.token, a, o.settler))
        }
      } catch (err) {
        throw new MurmurError('UNREACHABLE', `${o.rpc}: ${(err as Error).message.split('\n')[0]}`)
      }
      print(rows)
    })
}
