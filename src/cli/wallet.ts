/**
 * `murmur intent send | status | approve`: the wallet side. An ERC-20 intent names its origin rollup, the
 * input token escrowed there and the output token paid on the destination; its `originSettler` is looked
 * up in the node's `GET /v1/rollups` unless given, and the settler needs the user's allowance before an
 * executor can open the order (`intent approve`, or `--approve` on send).
 */
import type { Command } from 'commander'
import type { Address, Hex } from 'viem'
import { MurmurError } from '../errors.ts'
import {
  addressArg,
  bigintArg,
  chainArg,
  chainsArg,
  getJson,
  intArg,
  print,
  readKeyFile,
  usage,
} from './args.ts'

interface SendFlags {
  api: string
  keyFile: string
  to: Address
  amount: bigint
  chains: bigint[]
  fillIn: number
  wait: boolean
  origin?: bigint
  inputToken?: Address
  inputAmount?: bigint
  outputToken?: Address
  settler?: Address
  approve: boolean
  rpc?: string
}

/** Adds `intent send`, `intent status` and `intent approve` to `program`. */
export function addWalletCommands(program: Command): void {
  const intent = program.command('intent').description('send and follow intents (wallet side)').exitOverride()
  intent
    .command('send')
    .description(
      'sign an ERC-7683 order with a key file and submit it to a node; native in and out unless tokens are given',
    )
    .requiredOption('--api <url>', 'node API URL')
    .requiredOption(
      '--key-file <file>',
      'JSON file with "privateKey" (0x hex), or a file holding just the hex key',
    )
    .requiredOption('--to <address>', 'recipient on the destination rollup', addressArg)
    .requiredOption('--amount <units>', 'amount to deliver (outputAmount), wei or token units', bigintArg)
    .option('--chains <ids>', 'allowed destination chain ids, comma-separated (default: any)', chainsArg, [])
    .option('--origin <chainId>', 'origin rollup (default: the first of --chains, else 901)', chainArg)
    .option('--input-token <address>', 'ERC-20 escrowed on the origin (default: native)', addressArg)
    .option('--input-amount <units>', 'input offered on the origin (default: --amount)', bigintArg)
    .option('--output-token <address>', 'ERC-20 paid on the destination (default: native)', addressArg)
    .option('--settler <address>', 'origin settler (default: from the node, GET /v1/rollups)', addressArg)
    .option('--approve', 'first approve the origin settler for the input token (needs --rpc)', false)
    .option('--rpc <url>', 'RPC URL of the origin rollup (for --approve)')
    .option('--fill-in <sec>', 'seconds until the fill deadline', intArg, 600)
    .option('--wait', 'follow the intent until a final state', false)
    .exitOverride()
    .action(async (o: SendFlags) => {
      if (o.approve && (o.rpc === undefined || o.inputToken === undefined))
        usage('--approve needs --rpc and --input-token')
      const { MurmurClient } = await import('../client/index.ts')
      const { privateKeyToAccount } = await import('viem/accounts')
      const key = await readKeyFile(o.keyFile)
      const account = privateKeyToAccount(key)
      const client = new MurmurClient(o.api)
      const origin = o.origin ?? o.chains[0] ?? 901n
      const erc20 = o.inputToken !== undefined && BigInt(o.inputToken) !== 0n
      const settler = o.settler ?? (erc20 ? await client.originSettler(origin) : undefined)
      if (o.approve)
        await approveIfShort(o.rpc!, key, origin, o.inputToken!, settler!, o.inputAmount ?? o.amount)
      const { id, known } = await client.send(account, {
        to: o.to,
        amount: o.amount,
        chains: o.chains,
        originChainId: origin,
        fillInSec: o.fillIn,
        ...(o.inputToken === undefined ? {} : { inputToken: o.inputToken }),
        ...(o.inputAmount === undefined ? {} : { inputAmount: o.inputAmount }),
        ...(o.outputToken === undefined ? {} : { outputToken: o.outputToken }),
        ...(settler === undefined ? {} : { originSettler: settler }),
      })
      print({ id, accepted: !known, known })
      if (o.wait) {
        const final = await client.waitFor(id, {
          timeoutMs: (o.fillIn + 30) * 1000,
          // With settlement contracts, done means the executor was repaid (or the user refunded).
          settled: true,
          onChange: (v) =>
            process.stderr.write(`${new Date().toISOString()} ${id.slice(0, 10)} ${v.state}\n`),
        })
        print(final)
        if (!OK_STATES.has(final.state)) process.exitCode = 1
      }
    })
  intent
    .command('status <id>')
    .description('print an intent (state, assignment, fill, history)')
    .requiredOption('--api <url>', 'node API URL')
    .exitOverride()
    .action(async (id: string, o: { api: string }) => {
      print(await getJson(new URL(`/v1/intents/${id}`, o.api).toString()))
    })
  intent
    .command('approve')
    .description(
      'approve a settler to pull a token from the key (the origin settler escrows the input when the order opens)',
    )
    .requiredOption('--rpc <url>', 'RPC URL of the rollup')
    .requiredOption('--key-file <file>', 'the wallet key (JSON with "privateKey", or the hex key)')
    .requiredOption('--token <address>', 'the ERC-20', addressArg)
    .requiredOption('--settler <address>', 'the spender: the rollup settler', addressArg)
    .option('--amount <units>', 'allowance (default: unlimited)', bigintArg)
    .exitOverride()
    .action(
      async (o: { rpc: string; keyFile: string; token: Address; settler: Address; amount?: bigint }) => {
        const { MAX_ALLOWANCE, sendTokenCalls, tokenAllowance, tokenClients } = await import(
          '../client/index.ts'
        )
        const c = await tokenClients(o.rpc, await readKeyFile(o.keyFile))
        const amount = o.amount ?? MAX_ALLOWANCE
        const [tx] = await sendTokenCalls(c, [{ fn: 'approve', token: o.token, spender: o.settler, amount }])
        const owner = c.wallet.account.address.toLowerCase() as Address
        print({
          owner,
          token: o.token,
          spender: o.settler,
          allowance: String(await tokenAllowance(c, o.token, owner, o.settler)),
          tx,
        })
      },
    )
}

/** Intents that ended as asked: delivered (with settlement contracts, also its executor repaid). */
const OK_STATES: ReadonlySet<string> = new Set(['filled'])

/** `--approve`: an unlimited allowance for the origin settler, unless the current one already covers `need`. */
async function approveIfShort(
  rpc: string,
  key: Hex,
  origin: bigint,
  token: Address,
  settler: Address,
  need: bigint,
): Promise<void> {
  const { MAX_ALLOWANCE, sendTokenCalls, tokenAllowance, tokenClients } = await import('../client/index.ts')
  const c = await tokenClients(rpc, key)
  if (BigInt(c.wallet.chain.id) !== origin)
    throw new MurmurError(
      'WRONG_CHAIN',
      `--rpc ${rpc} is chain ${c.wallet.chain.id}, not the origin ${origin}`,
    )
  const owner = c.wallet.account.address
  if ((await tokenAllowance(c, token, owner, settler)) >= need) return
  await sendTokenCalls(c, [{ fn: 'approve', token, spender: settler, amount: MAX_ALLOWANCE }])
  process.stderr.write(`approved ${settler} for ${token} on ${origin}\n`)
}
