/**
 * `murmur stake transfer | delegate | undelegate | create-validator | unjail | move | account | show`: the
 * staker's side of the stake economy (issue 11, item 7). Each signing command signs one EIP-712 message
 * (INTERFACES.md: Transfer, Delegate, Undelegate, CreateValidator, Unjail, StakeMove) with a key file
 * under the network domain of the node it talks to (`GET /v1/status`), posts it to the node's route and
 * prints `{id, accepted, known, nonce}`; a refusal exits 1 with the node's code. `--wait` then polls
 * `GET /v1/accounts/:address` until the signer's nonce in that message's nonce space is used, i.e. a
 * committed block applied the message.
 *
 * Nonces: the node keeps only the highest nonce used per signer and space (account messages share one,
 * stake moves and Unjail have their own) and takes any greater one, so the default is the current unix
 * time in milliseconds, or the used one + 1 when that is higher. Unlike "used + 1" alone, two messages
 * sent before the first commits then get different nonces and both apply.
 */
import type { Command } from 'commander'
import type { Address, Hex, LocalAccount } from 'viem'
import { MurmurError } from '../errors.ts'
import {
  addressArg,
  bigintArg,
  chainArg,
  chainsArg,
  getJson,
  intArg,
  postJson,
  print,
  readKeyFile,
  usage,
} from './args.ts'

/** The nonce spaces of `GET /v1/accounts/:address`'s `nonces`. */
type NonceSpace = 'account' | 'stakeMove' | 'unjail'

/** `GET /v1/accounts/:address` (the fields read here). */
interface AccountView {
  address: Address
  balance: string
  nonces?: Record<NonceSpace, string>
}

/** Flags every signing command takes. */
interface SignFlags {
  api: string
  keyFile: string
  nonce?: bigint
  wait: boolean
  timeout: number
}

/** Signs the message with `nonce` and returns the body of its POST route. */
type SignFn = (account: LocalAccount, networkId: string, nonce: bigint) => Promise<unknown>

/** Most commission: 100 % in basis points. */
const MAX_COMMISSION_BPS = 10_000
/** How often `--wait` reads the account. */
const POLL_MS = 250

