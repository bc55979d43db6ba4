import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { bytesToHex, type Hex, hexToBytes } from 'viem'
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from 'viem/accounts'
import { fastAccount } from '../crypto/sign.ts'
import { ConfigError } from '../errors.ts'

export const NODE_KEY_FILE = 'node-key.json'
export const VALIDATOR_KEY_FILE = 'validator-key.json'
const KEY_FILE_MODE = 0o600

/** The two identities of a node: libp2p Ed25519 key and secp256k1 validator key. */
export interface NodeKeys {
  nodeKey: PrivateKey
  peerId: string
  validator: PrivateKeyAccount
  validatorPrivateKey: Hex
}

async function readKeyFile(path: string): Promise<Record<string, string> | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ConfigError('BAD_KEY', `cannot read ${path}: ${(err as Error).message}`)
  }
  const mode = (await stat(path)).mode & 0o777
  if ((mode & 0o077) !== 0) {
    throw new ConfigError('BAD_KEY', `${path} is readable by others (mode ${mode.toString(8)}); chmod 600 it`)
  }
  try {
    return JSON.parse(text) as Record<string, string>
  } catch {
    throw new ConfigError('BAD_KEY', `${path} is not valid JSON`)
  }
}

async function writeKeyFile(path: string, content: object): Promise<void> {
  // 'wx' never overwrites an existing key: losing a validator key is not recoverable.
  await writeFile(path, JSON.stringify(content, null, 2) + '\n', { mode: KEY_FILE_MODE, flag: 'wx' })
  await chmod(path, KEY_FILE_MODE)
}

/** Loads the keys in `dataDir`, or generates and stores (0600) the missing ones when `create`. */
export async function loadKeys(dataDir: string, opts: { create: boolean }): Promise<NodeKeys> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const nodePath = join(dataDir, NODE_KEY_FILE)
  const valPath = join(dataDir, VALIDATOR_KEY_FILE)

  let nodeKey: PrivateKey
  const nodeFile = await readKeyFile(nodePath)
  if (nodeFile === undefined) {
    if (!opts.create) throw new ConfigError('BAD_KEY', `no node key in ${dataDir}; run: murmur keys generate`)
    nodeKey = await generateKeyPair('Ed25519')
    await writeKeyFile(nodePath, { type: 'Ed25519', privateKey: bytesToHex(privateKeyToProtobuf(nodeKey)) })
  } else {
    try {
      nodeKey = privateKeyFromProtobuf(hexToBytes(nodeFile['privateKey'] as Hex))
    } catch {
      throw new ConfigError('BAD_KEY', `${nodePath}: privateKey is not a libp2p private key`)
    }
  }

  let validatorPrivateKey: Hex
  const valFile = await readKeyFile(valPath)
  if (valFile === undefined) {
    if (!opts.create)
      throw new ConfigError('BAD_KEY', `no validator key in ${dataDir}; run: murmur keys generate`)
    validatorPrivateKey = generatePrivateKey()
    const address = privateKeyToAccount(validatorPrivateKey).address.toLowerCase()
    await writeKeyFile(valPath, { type: 'secp256k1', address, privateKey: validatorPrivateKey })
  } else {
    validatorPrivateKey = valFile['privateKey'] as Hex
    if (!/^0x[0-9a-fA-F]{64}$/.test(validatorPrivateKey ?? '')) {
      throw new ConfigError('BAD_KEY', `${valPath}: privateKey must be 32 bytes of 0x hex`)
    }
  }

  return {
    nodeKey,
    peerId: peerIdFromPrivateKey(nodeKey).toString(),
    // Native signing and fast EIP-712 hashing for votes, proposals, health reports and fills.
    validator: fastAccount(validatorPrivateKey),
    validatorPrivateKey,
  }
}