/** Adds the `stake` commands to `program`. */
export function addStakeCommands(program: Command): void {
  const stake = program
    .command('stake')
    .description(
      'the staking token: transfers, delegations, validators, stake moves (signed with a key file)',
    )
    .exitOverride()

  signing(stake.command('transfer'))
    .description('sign a Transfer of the staking token from the key to another account')
    .requiredOption('--to <address>', 'receiving account', addressArg)
    .requiredOption('--amount <units>', 'amount of the staking token', bigintArg)
    .action(async (o: SignFlags & { to: Address; amount: bigint }) => {
      const { signTransfer } = await import('../staking/accounts.ts')
      await send(o, 'account', '/v1/transfers', async (a, networkId, nonce) =>
        bodyOf(await signTransfer(a, networkId, { from: me(a), to: o.to, amount: o.amount, nonce })),
      )
    })

  for (const [verb, route, what] of [
    ['delegate', '/v1/delegations', 'put stake from the balance behind a validator in one of its pools'],
    ['undelegate', '/v1/undelegations', 'take stake back: it returns to the balance after unbonding'],
  ] as const)
    signing(stake.command(verb))
      .description(`sign a${verb === 'delegate' ? ' Delegate' : 'n Undelegate'}: ${what}`)
      .requiredOption('--validator <address>', 'the validator', addressArg)
      .requiredOption('--chain <id>', 'the pool (rollup chain id)', chainArg)
      .requiredOption('--amount <units>', 'amount of the staking token', bigintArg)
      .action(async (o: SignFlags & { validator: Address; chain: bigint; amount: bigint }) => {
        const { signDelegate, signUndelegate } = await import('../staking/delegations.ts')
        const sign = verb === 'delegate' ? signDelegate : signUndelegate
        await send(o, 'account', route, async (a, networkId, nonce) => {
          const d = { delegator: me(a), validator: o.validator, chainId: o.chain, amount: o.amount, nonce }
          return bodyOf(await sign(a, networkId, d))
        })
      })

  signing(stake.command('create-validator'))
    .description(
      "sign a CreateValidator: the key's address becomes a validator bound to a node's peer id, with a self-stake from its balance; it may join the set at the next epoch boundary",
    )
    .option('--peer-id <id>', "the node's libp2p peer id (12D3KooW...)")
    .option('--data-dir <dir>', 'read the peer id from this node data directory instead')
    .requiredOption('--chains <ids>', 'the pools (rollup chain ids), comma-separated', chainsArg)
    .requiredOption('--self-stake <units>', 'stake taken from the balance, spread over the pools', bigintArg)
    .option('--commission-bps <bps>', "share of its delegators' rewards the validator keeps", intArg, 0)
    .action(async (o: CreateFlags) => {
      if ((o.peerId === undefined) === (o.dataDir === undefined))
        usage('create-validator needs exactly one of --peer-id and --data-dir')
      if (o.commissionBps > MAX_COMMISSION_BPS) usage(`--commission-bps is at most ${MAX_COMMISSION_BPS}`)
      const chainIds = [...o.chains].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
      if (chainIds.some((c, i) => i > 0 && c === chainIds[i - 1])) usage('--chains lists a chain twice')
      const { peerIdBytes, signCreateValidator } = await import('../staking/validators.ts')
      const peerId = o.peerId ?? (await nodePeerId(o.dataDir!, o.keyFile))
      let peerBytes: Hex
      try {
        peerBytes = peerIdBytes(peerId)
      } catch {
        usage(`--peer-id ${peerId} is not a libp2p peer id`)
      }
      await send(o, 'account', '/v1/validators', async (a, networkId, nonce) =>
        bodyOf(
          await signCreateValidator(a, networkId, {
            validator: me(a),
            peerId: peerBytes,
            chainIds,
            selfStake: o.selfStake,
            commissionBps: o.commissionBps,
            nonce,
          }),
        ),
      )
    })

  signing(stake.command('unjail'))
    .description(
      "sign the key's Unjail: a validator jailed for downtime comes back once its jail time is over",
    )
    .action(async (o: SignFlags) => {
      const { signedUnjailToJson, signUnjail } = await import('../staking/unjail.ts')
      await send(o, 'unjail', '/v1/unjail', async (a, networkId, nonce) =>
        signedUnjailToJson(await signUnjail(a, networkId, { validator: me(a), nonce })),
      )
    })

  signing(stake.command('move'))
    .description(
      "sign a StakeMove: lend the key's stake (a validator's own, or a delegator's delegation) from its pool on one rollup to another for a number of blocks",
    )
    .requiredOption('--from <chainId>', 'the pool the stake leaves', chainArg)
    .requiredOption('--to <chainId>', 'the pool it serves meanwhile', chainArg)
    .requiredOption('--amount <units>', 'stake lent', bigintArg)
    .requiredOption('--blocks <n>', 'blocks until the stake returns', bigintArg)
    .action(async (o: SignFlags & { from: bigint; to: bigint; amount: bigint; blocks: bigint }) => {
      const { signStakeMove } = await import('../staking/moves.ts')
      const { signedStakeMoveToJson } = await import('../staking/service.ts')
      await send(o, 'stakeMove', '/v1/stake-moves', async (a, networkId, nonce) => {
        const move = {
          staker: me(a),
          fromChainId: o.from,
          toChainId: o.to,
          amount: o.amount,
          durationBlocks: o.blocks,
          nonce,
        }
        return signedStakeMoveToJson(await signStakeMove(a, networkId, move))
      })
    })

  stake
    .command('account')
    .description(
      "print an account: balance, delegations, unbonding entries, nonces used (default: the key's address)",
    )
    .argument('[address]', 'the account', addressArg)
    .requiredOption('--api <url>', 'node API URL')
    .option('--key-file <file>', 'read the address from this key instead')
    .exitOverride()
    .action(async (address: Address | undefined, o: { api: string; keyFile?: string }) => {
      if ((address === undefined) === (o.keyFile === undefined))
        usage('stake account needs exactly one of ADDRESS and --key-file')
      const who = address ?? me(await keyAccount(o.keyFile!))
      print(await account(o.api, who))
    })

  stake
    .command('show')
    .description('print the staking state: epoch, pools per rollup, stake moves in force (GET /v1/staking)')
    .requiredOption('--api <url>', 'node API URL')
    .exitOverride()
    .action(async (o: { api: string }) => {
      print(await getJson(new URL('/v1/staking', o.api).toString()))
    })
}

interface CreateFlags extends SignFlags {
  peerId?: string
  dataDir?: string
  chains: bigint[]
  selfStake: bigint
  commissionBps: number
}

/** The flags every signing command shares. */
function signing(cmd: Command): Command {
  return cmd
    .requiredOption('--api <url>', 'node API URL')
    .requiredOption(
      '--key-file <file>',
      'the signing key: JSON with "privateKey" (0x hex), or a file holding just the hex key',
    )
    .option(
      '--nonce <n>',
      'nonce of the message (default: unix time in ms, or the highest used + 1 when greater)',
      bigintArg,
    )
    .option('--wait', 'poll the account until a committed block applied the message', false)
    .option('--timeout <sec>', 'how long --wait waits', intArg, 60)
    .exitOverride()
}

/** The lowercase address of an account (what the messages' signer fields hold). */
function me(a: Pick<LocalAccount, 'address'>): Address {
  return a.address.toLowerCase() as Address
}

async function keyAccount(keyFile: string): Promise<LocalAccount> {
  const { privateKeyToAccount } = await import('viem/accounts')
  return privateKeyToAccount(await readKeyFile(keyFile))
}

/** A signed account message as its route's body. */
async function bodyOf(m: import('../staking/validators.ts').AccountMessage): Promise<unknown> {
  const { accountMessageToJson } = await import('../staking/wire-accounts.ts')
  return accountMessageToJson(m)
}

async function account(api: string, address: Address): Promise<AccountView> {
  return (await getJson(new URL(`/v1/accounts/${address}`, api).toString())) as AccountView
}

/**
 * The peer id of the node in `dataDir`. The record binds the signer to that node, whose votes are signed
 * with its validator key: a CreateValidator signed by another key would name a validator no node runs.
 */
async function nodePeerId(dataDir: string, keyFile: string): Promise<string> {
  const { loadKeys } = await import('../identity/keys.ts')
  const keys = await loadKeys(dataDir, { create: false })
  const signer = me(await keyAccount(keyFile))
  if (me(keys.validator) !== signer)
    throw new MurmurError(
      'KEY_MISMATCH',
      `${keyFile} is ${signer}, but the node in ${dataDir} votes with ${me(keys.validator)}: sign with its validator key`,
    )
  return keys.peerId
}

/** Picks the nonce, signs, posts, prints the answer; with `--wait`, waits for the message to apply. */
async function send(o: SignFlags, space: NonceSpace, route: string, sign: SignFn): Promise<void> {
  const a = await keyAccount(o.keyFile)
  const status = (await getJson(new URL('/v1/status', o.api).toString())) as { networkId: string }
  const before = await account(o.api, me(a))
  const used = BigInt(before.nonces?.[space] ?? '0')
  const now = BigInt(Date.now())
  const nonce = o.nonce ?? (now > used ? now : used + 1n)
  const answer = await postJson(new URL(route, o.api).toString(), await sign(a, status.networkId, nonce))
  const { id } = answer.body as { id: Hex }
  print({ id, accepted: answer.status === 202, known: answer.status === 200, nonce: nonce.toString() })
  if (o.wait) print(await waitApplied(o, me(a), space, nonce, id))
}

/** Polls the signer's account until its nonce in `space` reaches `nonce`; TIMEOUT after `o.timeout` s. */
async function waitApplied(
  o: SignFlags,
  address: Address,
  space: NonceSpace,
  nonce: bigint,
  id: Hex,
): Promise<{ id: Hex; applied: boolean; nonceUsed: string; account: AccountView }> {
  const line = (s: string) => process.stderr.write(`${new Date().toISOString()} ${id.slice(0, 10)} ${s}\n`)
  line(`waiting for a block to use nonce ${nonce} of ${address} (at most ${o.timeout} s)`)
  const deadline = Date.now() + o.timeout * 1000
  for (;;) {
    const view = await account(o.api, address)
    if (view.nonces === undefined)
      throw new MurmurError('UNSUPPORTED', `${o.api} does not report nonces in GET /v1/accounts`)
    const usedNow = BigInt(view.nonces[space])
    if (usedNow >= nonce) {
      // Higher than ours: another message of this signer applied with a greater nonce, and ours may
      // have been dropped (its nonce is used either way: it can no longer apply).
      const applied = usedNow === nonce
      line(applied ? 'applied' : `nonce ${nonce} is used: the highest is now ${usedNow}`)
      return { id, applied, nonceUsed: usedNow.toString(), account: view }
    }
    if (Date.now() > deadline)
      throw new MurmurError(
        'TIMEOUT',
        `no block used nonce ${nonce} of ${address} within ${o.timeout} s (highest used: ${usedNow})`,
      )
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
}
